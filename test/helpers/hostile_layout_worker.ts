// Worker of the hostile layout generator (test/hostile_layout_fuzz_test.ts): builds mutants
// [start, start+count) of a seed — OCI layouts and oci-archive files made from valid ones by
// seeded, bounded edits (JSON values, digests and sizes, layer tars, files swapped for FIFOs,
// devices, directories or symlinks to canaries) — and pulls each into one repository, in this
// process. Prints one JSON line: outcome counts, slowest input, the first unclean failure or
// canary change, and this process's peak RSS (VmHWM).
// Run: deno run -A --no-check test/helpers/hostile_layout_worker.ts SEED START COUNT
import { gzipSync } from "node:zlib";
import { CfsError } from "../../lib/errors.ts";
import { fsckMetadata, readErofs } from "../../lib/erofs/reader.ts";
import { pullImage } from "../../lib/oci/pull.ts";
import { parseImageReference } from "../../lib/oci/reference.ts";
import { openImageSource } from "../../lib/oci/transport/open_source.ts";
import { Repository } from "../../lib/repository/repository.ts";
import { concatBytes } from "../../lib/util/bytes.ts";
import { buildLayout, digestOf, enc, type HostileLayer, MT } from "./hostile_layout.ts";
import { baseTars, mutateJson, mutateTar, Rng } from "./hostile_mutate.ts";
import { END, sha256Hex, tarMember } from "./tar_fixtures.ts";
import { peakRssKiB } from "./hostile_tar_worker.ts";

const PER_INPUT_LIMIT_MS = 15_000;

/** Everything outside the repository and the inputs: type, size, mode, target, content digest. */
async function snapshot(root: string, skip: Set<string>): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (skip.has(p)) continue;
      const st = await Deno.lstat(p);
      let what = `${p} ${
        st.isFile ? "f" : st.isDirectory ? "d" : st.isSymlink ? "l" : "o"
      } ${st.size} ${st.mode}`;
      if (st.isSymlink) what += " -> " + await Deno.readLink(p);
      if (st.isFile) what += " " + sha256Hex(await Deno.readFile(p)) + " " + st.mtime?.getTime();
      out.push(what);
      if (st.isDirectory) await walk(p);
    }
  };
  await walk(root);
  return out.sort();
}

async function mkfifo(path: string): Promise<void> {
  const o = await new Deno.Command("mkfifo", { args: [path] }).output();
  if (!o.success) throw new Error("mkfifo failed");
}

/** A tar of a layout directory (symlinks and FIFOs as members), written in TS. */
async function tarOf(dir: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      const st = await Deno.lstat(`${dir}/${name}`);
      if (st.isSymlink) {
        parts.push(tarMember({ name, type: "2", linkname: await Deno.readLink(`${dir}/${name}`) }));
      } else if (st.isDirectory) {
        parts.push(tarMember({ name: name + "/", type: "5", mode: 0o755 }));
        await walk(name);
      } else if (st.isFile) parts.push(tarMember({ name }, await Deno.readFile(`${dir}/${name}`)));
      else parts.push(tarMember({ name, type: "6" }));
    }
  };
  await walk("");
  parts.push(END);
  return concatBytes(parts);
}

/** Builds one mutant layout under `dir`; returns the image reference to pull. */
async function makeMutant(rng: Rng, dir: string, sandbox: string): Promise<string> {
  const bases = baseTars();
  const layers: HostileLayer[] = [];
  const n = rng.int(1, 2);
  for (let k = 0; k < n; k++) {
    let tar = rng.pick(bases);
    const consistent = rng.chance(0.8);
    if (rng.chance(0.35)) tar = mutateTar(rng, tar);
    const diffId = digestOf(tar);
    let blob = tar;
    let mediaType = MT.tar;
    if (rng.chance(0.4)) {
      blob = gzipSync(tar);
      mediaType = MT.gzip;
      if (rng.chance(0.2)) {
        blob = blob.slice();
        blob[rng.int(10, blob.length - 1)] ^= 1 << rng.int(0, 7);
      }
    }
    layers.push({ blob, mediaType, diffId: consistent ? diffId : digestOf(rng.bytes(8)) });
  }
  const jsonEdit = rng.int(0, 5);
  const lay = await buildLayout(dir, layers, {
    config: jsonEdit === 0 ? (c) => Object.assign(c, mutateJson(rng, c)) : undefined,
    manifest: jsonEdit === 1 ? (m) => Object.assign(m, mutateJson(rng, m)) : undefined,
    index: jsonEdit === 2
      ? (i, d) => {
        if (rng.chance(0.5)) Object.assign(d, mutateJson(rng, d));
        else Object.assign(i, mutateJson(rng, i));
      }
      : undefined,
    manifestAlg: rng.chance(0.03) ? "sha512" : "sha256",
  });
  // Byte-level edits of a JSON file, digests left as they were (before any file is swapped for a
  // link: these writes are the generator's own and must never go through one).
  if (rng.chance(0.1)) {
    const p = rng.pick([
      `${dir}/index.json`,
      lay.blobPath(lay.manifestDigest),
      lay.blobPath(lay.configDigest),
    ]);
    try {
      const b = await Deno.readFile(p);
      const cut = b.subarray(0, rng.int(0, b.length));
      await Deno.writeFile(
        p,
        rng.chance(0.5) ? cut : concatBytes([cut, enc.encode(rng.pick(["\0", "}", "\xff", "{"]))]),
      );
    } catch { /* not a regular file any more */ }
  }
  // File-level edits: a part of the layout replaced by something that is not a blob.
  if (rng.chance(0.3)) {
    const targets = [
      `${dir}/index.json`,
      lay.blobPath(lay.manifestDigest),
      lay.blobPath(lay.configDigest),
      ...layers.map((l) => lay.blobPath(digestOf(l.blob))),
    ];
    const path = rng.pick(targets);
    await Deno.remove(path).catch(() => {});
    switch (rng.int(0, 8)) {
      case 0:
        await mkfifo(path);
        break;
      case 1:
        await Deno.symlink("/dev/zero", path);
        break;
      case 2:
        await Deno.symlink(`${sandbox}/canary-file`, path);
        break;
      case 3:
        await Deno.symlink(`${sandbox}/canary-dir`, path);
        break;
      case 4:
        await Deno.mkdir(path);
        break;
      case 5:
        await Deno.symlink(path, path); // a loop
        break;
      case 6:
        await Deno.writeFile(path, new Uint8Array(0));
        break;
      case 7:
        await Deno.symlink("/dev/null", path);
        break;
      default:
        break; // missing
    }
  }
  if (rng.chance(0.3)) {
    let archive = await tarOf(dir);
    if (rng.chance(0.3)) archive = mutateTar(rng, archive);
    await Deno.writeFile(`${dir}.tar`, archive);
    return `oci-archive:${dir}.tar:t`;
  }
  return `oci:${dir}:${rng.chance(0.95) ? "t" : "other"}`;
}

