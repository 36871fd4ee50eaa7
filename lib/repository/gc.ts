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
  const run = new Collection(repo, dryRun, collect);
  const roots = run.roots(extraRoots);
  run.markImages(roots.imageRoots);
  await run.markStreams(roots.streamRoots);
  const doomed = run.unreachable();
  // Links that are broken, lead outside, or lead to a doomed object go first — refs, then the
  // top-level links — and reach the disk before any object is deleted: a gc killed at any point
  // leaves links only to objects that still exist (docs/gc.md).
  const removed = new Set(doomed.map((d) => d.rel));
  const isBroken = (rel: string) => run.isBroken(rel, removed);
  let imagesPruned = run.removeLinks(roots.imageRefs, isBroken);
  imagesPruned += run.removeLinks(roots.staleMountRefs);
  let streamsPruned = run.removeLinks(roots.streamRefs, isBroken);
  imagesPruned += run.removeLinks(roots.topImages, isBroken);
  streamsPruned += run.removeLinks(roots.topStreams, isBroken);
  if (!dryRun && doomed.length > 0) repo.sync();
  // Only now the objects.
  const { objectsRemoved, bytesRemoved } = run.removeObjects(doomed);
  return { objectsRemoved, bytesRemoved, imagesPruned, streamsPruned, warnings: run.warnings };
}

/** The refs and links gc starts from, and the objects they resolve to. */
interface GcRoots {
  imageRefs: string[];
  streamRefs: string[];
  /** Mount refs whose mount is gone: no roots, pruned with the broken links. */
  staleMountRefs: string[];
  topImages: string[];
  topStreams: string[];
  imageRoots: ObjectId[];
  streamRoots: ObjectId[];
}

/** One collection: the live set being marked, and the warnings so far. */
class Collection {
  readonly fs: RepoFs;
  /** Object hex of everything reachable. */
  readonly live = new Set<string>();
  readonly warnings: string[] = [];

  constructor(
    readonly repo: Repository,
    readonly dryRun: boolean,
    readonly collect: ImageObjectCollector,
  ) {
    this.fs = repoFs(repo);
  }

  warn(s: string): void {
    this.warnings.push(s);
  }

