// Benchmark: mounting a composefs image and reading through the mount (root only).
//
//   deno run -A scripts/bench_mount.ts [--dump FILE.dump.gz] [--version 0|1|2] [--content sparse|random]
//                                      [--runs N] [--keep DIR]
//
// Builds an image from a dumpfile (default: the cs9-x86_64-developer vector, ~46k external files,
// 2.9 GB) with fake objects at the dumpfile's backing paths, then measures:
//   1. mountComposefs() in-process (image + objects → mounted tree), median of N;
//   2. `mount.composefs IMAGE MNT -o basedir=OBJECTS` as a process, from spawn to exit, median of N;
//   3. `find . -type f -print0 | xargs -0 cat >/dev/null` through the mount vs a plain directory tree
//      whose regular files are hard links to the very same objects (so both read the same page cache).
// Fake objects are sparse by default (no disk use; measures the lookup/open/read path, not the disk);
// `--content random` writes real bytes (2.9 GB for the default dump). Reads are warm-cache: one
// untimed pass first. Nothing here drops the page cache (the machine is shared).
import { gunzipSync } from "node:zlib";
import { parseDumpfileSync } from "../lib/dumpfile/parse.ts";
import { writeErofs } from "../lib/erofs/writer.ts";
import { mountComposefs } from "../lib/mount/composefs.ts";
import { unmountComposefs } from "../lib/mount/unmount.ts";
import type { Directory } from "../lib/tree/tree.ts";
import { bstrToBytes } from "../lib/util/bytes.ts";

const ROOT = new URL("../", import.meta.url).pathname;

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(name);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

const dumpPath = arg("--dump", `${ROOT}../shared/vectors/composefs-c/cs9-x86_64-developer.dump.gz`);
const version = Number(arg("--version", "1")) as 0 | 1 | 2;
const content = arg("--content", "sparse");
const runs = Number(arg("--runs", "5"));
const keep = arg("--keep", "");

const dec = new TextDecoder();
const pathOf = (bstr: string) => dec.decode(bstrToBytes(bstr));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Creates fake objects (one per backing path) and the plain-directory twin of the tree. */
function materialize(root: Directory, objects: string, plain: string): { files: number; bytes: number } {
  let files = 0, bytes = 0;
  const made = new Set<string>();
  const chunk = new Uint8Array(1 << 20);
  const walk = (dir: Directory, rel: string) => {
    for (const [name, node] of dir.entries) {
      const p = `${rel}/${pathOf(name)}`;
      if (node.kind === "dir") {
        Deno.mkdirSync(plain + p);
        walk(node, p);
        continue;
      }
      const c = node.content;
      if (c.type === "inline") {
        Deno.writeFileSync(plain + p, c.data);
      } else if (c.type === "external" || (c.type === "external-noverity" && c.payload !== undefined)) {
        // C dumpfiles may give a backing path (PAYLOAD) and no digest: the redirect follows the path.
        const backing = c.payload ?? (c.type === "external" ? c.id.objectPath() : "");
        const obj = `${objects}/${pathOf(backing)}`;
        if (!made.has(obj)) {
          made.add(obj);
          Deno.mkdirSync(obj.slice(0, obj.lastIndexOf("/")), { recursive: true });
          const f = Deno.openSync(obj, { write: true, create: true, truncate: true });
          if (content === "random") {
            for (let off = 0; off < c.size; off += chunk.length) {
              const n = Math.min(chunk.length, c.size - off);
              crypto.getRandomValues(chunk.subarray(0, Math.min(n, 65536)));
              f.writeSync(chunk.subarray(0, n));
            }
          } else {
            f.truncateSync(c.size);
          }
          f.close();
          bytes += c.size;
        }
        try {
          Deno.linkSync(obj, plain + p);
        } catch { /* hard link of the same leaf seen twice */ }
      } else {
        continue;
      }
      files++;
    }
  };
  walk(root, "");
  return { files, bytes };
}

async function timeCat(dir: string): Promise<number> {
  const t0 = performance.now();
  const o = await new Deno.Command("sh", {
    args: ["-c", "find . -type f -print0 | xargs -0 cat > /dev/null"],
    cwd: dir,
    stderr: "piped",
  }).output();
  if (!o.success) throw new Error(`reading ${dir} failed: ${dec.decode(o.stderr)}`);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  if (Deno.uid() !== 0) {
    console.error("bench_mount: needs root (mounts)");
    Deno.exit(1);
  }
  const work = keep || await Deno.makeTempDir({ prefix: "cfsctl-bench-mount-" });
  const image = `${work}/image.cfs`,
    objects = `${work}/objects`,
    plain = `${work}/plain`,
    mnt = `${work}/mnt`;
  try {
    let t = performance.now();
    const tree = parseDumpfileSync(gunzipSync(Deno.readFileSync(dumpPath)));
    const bytes = writeErofs(tree, { version });
    Deno.writeFileSync(image, bytes);
    console.log(
      `image: V${version}, ${(bytes.length / 1048576).toFixed(1)} MiB, built in ${
        (performance.now() - t).toFixed(0)
      } ms`,
    );
    for (const d of [objects, plain, mnt]) Deno.mkdirSync(d, { recursive: true });
    t = performance.now();
    const m = materialize(tree, objects, plain);
    console.log(
      `objects: ${m.files} regular files, ${(m.bytes / 1e9).toFixed(2)} GB (${content}), ` +
        `created in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );

    const inProc: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await mountComposefs({ imagePath: image, objectsDir: objects, mountpoint: mnt, verity: "none" });
      inProc.push(performance.now() - t0);
      unmountComposefs(mnt);
    }
    const cli: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const o = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-check", `${ROOT}main.ts`, image, mnt, "-o", `basedir=${objects}`],
        env: { CFSCTL_INVOKED_AS: "mount.composefs" },
        stderr: "piped",
      }).output();
      cli.push(performance.now() - t0);
      if (!o.success) throw new Error(`mount.composefs failed: ${dec.decode(o.stderr)}`);
      unmountComposefs(mnt);
    }
    console.log(
      `mountComposefs() in-process: median ${median(inProc).toFixed(1)} ms (${
        inProc.map((x) => x.toFixed(1)).join(", ")
      })`,
    );
    console.log(
      `mount.composefs process, spawn to exit: median ${median(cli).toFixed(0)} ms (${
        cli.map((x) => x.toFixed(0)).join(", ")
      })`,
    );

    await mountComposefs({ imagePath: image, objectsDir: objects, mountpoint: mnt, verity: "none" });
    try {
      const mb = m.bytes / 1048576;
      for (const [label, dir] of [["plain directory", plain], ["composefs mount", mnt]] as const) {
        await timeCat(dir); // warm the caches
        const ms: number[] = [];
        for (let i = 0; i < Math.max(1, Math.min(runs, 3)); i++) ms.push(await timeCat(dir));
        const med = median(ms);
        console.log(
          `find -type f | xargs cat, ${label}: median ${(med / 1000).toFixed(2)} s, ` +
            `${(mb / (med / 1000)).toFixed(0)} MiB/s, ${(m.files / (med / 1000)).toFixed(0)} files/s`,
        );
      }
    } finally {
      unmountComposefs(mnt);
    }
  } finally {
    if (!keep) await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main();
