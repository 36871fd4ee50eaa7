// Garbage collection (spec §2.8). Roots are the named refs (images/refs, streams/refs) plus names
// given by the caller; everything reachable from them — image objects and the objects their
// EROFS metadata references, streams and their object and named refs, transitively — is kept.
// Runs under the exclusive lock so no writer is between storing objects and linking its stream.
import type { ObjectId } from "../fsverity/object_id.ts";
import { collectObjects } from "../erofs/reader.ts";
import type { Repository } from "./repository.ts";
import { objectIdOfTarget } from "./streams.ts";
import { SplitStreamReader } from "../splitstream/mod.ts";
import { readDirOrEmpty } from "../util/fs.ts";

export interface GcOptions {
  /** Extra roots: names matched against top-level entries of images/ and streams/. */
  roots?: string[];
  /** Report only; delete nothing (keeps the shared lock). */
  dryRun?: boolean;
}

export interface GcResult {
  objectsRemoved: number;
  bytesRemoved: number;
  imagesPruned: number;
  streamsPruned: number;
  /** Problems that did not stop the collection (unreadable image or stream of a root). */
  warnings: string[];
}

/** Parses an image and returns the objects it references (pluggable for tests). */
export type ImageObjectCollector = (image: Uint8Array, alg: ObjectId["alg"]) => ObjectId[];

/** Every symlink below `dir` (recursively), as paths relative to `dir`. */
async function symlinksBelow(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readDirOrEmpty(rel ? `${dir}/${rel}` : dir)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isSymlink) out.push(p);
    else if (e.isDirectory) out.push(...await symlinksBelow(dir, p));
  }
  return out;
}

async function readLinkOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readLink(path);
  } catch {
    return null;
  }
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

export async function gc(
  repo: Repository,
  opts: GcOptions = {},
  collect: ImageObjectCollector = collectObjects,
): Promise<GcResult> {
  const dryRun = opts.dryRun ?? false;
  if (!dryRun) {
    await repo.ensureWritable();
    repo.lock.exclusive();
  }
  try {
    return await collectGarbage(repo, opts.roots ?? [], dryRun, collect);
  } finally {
    if (!dryRun) repo.lock.shared();
  }
}

