// Garbage collection (docs/repository.md#gc, docs/gc.md). Roots are the named refs (images/refs,
// streams/refs) plus names given by the caller; everything reachable from them — image objects and the
// objects their EROFS metadata references, streams and their object and named refs, transitively — is kept.
// Runs under the exclusive lock so no writer is between storing objects and linking its stream.
// Crash-safe: links go (and reach the disk) before the objects they lead to. Never leaves the
// repository: every access goes through RepoFs (no symlink followed where the layout has none,
// layout links resolved only while they stay inside; docs/repository-safety.md).
import { ObjectId } from "../fsverity/object_id.ts";
import { collectObjects } from "../erofs/reader.ts";
import type { Repository } from "./repository.ts";
import { SplitStreamReader } from "../splitstream/mod.ts";
import {
  MAX_METADATA_OBJECT,
  MAX_REF_DEPTH,
  type RepoEntry,
  type RepoFs,
  repoFs,
  RepoPathError,
} from "./repo_fs.ts";
import { describeError } from "../errors.ts";
import { MOUNT_REFS_DIR, mountRefLive, readMountInfo } from "./mount_refs.ts";

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

/** Every symlink below the layout directory `dir` (recursively, bounded depth), repository-relative. */
export function refLinksBelow(fs: RepoFs, dir: string, warn: (s: string) => void, depth = 0): string[] {
  const out: string[] = [];
  let entries;
  try {
    entries = fs.list(dir);
  } catch (e) {
    warn(`${dir}: ${describeError(e)}`);
    return out;
  }
  for (const e of entries) {
    const p = `${dir}/${e.name}`;
    if (e.kind === "symlink") out.push(p);
    else if (e.kind === "dir") {
      if (depth + 1 >= MAX_REF_DEPTH) {
        warn(`${p}: refs tree deeper than ${MAX_REF_DEPTH} levels (not walked)`);
      } else out.push(...refLinksBelow(fs, p, warn, depth + 1));
    }
  }
  return out;
}

