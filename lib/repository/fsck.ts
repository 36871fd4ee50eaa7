// Repository consistency check (docs/repository.md#fsck). Never changes anything. Never leaves the
// repository: everything is opened through RepoFs (docs/repository-safety.md), so a symlink, FIFO or device
// planted in the layout becomes a finding instead of a hang or a walk elsewhere. Each problem becomes one
// stable kebab-case error string (`fsck: <code>: <path>: <detail>`) so scripts can match them.
import { describeError, FormatError } from "../errors.ts";
import { type DigestScratch, fsverityDigestReader } from "../fsverity/digest_file.ts";
import { FsVerityHasher } from "../fsverity/hasher.ts";
import { ObjectId } from "../fsverity/object_id.ts";
import { closeFd, preadAsync, preadCached } from "../linux/fs.ts";
import { measureVerity } from "../fsverity/measure.ts";
import { VerityError } from "../linux/fsverity_ioctl.ts";
import { createHash } from "node:crypto";
import {
  LayoutDirCache,
  MAX_METADATA_OBJECT,
  MAX_REF_DEPTH,
  type RepoEntry,
  type RepoFs,
  repoFs,
  RepoPathError,
} from "./repo_fs.ts";
import { objectOfPath } from "./gc.ts";
import { collectObjects } from "../erofs/reader.ts";
import { algorithmName, checkMeta, META_FILENAME, parseMeta } from "./meta.ts";
import type { Repository } from "./repository.ts";
import { removeStaleMountRefs } from "./mount_refs.ts";
import { reassemble, SplitStreamReader } from "../splitstream/mod.ts";
import { runBounded } from "../util/run_bounded.ts";

export interface FsckOptions {
  /** Skip phase 1 (object digests). */
  metadataOnly?: boolean;
  /** Object checks in flight (default OBJECT_CHECKS_IN_FLIGHT). */
  concurrency?: number;
}

export interface FsckReport {
  ok: boolean;
  hasMetadata: boolean;
  metadata: "ok" | "absent" | "error";
  objectsChecked: number;
  objectsCorrupted: number;
  streamsChecked: number;
  streamsCorrupted: number;
  imagesChecked: number;
  imagesCorrupted: number;
  brokenLinks: number;
  missingObjects: number;
  errors: string[];
  /** Stale mount refs (their mount is gone) that fsck removed: the one thing it changes. */
  staleMountRefsRemoved: string[];
}

function detail(e: unknown): string {
  return describeError(e);
}

/**
 * Objects read at once. The reads run on Deno's I/O threads and the hashing here, so more checks in
 * flight than cores keep the disk busy: fsck of 100,000 objects not in the page cache took 12.5 s with
 * 2, 7.2 s with 8, 6.5 s with 16 (as fast as from the cache). Memory: two CHECK_CHUNK buffers each.
 */
export const OBJECT_CHECKS_IN_FLIGHT = 16;

/** Read buffers of one object check (two: the next read overlaps the hashing of the last). */
const CHECK_CHUNK = 256 * 1024;

export async function fsck(repo: Repository, opts: FsckOptions = {}): Promise<FsckReport> {
  const r: FsckReport = {
    ok: true,
    hasMetadata: false,
    metadata: "absent",
    objectsChecked: 0,
    objectsCorrupted: 0,
    streamsChecked: 0,
    streamsCorrupted: 0,
    imagesChecked: 0,
    imagesCorrupted: 0,
    brokenLinks: 0,
    missingObjects: 0,
    errors: [],
    staleMountRefsRemoved: [],
  };
  const err = (s: string) => r.errors.push(`fsck: ${s}`);
  const fs = repoFs(repo);
  // Runtime state, not content: a mount ref whose mount is gone is removed (docs/gc.md).
  if (await repo.ensureWritable().then(() => true, () => false)) {
    r.staleMountRefsRemoved = removeStaleMountRefs(repo);
  }
  await checkMetadata(repo, fs, r, err);
  // objects/XX opened once for the per-object opens and lookups of every phase.
  using dirs = new LayoutDirCache(fs);
  if (!opts.metadataOnly) {
    await checkObjects(repo, fs, dirs, r, err, opts.concurrency ?? OBJECT_CHECKS_IN_FLIGHT);
  }
  const run: FsckRun = { repo, fs, dirs, r, err };
  await checkLinkDir(run, "streams", checkOneStream);
  await checkLinkDir(run, "images", checkOneImage);
  r.ok = r.errors.length === 0;
  return r;
}