  #resolveObject(rel: string): ObjectId | null {
    try {
      return objectOfPath(this.fs.resolve(rel), this.repo.alg);
    } catch (e) {
      if (!(e instanceof RepoPathError && e.code === "not-found")) this.warn(`${rel}: ${describeError(e)}`);
      return null;
    }
  }

  #readObject(id: ObjectId): Uint8Array | null {
    try {
      return this.fs.readFile(`objects/${id.objectPath()}`, MAX_METADATA_OBJECT);
    } catch (e) {
      this.warn(`object ${id.toId()}: ${describeError(e)}`);
      return null;
    }
  }

  #topLinks(dir: string): string[] {
    try {
      return this.fs.list(dir).filter((e) => e.kind === "symlink").map((e) => `${dir}/${e.name}`);
    } catch (e) {
      this.warn(`${dir}: ${describeError(e)}`);
      return [];
    }
  }

  /**
   * 1. Roots, as objects: refs resolve (inside the repository only) to an image or a stream object.
   * A mount ref whose mount is gone is no root (docs/gc.md); it is pruned with the broken links.
   */
  roots(extraRoots: string[]): GcRoots {
    const warn = (s: string) => this.warn(s);
    const info = readMountInfo();
    const staleMountRefs: string[] = [];
    const imageRefs = refLinksBelow(this.fs, "images/refs", warn).filter((ref) => {
      if (!ref.startsWith(`${MOUNT_REFS_DIR}/`)) return true;
      if (mountRefLive(ref.slice(MOUNT_REFS_DIR.length + 1), info)) return true;
      staleMountRefs.push(ref);
      return false;
    });
    const streamRefs = refLinksBelow(this.fs, "streams/refs", warn);
    const imageRoots: ObjectId[] = [];
    const streamRoots: ObjectId[] = [];
    const addRoot = (rel: string, to: ObjectId[]) => {
      const id = this.#resolveObject(rel);
      if (id) to.push(id);
    };
    for (const ref of imageRefs) addRoot(ref, imageRoots);
    for (const ref of streamRefs) addRoot(ref, streamRoots);
    const topImages = this.#topLinks("images");
    const topStreams = this.#topLinks("streams");
    for (const name of extraRoots) {
      if (topImages.includes(`images/${name}`)) addRoot(`images/${name}`, imageRoots);
      if (topStreams.includes(`streams/${name}`)) addRoot(`streams/${name}`, streamRoots);
    }
    return { imageRefs, streamRefs, staleMountRefs, topImages, topStreams, imageRoots, streamRoots };
  }

  /** 2. Image roots: the image object and every object its metadata references. */
  markImages(imageRoots: ObjectId[]): void {
    for (const id of imageRoots) {
      if (this.live.has(id.hex())) continue;
      this.live.add(id.hex());
      const bytes = this.#readObject(id);
      if (!bytes) continue;
      try {
        for (const o of this.collect(bytes, this.repo.alg)) this.live.add(o.hex());
      } catch (e) {
        this.warn(`image ${id.hex()}: ${(e as Error).message}`);
      }
    }
  }

  /**
   * 3. Stream roots, depth first, by object: a named ref leads to the object it names whether or not
   * a streams/ link still points there (a stream renamed or unlinked by a crash keeps its objects
   * while something references it). A named ref to an EROFS image keeps that image's objects.
   */
  async markStreams(streamRoots: ObjectId[]): Promise<void> {
    const pending = [...streamRoots];
    const visited = new Set<string>();
    while (pending.length > 0) {
      const id = pending.pop()!;
      const hex = id.hex();
      if (visited.has(hex)) continue;
      visited.add(hex);
      this.live.add(hex);
      const bytes = this.#readObject(id);
      if (!bytes) continue;
      let reader: SplitStreamReader;
      try {
        reader = await SplitStreamReader.fromBytes(bytes, { alg: this.repo.alg });
      } catch (e) {
        try {
          for (const o of this.collect(bytes, this.repo.alg)) this.live.add(o.hex());
        } catch {
          this.warn(`stream object ${id.toId()}: ${(e as Error).message}`);
        }
        continue;
      }
      for (const o of reader.objectRefs) this.live.add(o.hex());
      for (const o of reader.namedRefs.values()) if (!visited.has(o.hex())) pending.push(o);
    }
  }

  /** 4. Unreachable objects, decided before anything is deleted. */
  unreachable(): { rel: string; size: number }[] {
    const doomed: { rel: string; size: number }[] = [];
    let subdirs: RepoEntry[];
    try {
      subdirs = this.fs.list("objects");
    } catch (e) {
      this.warn(`objects: ${describeError(e)}`);
      subdirs = [];
    }
    for (const sub of subdirs) {
      if (!/^[0-9a-f]{2}$/.test(sub.name)) continue;
      if (sub.kind !== "dir") {
        if (sub.kind === "symlink") {
          this.warn(`objects/${sub.name}: a symlink where the layout has a directory (not followed)`);
        }
        continue;
      }
      let files;
      try {
        files = this.fs.list(`objects/${sub.name}`);
      } catch (e) {
        this.warn(`objects/${sub.name}: ${describeError(e)}`);
        continue;
      }
      for (const f of files) {
        if (f.kind === "dir" || this.live.has(sub.name + f.name)) continue;
        const rel = `objects/${sub.name}/${f.name}`;
        const st = this.fs.lstat(rel);
        if (st === null) continue;
        doomed.push({ rel, size: f.kind === "file" ? st.size : 0 });
      }
    }
    return doomed;
  }

  /** 5. A link that does not resolve inside the repository, or leads to an object about to go. */
  isBroken(rel: string, removed: Set<string>): boolean {
    let real: string;
    try {
      real = this.fs.resolve(rel);
    } catch {
      return true;
    }
    return removed.has(real);
  }

  /** Removes the links that pass `which` (not in a dry run); returns how many are, or would be, gone. */
  removeLinks(links: string[], which: (rel: string) => boolean = () => true): number {
    let n = 0;
    for (const rel of links) {
      if (!which(rel)) continue;
      if (!this.dryRun) {
        try {
          this.fs.unlink(rel);
        } catch (e) {
          this.warn(`removing ${rel}: ${describeError(e)}`);
          continue;
        }
      }
      n++;
    }
    return n;
  }

  /** 6. The doomed objects (counted only, in a dry run); one already gone is not counted. */
  removeObjects(doomed: { rel: string; size: number }[]): { objectsRemoved: number; bytesRemoved: number } {
    let objectsRemoved = 0;
    let bytesRemoved = 0;
    for (const d of doomed) {
      if (!this.dryRun) {
        try {
          this.fs.unlink(d.rel);
        } catch (e) {
          if (e instanceof RepoPathError && e.code === "not-found") continue;
          if ((e as { errno?: number }).errno === 2) continue;
          throw e;
        }
      }
      objectsRemoved++;
      bytesRemoved += d.size;
    }
    return { objectsRemoved, bytesRemoved };
  }
}
