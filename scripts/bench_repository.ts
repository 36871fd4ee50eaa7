// Benchmark: store N files of S bytes into an insecure repository (one object per file plus one
// splitstream referencing them all, as a layer import does) and compare with `cp -r` of the same
// tree on the same disk. Page cache is dropped before each timed run when running as root.
//
//   deno run -A scripts/bench_repository.ts [--files 10000] [--size 204800] [--dir /var/tmp]
import { Repository } from "../lib/repository/repository.ts";
import { SplitStreamWriter } from "../lib/splitstream/mod.ts";
import { CONTENT_TYPE } from "../lib/oci/content_types.ts";
import type { ObjectId } from "../lib/fsverity/object_id.ts";
import { hashBackendName } from "../lib/fsverity/backend.ts";

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : def;
}
const FILES = Number(arg("files", "10000"));
const SIZE = Number(arg("size", String(200 * 1024)));
const BASE = arg("dir", "/var/tmp");
const CONCURRENCY = Number(arg("jobs", "4"));
const ALGS = arg("algs", "sha512,sha256").split(",") as ("sha256" | "sha512")[];

function run(cmd: string, ...args: string[]): void {
  const o = new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" }).outputSync();
  if (!o.success) throw new Error(`${cmd} ${args.join(" ")} failed`);
}

function dropCaches(): void {
  run("sync");
  if (Deno.uid() === 0) Deno.writeTextFileSync("/proc/sys/vm/drop_caches", "3");
}

async function makeTree(dir: string): Promise<void> {
  const buf = new Uint8Array(SIZE);
  crypto.getRandomValues(buf.subarray(0, 65536));
  for (let o = 65536; o < SIZE; o += 65536) buf.copyWithin(o, 0, Math.min(65536, SIZE - o));
  for (let i = 0; i < FILES; i++) {
    const sub = `${dir}/d${Math.floor(i / 100)}`;
    if (i % 100 === 0) await Deno.mkdir(sub, { recursive: true });
    // Unique content per file: the index in the first bytes of every 64 KiB piece.
    const v = new DataView(buf.buffer);
    for (let o = 0; o < SIZE; o += 65536) v.setUint32(o, i, true);
    await Deno.writeFile(`${sub}/f${i}`, buf);
  }
}

async function storeTree(repo: Repository, src: string): Promise<number> {
  const paths: string[] = [];
  for (let d = 0; d * 100 < FILES; d++) {
    for (let i = d * 100; i < Math.min(FILES, (d + 1) * 100); i++) paths.push(`${src}/d${d}/f${i}`);
  }
  const ids: { id: ObjectId; size: number }[] = new Array(paths.length);
  let next = 0;
  let bytes = 0;
  const worker = async () => {
    const buf = new Uint8Array(1 << 20);
    while (next < paths.length) {
      const k = next++;
      using f = await Deno.open(paths[k], { read: true });
      const w = repo.createObjectWriter();
      for (;;) {
        const n = await f.read(buf);
        if (n === null) break;
        await w.write(buf.subarray(0, n));
      }
      const r = await w.finish();
      ids[k] = { id: r.id, size: r.size };
      bytes += r.size;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const sw = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_LAYER);
  const header = new Uint8Array(512);
  for (const { id, size } of ids) {
    sw.writeInline(header);
    sw.writeExternal(id, size);
  }
  await repo.writeStream("bench-layer", sw, "bench");
  return bytes;
}

const root = await Deno.makeTempDir({ dir: BASE, prefix: "cfs-bench-" });
try {
  const src = `${root}/src`;
  console.log(`generating ${FILES} files × ${SIZE} bytes in ${src} …`);
  await makeTree(src);
  const total = FILES * SIZE;
  const mb = total / 1e6;

  dropCaches();
  let t0 = performance.now();
  run("cp", "-r", src, `${root}/cp`);
  const cpNoSync = (performance.now() - t0) / 1000;
  run("sync");
  const cpSync = (performance.now() - t0) / 1000;
  await Deno.remove(`${root}/cp`, { recursive: true });

  for (const alg of ALGS) {
    const path = `${root}/repo-${alg}`;
    await Repository.init(path, { insecure: true, algorithm: `fsverity-${alg}-12` });
    using repo = await Repository.open(path);
    dropCaches();
    t0 = performance.now();
    const stored = await storeTree(repo, src);
    const noSync = (performance.now() - t0) / 1000;
    run("sync");
    const withSync = (performance.now() - t0) / 1000;
    console.log(
      `repository (${alg}, insecure, ${hashBackendName()}, ${CONCURRENCY} jobs): ${stored} bytes in ` +
        `${noSync.toFixed(2)} s = ${(mb / noSync).toFixed(0)} MB/s; with final sync ${
          withSync.toFixed(2)
        } s = ` +
        `${(mb / withSync).toFixed(0)} MB/s`,
    );
  }
  console.log(
    `cp -r: ${cpNoSync.toFixed(2)} s = ${(mb / cpNoSync).toFixed(0)} MB/s; cp -r + sync: ${
      cpSync.toFixed(2)
    } s = ` +
      `${(mb / cpSync).toFixed(0)} MB/s`,
  );
} finally {
  await Deno.remove(root, { recursive: true });
}