/** The finding for a RepoFs failure at `rel`: its own code where it has one. */
function pathFinding(e: unknown, rel: string, fallback: string): string {
  if (e instanceof RepoPathError && e.code !== "not-found") return `${e.code}: ${e.message}`;
  return `${fallback}: ${rel}: ${detail(e)}`;
}

/** Entries of a layout directory, or null after recording why it cannot be listed. */
function listOrFinding(fs: RepoFs, rel: string, err: (s: string) => void): RepoEntry[] | null {
  try {
    const k = fs.kind(rel);
    if (k === null) return [];
    if (k === "symlink") {
      err(`symlink-in-layout: ${rel}: a symlink where the layout has a directory (not followed)`);
      return null;
    }
    if (k !== "dir") {
      err(
        `not-a-directory: ${rel}: a ${
          k === "file" ? "regular file" : "special file"
        } where the layout has a directory`,
      );
      return null;
    }
    return fs.list(rel);
  } catch (e) {
    err(pathFinding(e, rel, "list-failed"));
    return null;
  }
}

// ---- phase 0: meta.json ----------------------------------------------------------------------------

const MAX_META = 1 << 20;

function checkMetadata(repo: Repository, fs: RepoFs, r: FsckReport, err: (s: string) => void): void {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFile(META_FILENAME, MAX_META);
  } catch (e) {
    if (e instanceof RepoPathError && e.code === "not-found") return;
    r.hasMetadata = true;
    r.metadata = "error";
    err(`metadata-parse-failed: ${META_FILENAME}: ${detail(e)}`);
    return;
  }
  r.hasMetadata = true;
  try {
    const meta = parseMeta(bytes);
    const { alg } = checkMeta(meta);
    if (alg !== repo.alg) {
      r.metadata = "error";
      err(
        `metadata-algorithm-mismatch: ${META_FILENAME}: expected ${meta.algorithm}, ` +
          `repository opened as ${algorithmName(repo.alg)}`,
      );
      return;
    }
    r.metadata = "ok";
  } catch (e) {
    r.metadata = "error";
    err(`metadata-parse-failed: ${META_FILENAME}: ${detail(e)}`);
  }
}

// ---- phase 1: objects --------------------------------------------------------------------------------

async function checkObjects(
  repo: Repository,
  fs: RepoFs,
  dirs: LayoutDirCache,
  r: FsckReport,
  err: (s: string) => void,
  concurrency: number,
): Promise<void> {
  const hexLen = repo.alg === "sha256" ? 62 : 126;
  // Read buffers and a hasher per worker, reused for every object it checks.
  const scratch: DigestScratch[] = [];
  const verity: VerityState = { unsupported: false };
  const check = async (f: { rel: string; kind: string; id: ObjectId | null; bad?: string }, w: number) => {
    r.objectsChecked++;
    const mine = scratch[w] ??= {
      buffers: [new Uint8Array(CHECK_CHUNK), new Uint8Array(CHECK_CHUNK)],
      hasher: new FsVerityHasher(repo.alg),
    };
    const problem = await checkOneObject(repo, dirs, f.rel, f.kind, f.id, f.bad, mine, verity);
    if (problem) {
      r.objectsCorrupted++;
      err(problem);
    }
  };
  // One objects/XX directory at a time: the list of what is to check never holds the whole store.
  for (const sub of listOrFinding(fs, "objects", err) ?? []) {
    if (sub.kind === "symlink") {
      err(
        `symlink-in-layout: objects/${sub.name}: a symlink where the layout has a directory (not followed)`,
      );
      continue;
    }
    // Temporary files of the no-O_TMPFILE fallback live beside the XX dirs, not in them.
    if (sub.kind !== "dir") continue;
    const subOk = /^[0-9a-f]{2}$/.test(sub.name);
    const files: { rel: string; kind: string; id: ObjectId | null; bad?: string }[] = [];
    for (const f of listOrFinding(fs, `objects/${sub.name}`, err) ?? []) {
      const rel = `objects/${sub.name}/${f.name}`;
      let id: ObjectId | null = null;
      let bad: string | undefined;
      if (!subOk) bad = "directory name is not two hex digits";
      else if (!/^[0-9a-f]+$/.test(f.name) || f.name.length !== hexLen) {
        bad = `expected ${hexLen} lowercase hex digits for ${repo.alg}`;
      } else id = ObjectId.fromHex(sub.name + f.name, repo.alg);
      files.push({ rel, kind: f.kind, id, bad });
    }
    await runBounded(files, concurrency, check);
  }
}

