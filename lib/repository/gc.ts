// Garbage collection (spec §2.8). Roots are the named refs (images/refs, streams/refs) plus names
// given by the caller; everything reachable from them — image objects and the objects their
// EROFS metadata references, streams and their object and named refs, transitively — is kept.
// Runs under the exclusive lock so no writer is between storing objects and linking its stream.
import type { ObjectId } from "../fsverity/object_id.ts";
import { collectObjects } from "../erofs/reader.ts";
import type { Repository } from "./repository.ts";
import { objectIdOfTarget, openStream } from "./streams.ts";
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

  // 3. Stream roots, depth first; named refs whose object is some stream's object lead to that stream.
  const streamOfObject = new Map<string, string>();
  for (const [name, id] of topStreams) if (id) streamOfObject.set(id.hex(), name);
  const visited = new Set<string>();
  const pending = [...streamRoots];
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (visited.has(name)) continue;
    visited.add(name);
    const id = topStreams.get(name);
    if (!id) continue;
    live.add(id.hex());
    let reader;
    try {
      reader = await openStream(repo, name);
    } catch (e) {
      warnings.push(`stream ${name}: ${(e as Error).message}`);
      continue;
    }
    for (const o of reader.objectRefs) live.add(o.hex());
    for (const o of reader.namedRefs.values()) {
      live.add(o.hex());
      const s = streamOfObject.get(o.hex());
      if (s !== undefined && !visited.has(s)) pending.push(s);
    }
  }

  // 4. Unreachable objects go.
  let objectsRemoved = 0;
  let bytesRemoved = 0;
  const removed = new Set<string>();
  for (const sub of await readDirOrEmpty(`${root}/objects`)) {
    if (!sub.isDirectory || !/^[0-9a-f]{2}$/.test(sub.name)) continue;
    for (const f of await readDirOrEmpty(`${root}/objects/${sub.name}`)) {
      const hex = sub.name + f.name;
      if (live.has(hex)) continue;
      const p = `${root}/objects/${sub.name}/${f.name}`;
      let size = 0;
      try {
        size = (await Deno.lstat(p)).size;
        if (!dryRun) await Deno.remove(p);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw e;
      }
      objectsRemoved++;
      bytesRemoved += size;
      removed.add(`objects/${sub.name}/${f.name}`);
    }
  }

  // 5. Links that are (or, in a dry run, would be) broken.
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
  let imagesPruned = await prune(`${root}/images`, await topLinks(`${root}/images`));
  let streamsPruned = await prune(`${root}/streams`, await topLinks(`${root}/streams`));
  imagesPruned += await prune(`${root}/images/refs`, await symlinksBelow(`${root}/images/refs`));
  streamsPruned += await prune(`${root}/streams/refs`, await symlinksBelow(`${root}/streams/refs`));

  return { objectsRemoved, bytesRemoved, imagesPruned, streamsPruned, warnings };
}
