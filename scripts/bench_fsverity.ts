// Benchmark: fs-verity digest of one large file with each hash backend vs Debian's C
// `fsverity digest`, in one run. Goal: libcrypto ≤ 0.8× C, node:crypto ≤ 1.6× C.
//
//   deno run -A scripts/bench_fsverity.ts [--size MiB] [--runs N] [--alg sha256|sha512] [--dir DIR]
//
// The file is written to DIR (default /var/tmp), read once to warm the page cache, and deleted at the
// end. Each way runs N times (default 2); the best wall time counts (the machines here are shared).
import { hashBackendName, libcryptoAvailable, setHashBackend } from "../lib/fsverity/backend.ts";
import { fsverityDigestFile } from "../lib/fsverity/digest_file.ts";
import { fsverityDigestFd } from "../lib/fsverity/digest_fd.ts";
import type { HashAlgorithm } from "../lib/fsverity/object_id.ts";
import { closeFd, O_RDONLY, openPath } from "../lib/linux/fs.ts";

function option(name: string, dflt: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : dflt;
}

const sizeMiB = Number(option("size", "1024"));
const runs = Number(option("runs", "2"));
const alg = option("alg", "sha256") as HashAlgorithm;
const dir = option("dir", "/var/tmp");

async function writeTestFile(path: string, bytes: number): Promise<void> {
  // 16 MiB of random data repeated: content does not change hashing speed.
  const chunk = new Uint8Array(16 << 20);
  for (let o = 0; o < chunk.length; o += 65536) crypto.getRandomValues(chunk.subarray(o, o + 65536));
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let left = bytes; left > 0;) {
    const n = Math.min(left, chunk.length);
    let w = 0;
    while (w < n) w += await f.write(chunk.subarray(w, n));
    left -= n;
  }
}

async function time(fn: () => Promise<string>): Promise<{ secs: number; hex: string }> {
  let best = Infinity;
  let hex = "";
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    hex = await fn();
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return { secs: best, hex };
}

async function cTool(path: string): Promise<string> {
  const out = await new Deno.Command("fsverity", { args: ["digest", `--hash-alg=${alg}`, path] }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).split(" ")[0].split(":")[1];
}

async function main(): Promise<void> {
  const path = `${dir}/bench-fsverity-${Deno.pid}.bin`;
  const bytes = sizeMiB * 1048576;
  console.log(`file: ${path}, ${sizeMiB} MiB, ${alg}, best of ${runs}`);
  await writeTestFile(path, bytes);
  try {
    await cTool(path); // warms the page cache
    const rows: { name: string; secs: number; hex: string }[] = [];
    rows.push({ name: "C fsverity digest", ...(await time(() => cTool(path))) });
    const backends = libcryptoAvailable() ? ["libcrypto", "node:crypto"] as const : ["node:crypto"] as const;
    for (const b of backends) {
      setHashBackend(b);
      const name = hashBackendName();
      rows.push({
        name: `${name} (fsverityDigestFile)`,
        ...(await time(async () => (await fsverityDigestFile(path, alg)).hex())),
      });
      rows.push({
        name: `${name} (fsverityDigestFd)`,
        ...(await time(async () => {
          const fd = openPath(path, O_RDONLY);
          try {
            return (await fsverityDigestFd(fd, alg)).hex();
          } finally {
            closeFd(fd);
          }
        })),
      });
    }
    setHashBackend("auto");
    const c = rows[0];
    for (const r of rows) {
      const mibs = (sizeMiB / r.secs).toFixed(0);
      const same = r.hex === c.hex ? "" : "  DIGEST MISMATCH";
      console.log(
        `${r.name.padEnd(34)} ${r.secs.toFixed(3)} s  ${mibs.padStart(5)} MiB/s  ${
          (r.secs / c.secs).toFixed(2)
        }× C${same}`,
      );
    }
    if (rows.some((r) => r.hex !== c.hex)) Deno.exitCode = 1;
  } finally {
    await Deno.remove(path);
  }
}

await main();