/**
 * Whether the objects' filesystem has no fs-verity at all (EOPNOTSUPP/ENOTTY once): then no other
 * object is asked (an ioctl and an exception per object were a tenth of a 100,000-object fsck).
 */
interface VerityState {
  unsupported: boolean;
}

async function checkOneObject(
  repo: Repository,
  dirs: LayoutDirCache,
  rel: string,
  kind: string,
  id: ObjectId | null,
  bad: string | undefined,
  scratch: DigestScratch,
  verity: VerityState,
): Promise<string | null> {
  if (!id) return `object-invalid-name: ${rel}: ${bad}`;
  if (kind === "symlink") return `symlink-in-layout: ${rel}: an object is a symlink (not followed)`;
  if (kind === "dir") return `not-a-regular-file: ${rel}: is a directory, not a regular file`;
  let fd: number;
  let size: number;
  try {
    ({ fd, size } = dirs.openFile(rel));
  } catch (e) {
    return pathFinding(e, rel, "object-open-failed");
  }
  try {
    let measured: ObjectId | null = null;
    if (verity.unsupported) {
      if (!repo.insecure) return `object-verity-missing: ${rel}`;
    } else {
      try {
        measured = measureVerity(fd, repo.alg);
      } catch (e) {
        const noVerity = e instanceof VerityError && (e.kind === "missing" || e.kind === "unsupported");
        if (!noVerity) return `object-verity-failed: ${rel}: ${detail(e)}`;
        if (e.kind === "unsupported") verity.unsupported = true;
        if (!repo.insecure) return `object-verity-missing: ${rel}`;
      }
    }
    if (measured === null) {
      try {
        // Objects do not change: reading stops at the size fstat gave (no extra read to see EOF); a
        // file shorter than that ends early and its digest will not match. A small object in the page
        // cache is read here at once; the rest go through the I/O threads.
        let off = 0;
        measured = await fsverityDigestReader(
          {
            read: async (buf) => {
              if (off >= size) return null;
              const want = buf.subarray(0, Math.min(buf.length, size - off));
              const n = (off === 0 && want.length === size ? preadCached(fd, want, 0) : null) ??
                await preadAsync(fd, want, off);
              off += n;
              return n === 0 ? null : n;
            },
          },
          repo.alg,
          scratch,
        );
      } catch (e) {
        return `object-open-failed: ${rel}: ${detail(e)}`;
      }
    }
    if (!measured.equals(id)) return `object-digest-mismatch: ${rel}: measured ${measured.hex()}`;
    return null;
  } finally {
    closeFd(fd);
  }
}

// ---- links shared by phases 2 and 3 -----------------------------------------------------------------

/**
 * Checks one top-level entry of streams/ or images/: it must be a symlink that resolves, inside the
 * repository, to an object. Returns the object's id, or null after recording the error.
 */