/** The object a resolved repository-relative path names, or null. */
export function objectOfPath(rel: string, alg: ObjectId["alg"]): ObjectId | null {
  const m = /^objects\/([0-9a-f]{2})\/([0-9a-f]+)$/.exec(rel);
  if (!m) return null;
  try {
    return ObjectId.fromHex(m[1] + m[2], alg);
  } catch {
    return null;
  }
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
  const fs = repoFs(repo);
  const live = new Set<string>(); // object hex
  const warnings: string[] = [];
  const warn = (s: string) => warnings.push(s);
  const resolveObject = (rel: string): ObjectId | null => {
    try {
      return objectOfPath(fs.resolve(rel), repo.alg);
    } catch (e) {
      if (!(e instanceof RepoPathError && e.code === "not-found")) warn(`${rel}: ${describeError(e)}`);
      return null;
    }
  };
  const readObject = (id: ObjectId): Uint8Array | null => {
    try {
      return fs.readFile(`objects/${id.objectPath()}`, MAX_METADATA_OBJECT);
    } catch (e) {
      warn(`object ${id.toId()}: ${describeError(e)}`);
      return null;
    }
  };

  // 1. Roots, as objects: refs resolve (inside the repository only) to an image or a stream object.
  // A mount ref whose mount is gone is no root (docs/gc.md); it is pruned with the broken links.
  const info = readMountInfo();
  const staleMountRefs: string[] = [];
  const imageRefs = refLinksBelow(fs, "images/refs", warn).filter((ref) => {
    if (!ref.startsWith(`${MOUNT_REFS_DIR}/`)) return true;
    if (mountRefLive(ref.slice(MOUNT_REFS_DIR.length + 1), info)) return true;
    staleMountRefs.push(ref);
    return false;
  });
  const streamRefs = refLinksBelow(fs, "streams/refs", warn);
  const imageRoots: ObjectId[] = [];
  const streamRoots: ObjectId[] = [];
  for (const ref of imageRefs) {
    const id = resolveObject(ref);
    if (id) imageRoots.push(id);
  }
  for (const ref of streamRefs) {
    const id = resolveObject(ref);
    if (id) streamRoots.push(id);
  }
  const topLinks = (dir: string): string[] => {
    try {
      return fs.list(dir).filter((e) => e.kind === "symlink").map((e) => `${dir}/${e.name}`);
    } catch (e) {
      warn(`${dir}: ${describeError(e)}`);
      return [];
    }
  };
  const topImages = topLinks("images");
  const topStreams = topLinks("streams");
  for (const name of extraRoots) {
    if (topImages.includes(`images/${name}`)) {
      const id = resolveObject(`images/${name}`);
      if (id) imageRoots.push(id);
    }
    if (topStreams.includes(`streams/${name}`)) {
      const id = resolveObject(`streams/${name}`);
      if (id) streamRoots.push(id);
    }
  }

  // 2. Image roots: the image object and every object its metadata references.
  for (const id of imageRoots) {
    if (live.has(id.hex())) continue;
    live.add(id.hex());
    const bytes = readObject(id);
    if (!bytes) continue;
    try {
      for (const o of collect(bytes, repo.alg)) live.add(o.hex());
    } catch (e) {
      warn(`image ${id.hex()}: ${(e as Error).message}`);
    }
  }

  // 3. Stream roots, depth first, by object: a named ref leads to the object it names whether or not
  // a streams/ link still points there (a stream renamed or unlinked by a crash keeps its objects
  // while something references it). A named ref to an EROFS image keeps that image's objects.
  const pending = [...streamRoots];
  const visited = new Set<string>();
  while (pending.length > 0) {
    const id = pending.pop()!;
    const hex = id.hex();
    if (visited.has(hex)) continue;
    visited.add(hex);
    live.add(hex);
    const bytes = readObject(id);
    if (!bytes) continue;
    let reader: SplitStreamReader;
    try {
      reader = await SplitStreamReader.fromBytes(bytes, { alg: repo.alg });
    } catch (e) {
      try {
        for (const o of collect(bytes, repo.alg)) live.add(o.hex());
      } catch {
        warn(`stream object ${id.toId()}: ${(e as Error).message}`);
      }
      continue;
    }
    for (const o of reader.objectRefs) live.add(o.hex());
    for (const o of reader.namedRefs.values()) if (!visited.has(o.hex())) pending.push(o);
  }

  // 4. Unreachable objects, decided before anything is deleted.
  const doomed: { rel: string; size: number }[] = [];
  const removed = new Set<string>();
  let subdirs: RepoEntry[];
  try {
    subdirs = fs.list("objects");
  } catch (e) {
    warn(`objects: ${describeError(e)}`);
    subdirs = [];
  }
  for (const sub of subdirs) {
    if (!/^[0-9a-f]{2}$/.test(sub.name)) continue;
    if (sub.kind !== "dir") {
      if (sub.kind === "symlink") {
        warn(`objects/${sub.name}: a symlink where the layout has a directory (not followed)`);
      }
      continue;
    }
    let files;
    try {
      files = fs.list(`objects/${sub.name}`);
    } catch (e) {
      warn(`objects/${sub.name}: ${describeError(e)}`);
      continue;
    }
    for (const f of files) {
      if (f.kind === "dir" || live.has(sub.name + f.name)) continue;
      const rel = `objects/${sub.name}/${f.name}`;
      const st = fs.lstat(rel);
      if (st === null) continue;
      doomed.push({ rel, size: f.kind === "file" ? st.size : 0 });
      removed.add(rel);
    }
  }

  // 5. Links that are broken, lead outside, or lead to a doomed object go first — refs, then the
  // top-level links — and reach the disk before any object is deleted: a gc killed at any point
  // leaves links only to objects that still exist (docs/gc.md).
  const isBroken = (rel: string): boolean => {
    let real: string;
    try {
      real = fs.resolve(rel);
    } catch {
      return true;
    }
    return removed.has(real);
  };
  /** Removes the links that pass `which` (not in a dry run); returns how many are, or would be, gone. */
  const removeLinks = (links: string[], which: (rel: string) => boolean = () => true): number => {
    let n = 0;
    for (const rel of links) {
      if (!which(rel)) continue;
      if (!dryRun) {
        try {
          fs.unlink(rel);
        } catch (e) {
          warn(`removing ${rel}: ${describeError(e)}`);
          continue;
        }
      }
      n++;
    }
    return n;
  };
  const prune = (links: string[]): number => removeLinks(links, isBroken);
  let imagesPruned = prune(imageRefs);
  imagesPruned += removeLinks(staleMountRefs);
  let streamsPruned = prune(streamRefs);
  imagesPruned += prune(topImages);
  streamsPruned += prune(topStreams);
  if (!dryRun && doomed.length > 0) repo.sync();

  // 6. Only now the objects.
  let objectsRemoved = 0;
  let bytesRemoved = 0;
  for (const d of doomed) {
    if (!dryRun) {
      try {
        fs.unlink(d.rel);
      } catch (e) {
        if (e instanceof RepoPathError && e.code === "not-found") continue;
        if ((e as { errno?: number }).errno === 2) continue;
        throw e;
      }
    }
    objectsRemoved++;
    bytesRemoved += d.size;
  }

  return { objectsRemoved, bytesRemoved, imagesPruned, streamsPruned, warnings };
}