export interface LayoutBatchResult {
  accepted: number;
  refused: number;
  archives: number;
  slowestMs: number;
  slowestIndex: number;
  failure?: string;
  peakRssKiB: number;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: no result after ${ms} ms (a hang)`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runLayoutBatch(seed: number, start: number, count: number): Promise<LayoutBatchResult> {
  const sandbox = await Deno.makeTempDir({ prefix: "cfsctl-hostile-" });
  const out: LayoutBatchResult = {
    accepted: 0,
    refused: 0,
    archives: 0,
    slowestMs: 0,
    slowestIndex: -1,
    peakRssKiB: 0,
  };
  try {
    await Deno.writeTextFile(`${sandbox}/canary-file`, "CANARY: nothing may change me\n");
    await Deno.mkdir(`${sandbox}/canary-dir`);
    await Deno.writeTextFile(`${sandbox}/canary-dir/inner`, "inner canary\n");
    await Deno.symlink("canary-file", `${sandbox}/canary-link`);
    await Deno.mkdir(`${sandbox}/in`);
    const repoPath = `${sandbox}/repo`;
    await Repository.init(repoPath, { insecure: true, algorithm: "fsverity-sha256-12" });
    const repo = await Repository.open(repoPath, { insecure: true });
    const skip = new Set([repoPath, `${sandbox}/in`]);
    const before = await snapshot(sandbox, skip);
    for (let i = start; i < start + count && !out.failure; i++) {
      const rng = new Rng(seed * 1_000_003 + i);
      const dir = `${sandbox}/in/m${i}`;
      const ref = await makeMutant(rng, dir, sandbox);
      if (ref.startsWith("oci-archive:")) out.archives++;
      const t0 = performance.now();
      try {
        const work = (async () => {
          const source = await openImageSource(parseImageReference(ref));
          try {
            return await pullImage(repo, source, { name: `m${i}`, concurrency: 1 });
          } finally {
            await source.close();
          }
        })();
        const r = await withTimeout(work, PER_INPUT_LIMIT_MS, `mutant ${i}`);
        // Accepted: every committed image reads back and passes the metadata check.
        for (const id of r.images.values()) {
          const { bytes } = await repo.readImage(id.hex());
          fsckMetadata(bytes, { alg: repo.alg });
          readErofs(bytes, { alg: repo.alg });
        }
        out.accepted++;
      } catch (e) {
        if (e instanceof CfsError && e.message.length > 0) out.refused++;
        else out.failure = `seed ${seed} mutant ${i} (${ref}): unclean failure: ${(e as Error)?.stack ?? e}`;
      }
      const ms = performance.now() - t0;
      if (ms > out.slowestMs) {
        out.slowestMs = ms;
        out.slowestIndex = i;
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(`${dir}.tar`).catch(() => {});
      if (i % 100 === 99 || i === start + count - 1) {
        const now = await snapshot(sandbox, skip);
        if (JSON.stringify(now) !== JSON.stringify(before)) {
          out.failure ??= `seed ${seed} by mutant ${i}: files outside the repository changed:\n` +
            now.filter((x) => !before.includes(x)).concat(before.filter((x) => !now.includes(x))).join("\n");
        }
      }
    }
    repo.close();
  } finally {
    await Deno.remove(sandbox, { recursive: true }).catch(() => {});
  }
  out.peakRssKiB = peakRssKiB();
  return out;
}

if (import.meta.main) {
  const [seed, start, count] = Deno.args.map(Number);
  console.log(JSON.stringify(await runLayoutBatch(seed, start, count)));
  Deno.exit(0); // a hung input (reported above) must not keep the process alive
}