async function collectGarbage(
  repo: Repository,
  extraRoots: string[],
  dryRun: boolean,
  collect: ImageObjectCollector,
): Promise<GcResult> {
  const root = repo.path;
  const live = new Set<string>(); // object hex
  const warnings: string[] = [];

  // 1. Roots: every ref resolves (by basename) to a top-level image or stream name.
  const imageRoots = new Set<string>();
  const streamRoots = new Set<string>();
  for (const ref of await symlinksBelow(`${root}/images/refs`)) {
    const t = await readLinkOrNull(`${root}/images/refs/${ref}`);
    if (t !== null) imageRoots.add(basename(t));
  }
  for (const ref of await symlinksBelow(`${root}/streams/refs`)) {
    const t = await readLinkOrNull(`${root}/streams/refs/${ref}`);
    if (t !== null) streamRoots.add(basename(t));
  }
  const topImages = new Set((await readDirOrEmpty(`${root}/images`)).map((e) => e.name));
  const topStreams = new Map<string, ObjectId | null>();
  for (const e of await readDirOrEmpty(`${root}/streams`)) {
    if (!e.isSymlink) continue;
    const t = await readLinkOrNull(`${root}/streams/${e.name}`);
    topStreams.set(e.name, t === null ? null : objectIdOfTarget(t, repo.alg));
  }
  for (const name of extraRoots) {
    if (topImages.has(name)) imageRoots.add(name);
    if (topStreams.has(name)) streamRoots.add(name);
  }

  // 2. Image roots: the image object and every object its metadata references.
  for (const name of imageRoots) {
    const t = await readLinkOrNull(`${root}/images/${name}`);
    const id = t === null ? null : objectIdOfTarget(t, repo.alg);
    if (!id) continue;
    live.add(id.hex());
    let bytes: Uint8Array;
    try {
      bytes = await repo.readObject(id);
    } catch (e) {
      warnings.push(`image ${name}: ${(e as Error).message}`);
      continue;
    }
    try {
      for (const o of collect(bytes, repo.alg)) live.add(o.hex());
    } catch (e) {
      warnings.push(`image ${name}: ${(e as Error).message}`);
    }
  }

  // 3. Stream roots, depth first, by object: a named ref leads to the object it names whether or not
  // a streams/ link still points there (a stream renamed or unlinked by a crash keeps its objects
  // while something references it). A named ref to an EROFS image keeps that image's objects.
  const pending: ObjectId[] = [];
  for (const name of streamRoots) {
    const id = topStreams.get(name);
    if (id) pending.push(id);
  }
  const visited = new Set<string>();
  while (pending.length > 0) {
    const id = pending.pop()!;
    const hex = id.hex();
    if (visited.has(hex)) continue;
    visited.add(hex);
    live.add(hex);
    let bytes: Uint8Array;
    try {
      bytes = await repo.readObject(id);
    } catch (e) {
      warnings.push(`stream object ${id.toId()}: ${(e as Error).message}`);
      continue;
    }
    let reader: SplitStreamReader;
    try {
      reader = await SplitStreamReader.fromBytes(bytes, { alg: repo.alg });
    } catch (e) {
      try {
        for (const o of collect(bytes, repo.alg)) live.add(o.hex());
      } catch {
        warnings.push(`stream object ${id.toId()}: ${(e as Error).message}`);
      }
      continue;
    }
    for (const o of reader.objectRefs) live.add(o.hex());
    for (const o of reader.namedRefs.values()) if (!visited.has(o.hex())) pending.push(o);
  }

  // 4. Unreachable objects, decided before anything is deleted.
  const doomed: { rel: string; size: number }[] = [];
  const removed = new Set<string>();
  for (const sub of await readDirOrEmpty(`${root}/objects`)) {
    if (!sub.isDirectory || !/^[0-9a-f]{2}$/.test(sub.name)) continue;
    for (const f of await readDirOrEmpty(`${root}/objects/${sub.name}`)) {
      if (live.has(sub.name + f.name)) continue;
      const rel = `objects/${sub.name}/${f.name}`;
      let size = 0;
      try {
        size = (await Deno.lstat(`${root}/${rel}`)).size;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw e;
      }
      doomed.push({ rel, size });
      removed.add(rel);
    }
  }

  // 5. Links that are broken or lead to a doomed object go first — refs, then the top-level links —
  // and reach the disk before any object is deleted: a gc killed at any point leaves links only to
  // objects that still exist (docs/gc.md).
  const isBroken = async (abs: string): Promise<boolean> => {
    let real: string;
    try {
      real = await Deno.realPath(abs);
    } catch {
      return true;
    }
    const m = /objects\/[0-9a-f]{2}\/[0-9a-f]+$/.exec(real);
    return m !== null && removed.has(m[0]);
  };
  const prune = async (dir: string, names: string[]): Promise<number> => {
    let n = 0;
    for (const name of names) {
      const abs = `${dir}/${name}`;
      if (!(await isBroken(abs))) continue;
      if (!dryRun) await Deno.remove(abs).catch(() => {});
      n++;
    }
    return n;
  };
  const topLinks = async (dir: string) =>
    (await readDirOrEmpty(dir)).filter((e) => e.isSymlink).map((e) => e.name);
  let imagesPruned = await prune(`${root}/images/refs`, await symlinksBelow(`${root}/images/refs`));
  let streamsPruned = await prune(`${root}/streams/refs`, await symlinksBelow(`${root}/streams/refs`));
  imagesPruned += await prune(`${root}/images`, await topLinks(`${root}/images`));
  streamsPruned += await prune(`${root}/streams`, await topLinks(`${root}/streams`));
  if (!dryRun && doomed.length > 0) repo.sync();

  // 6. Only now the objects.
  let objectsRemoved = 0;
  let bytesRemoved = 0;
  for (const d of doomed) {
    try {
      if (!dryRun) await Deno.remove(`${root}/${d.rel}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      throw e;
    }
    objectsRemoved++;
    bytesRemoved += d.size;
  }

  return { objectsRemoved, bytesRemoved, imagesPruned, streamsPruned, warnings };
}