function checkTopLink(
  repo: Repository,
  fs: RepoFs,
  kind: string,
  rel: string,
  r: FsckReport,
  err: (s: string) => void,
): ObjectId | null {
  if (kind !== "symlink") {
    err(`entry-not-symlink: ${rel}`);
    return null;
  }
  let real: string;
  try {
    real = fs.resolve(rel);
  } catch (e) {
    if (e instanceof RepoPathError && e.code === "not-found") {
      r.brokenLinks++;
      err(`broken-symlink: ${rel}`);
    } else err(pathFinding(e, rel, "broken-symlink"));
    return null;
  }
  const id = objectOfPath(real, repo.alg);
  if (!id) err(`link-not-object: ${rel}: leads to ${real}, not an object`);
  return id;
}

/** refs/ trees: symlinks must resolve inside, directories recurse (bounded), anything else is an error. */
function checkRefsTree(fs: RepoFs, relDir: string, r: FsckReport, err: (s: string) => void, depth = 0): void {
  const entries = listOrFinding(fs, relDir, err);
  for (const e of entries ?? []) {
    const rel = `${relDir}/${e.name}`;
    if (e.kind === "symlink") {
      try {
        fs.resolve(rel);
      } catch (x) {
        if (x instanceof RepoPathError && x.code === "not-found") {
          r.brokenLinks++;
          err(`broken-symlink: ${rel}`);
        } else err(pathFinding(x, rel, "broken-symlink"));
      }
    } else if (e.kind === "dir") {
      if (depth + 1 >= MAX_REF_DEPTH) {
        err(`refs-too-deep: ${rel}: more than ${MAX_REF_DEPTH} levels (not walked)`);
      } else checkRefsTree(fs, rel, r, err, depth + 1);
    } else {
      err(`unexpected-file-type: ${rel}: ${e.kind === "file" ? "regular file" : "special file"}`);
    }
  }
}

/** Whether an object referenced from a stream or image exists; records the problem otherwise. */
function objectPresent(
  dirs: LayoutDirCache,
  id: ObjectId,
  rel: string,
  err: (s: string) => void,
): "present" | "missing" | "error" {
  try {
    const k = dirs.kind(`objects/${id.objectPath()}`);
    if (k === "file") return "present";
    if (k === null) return "missing";
    err(`object-check-failed: ${rel}: ${id.toId()}: not a regular file (${k})`);
    return "error";
  } catch (e) {
    err(`object-check-failed: ${rel}: ${id.toId()}: ${detail(e)}`);
    return "error";
  }
}

// ---- phases 2 and 3 ------------------------------------------------------------------------------------

/** What the link phases share: the repository, its directory handle, the report and its error sink. */
interface FsckRun {
  repo: Repository;
  fs: RepoFs;
  dirs: LayoutDirCache;
  r: FsckReport;
  err: (s: string) => void;
}

/** Checks the object `id` that the link `rel` leads to. */
type CheckOne = (run: FsckRun, id: ObjectId, rel: string) => Promise<void>;

/**
 * Phases 2 and 3 share their walk: every top-level entry of streams/ or images/ is checked by
 * `checkOne` and counted, then the refs/ tree below it.
 */
async function checkLinkDir(run: FsckRun, kind: "streams" | "images", checkOne: CheckOne): Promise<void> {
  const { repo, fs, r, err } = run;
  const entries = listOrFinding(fs, kind, err);
  if (entries === null) return;
  let refsIsDir = false;
  for (const e of entries) {
    if (e.name === "refs") {
      refsIsDir = true;
      continue;
    }
    const before = r.errors.length;
    const rel = `${kind}/${e.name}`;
    const id = checkTopLink(repo, fs, e.kind, rel, r, err);
    if (id) await checkOne(run, id, rel);
    const bad = r.errors.length > before;
    if (kind === "streams") {
      r.streamsChecked++;
      if (bad) r.streamsCorrupted++;
    } else {
      r.imagesChecked++;
      if (bad) r.imagesCorrupted++;
    }
  }
  if (refsIsDir) checkRefsTree(fs, `${kind}/refs`, r, err);
}

