// Benchmark: fs-verity digest of one large file with each hash backend, on the leaf-pool threads and on
// one thread, vs Debian's C `fsverity digest` (libcrypto, single-threaded), in one run.
// Goal (issue 15 #5): libcrypto ≤ 0.7× C, node:crypto ≤ 1.3× C.
//
//   deno run -A scripts/bench_fsverity.ts [--size MiB] [--rounds N] [--alg sha256|sha512] [--dir DIR]
//
// The file is written to DIR (default /var/tmp), read once to warm the page cache, and deleted at the
// end. The ways run interleaved, N rounds (default 5): the machines here are shared, so each ratio is
// taken per round against the C run of the same round and the median is reported, with wall and CPU
// (user+sys of all threads; for C from the children's rusage) and the load average before and after.
import process from "node:process";
import { libcryptoAvailable, setHashBackend } from "../lib/fsverity/backend.ts";
import { fsverityDigestFile } from "../lib/fsverity/digest_file.ts";
import { setHashThreads } from "../lib/fsverity/leaf_pool.ts";
import type { HashAlgorithm } from "../lib/fsverity/object_id.ts";

function option(name: string, dflt: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : dflt;
}

const sizeMiB = Number(option("size", "1024"));
const rounds = Number(option("rounds", option("runs", "5")));
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

/** CPU seconds (user+sys) of this process (all threads) and of its waited-for children. */
function cpuNow(): { self: number; children: number } {
  const u = process.cpuUsage();
  // /proc/self/stat fields 16, 17: cutime, cstime in clock ticks (100 per second on Linux).
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { self: (u.user + u.system) / 1e6, children: (Number(f[13]) + Number(f[14])) / 100 };
}

async function cTool(path: string): Promise<string> {
  const out = await new Deno.Command("fsverity", { args: ["digest", `--hash-alg=${alg}`, path] }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).split(" ")[0].split(":")[1];
}

interface Way {
  name: string;
  run: (path: string) => Promise<string>;
}

function ours(backend: "libcrypto" | "node:crypto", threads: number | undefined): Way {
  return {
    name: `${backend} ${threads === 1 ? "1 thread" : "threads"}`,
    run: async (path) => {
      setHashBackend(backend);
      setHashThreads(threads);
      return (await fsverityDigestFile(path, alg)).hex();
    },
  };
}

interface Sample {
  wall: number;
  cpu: number;
  hex: string;
}

async function measure(way: Way, path: string): Promise<Sample> {
  const c0 = cpuNow();
  const t = performance.now();
  const hex = await way.run(path);
  const wall = (performance.now() - t) / 1000;
  const c1 = cpuNow();
  const cpu = way.name.startsWith("C ") ? c1.children - c0.children : c1.self - c0.self;
  return { wall, cpu, hex };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function loadavg(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
}

async function main(): Promise<void> {
  const path = `${dir}/bench-fsverity-${Deno.pid}.bin`;
  const bytes = sizeMiB * 1048576;
  console.log(`file: ${path}, ${sizeMiB} MiB, ${alg}, ${rounds} rounds interleaved; load ${await loadavg()}`);
  await writeTestFile(path, bytes);
  const ways: Way[] = [{ name: "C fsverity digest", run: cTool }];
  if (libcryptoAvailable()) ways.push(ours("libcrypto", undefined), ours("libcrypto", 1));
  ways.push(ours("node:crypto", undefined), ours("node:crypto", 1));
  const samples = ways.map(() => [] as Sample[]);
  try {
    await cTool(path); // warms the page cache
    for (const w of ways.slice(1)) await w.run(path); // and starts the threads, compiles the code
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < ways.length; i++) samples[i].push(await measure(ways[i], path));
    }
  } finally {
    setHashBackend("auto");
    setHashThreads(undefined);
    await Deno.remove(path);
  }
  const c = samples[0];
  let mismatch = false;
  for (let i = 0; i < ways.length; i++) {
    const s = samples[i];
    const wallRatio = median(s.map((x, r) => x.wall / c[r].wall));
    const cpuRatio = median(s.map((x, r) => x.cpu / Math.max(c[r].cpu, 0.01)));
    const bestRatio = Math.min(...s.map((x) => x.wall)) / Math.min(...c.map((x) => x.wall));
    const same = s.every((x) => x.hex === c[0].hex) ? "" : "  DIGEST MISMATCH";
    mismatch ||= same !== "";
    console.log(
      `${ways[i].name.padEnd(22)} wall ${median(s.map((x) => x.wall)).toFixed(3)} s (best ${
        Math.min(...s.map((x) => x.wall)).toFixed(3)
      })  cpu ${median(s.map((x) => x.cpu)).toFixed(2)} s  ${
        (sizeMiB / median(s.map((x) => x.wall))).toFixed(0).padStart(5)
      } MiB/s  ×C: wall ${wallRatio.toFixed(2)} (best/best ${bestRatio.toFixed(2)}) cpu ${
        cpuRatio.toFixed(2)
      }${same}`,
    );
  }
  console.log(`load after: ${await loadavg()}`);
  if (mismatch) Deno.exitCode = 1;
}

await main();