/** A content id that names its content's digest (`sha256:<hex>`, `oci-layer-sha256:<hex>`, …). */
const DIGEST_NAME = /(?:^|-)(sha256|sha512):([0-9a-f]+)$/;

async function checkOneStream(run: FsckRun, id: ObjectId, rel: string): Promise<void> {
  const { repo, fs, dirs, r, err } = run;
  let reader: SplitStreamReader;
  try {
    reader = await SplitStreamReader.fromBytes(
      fs.readFile(`objects/${id.objectPath()}`, MAX_METADATA_OBJECT),
      {
        alg: repo.alg,
      },
    );
  } catch (e) {
    err(`stream-open-failed: ${rel}: ${detail(e)}`);
    return;
  }
  let complete = true;
  for (const oid of reader.objectRefs) {
    const p = objectPresent(dirs, oid, rel, err);
    if (p !== "present") complete = false;
    if (p === "missing") {
      r.missingObjects++;
      err(`missing-object-ref: ${rel}: ${oid.toId()}`);
    }
  }
  for (const [name, oid] of reader.namedRefs) {
    if (objectPresent(dirs, oid, rel, err) === "missing") {
      r.missingObjects++;
      err(`missing-named-ref: ${rel}: ref ${name}: ${oid.toId()}`);
    }
  }
  // A stream registered under a digest must hold content with that digest (a layer stream name
  // repointed at another layer's object is caught here); else only the chunk structure is decoded.
  const m = DIGEST_NAME.exec(rel.slice("streams/".length));
  const hash = m && complete && (m[2].length === (m[1] === "sha256" ? 64 : 128)) ? createHash(m[1]) : null;
  try {
    if (hash) {
      const buf = new Uint8Array(1 << 20);
      for await (const piece of reassemble(reader, (oid) => objectBytes(fs, oid, buf))) hash.update(piece);
    } else {
      for await (const _ of reader.chunks());
    }
  } catch (e) {
    err(`stream-read-failed: ${rel}: ${detail(e)}`);
    return;
  }
  if (hash && m) {
    const got = hash.digest("hex");
    if (got !== m[2]) err(`stream-content-mismatch: ${rel}: content hashes to ${m[1]}:${got}`);
  }
}

/**
 * An object's bytes, read through the repository's directory handle (never a path walk out of
 * it), in views of `buf` that are valid until the next pull.
 */
async function* objectBytes(fs: RepoFs, id: ObjectId, buf: Uint8Array): AsyncGenerator<Uint8Array> {
  const { fd } = fs.openFile(`objects/${id.objectPath()}`);
  try {
    for (let off = 0;;) {
      const n = await preadAsync(fd, buf, off);
      if (n === 0) return;
      yield buf.subarray(0, n);
      off += n;
    }
  } finally {
    closeFd(fd);
  }
}

async function checkOneImage(run: FsckRun, id: ObjectId, rel: string): Promise<void> {
  const { repo, fs, dirs, r, err } = run;
  await Promise.resolve();
  const name = rel.slice("images/".length);
  if (/^[0-9a-f]+$/.test(name) && name !== id.hex()) {
    err(`image-name-mismatch: ${rel}: links to object ${id.hex()}`);
  }
  let bytes: Uint8Array;
  try {
    bytes = fs.readFile(`objects/${id.objectPath()}`, MAX_METADATA_OBJECT);
  } catch (e) {
    err(`image-open-failed: ${rel}: ${detail(e)}`);
    return;
  }
  let objects: ObjectId[];
  try {
    objects = collectObjects(bytes, repo.alg);
  } catch (e) {
    if (e instanceof FormatError) err(`image-invalid: ${rel}: ${detail(e)}`);
    else err(`image-read-failed: ${rel}: ${detail(e)}`);
    return;
  }
  for (const oid of objects) {
    if (objectPresent(dirs, oid, rel, err) === "missing") {
      r.missingObjects++;
      err(`image-missing-object: ${rel}: ${oid.toId()}`);
    }
  }
}
