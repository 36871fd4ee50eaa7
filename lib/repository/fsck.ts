// Repository consistency check (spec §2.9). Never changes anything. Each problem becomes one
// stable kebab-case error string (`fsck: <code>: <path>: <detail>`) so scripts can match them.
import { describeError, FormatError } from "../errors.ts";
import { fsverityDigestFile } from "../fsverity/digest_file.ts";
import { ObjectId } from "../fsverity/object_id.ts";
import { closeFd, O_RDONLY, openPath } from "../linux/fs.ts";
import { measureVerity, VerityError } from "../linux/fsverity_ioctl.ts";
import { collectObjects } from "../erofs/reader.ts";
import { algorithmName, checkMeta, META_FILENAME, parseMeta } from "./meta.ts";
import type { Repository } from "./repository.ts";
import { SplitStreamReader } from "../splitstream/mod.ts";
import { defaultWritePermits } from "../objects/semaphore.ts";
import { readDirOrEmpty } from "../util/fs.ts";

export interface FsckOptions {
  /** Skip phase 1 (object digests). */
  metadataOnly?: boolean;
  /** Parallel object checks (default: number of cores). */
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
}

function detail(e: unknown): string {
  return describeError(e);
}

const byName = (a: Deno.DirEntry, b: Deno.DirEntry) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Runs `fn` over `items` with at most `n` in flight. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
}

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
  };
  const err = (s: string) => r.errors.push(`fsck: ${s}`);
  await checkMetadata(repo, r, err);
  if (!opts.metadataOnly) await checkObjects(repo, r, err, opts.concurrency ?? defaultWritePermits());
  await checkStreams(repo, r, err);
  await checkImages(repo, r, err);
  r.ok = r.errors.length === 0;
  return r;
}

// ---- phase 0: meta.json ----------------------------------------------------------------------------

async function checkMetadata(repo: Repository, r: FsckReport, err: (s: string) => void): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(`${repo.path}/${META_FILENAME}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
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
  r: FsckReport,
  err: (s: string) => void,
  concurrency: number,
): Promise<void> {
  const objects = `${repo.path}/objects`;
  const hexLen = repo.alg === "sha256" ? 62 : 126;
  const files: { rel: string; abs: string; id: ObjectId | null; bad?: string }[] = [];
  for (const sub of (await readDirOrEmpty(objects)).sort(byName)) {
    if (!sub.isDirectory) continue;
    // Temporary files of the no-O_TMPFILE fallback live beside the XX dirs, not in them.
    const subOk = /^[0-9a-f]{2}$/.test(sub.name);
    for (const f of (await readDirOrEmpty(`${objects}/${sub.name}`)).sort(byName)) {
      const rel = `objects/${sub.name}/${f.name}`;
      let id: ObjectId | null = null;
      let bad: string | undefined;
      if (!subOk) bad = "directory name is not two hex digits";
      else if (!/^[0-9a-f]+$/.test(f.name) || f.name.length !== hexLen) {
        bad = `expected ${hexLen} lowercase hex digits for ${repo.alg}`;
      } else id = ObjectId.fromHex(sub.name + f.name, repo.alg);
      files.push({ rel, abs: `${objects}/${sub.name}/${f.name}`, id, bad });
    }
  }
  await pool(files, concurrency, async (f) => {
    r.objectsChecked++;
    const problem = await checkOneObject(repo, f.rel, f.abs, f.id, f.bad);
    if (problem) {
      r.objectsCorrupted++;
      err(problem);
    }
  });
}

async function checkOneObject(
  repo: Repository,
  rel: string,
  abs: string,
  id: ObjectId | null,
  bad: string | undefined,
): Promise<string | null> {
  if (!id) return `object-invalid-name: ${rel}: ${bad}`;
  let fd: number;
  try {
    fd = openPath(abs, O_RDONLY);
  } catch (e) {
    return `object-open-failed: ${rel}: ${detail(e)}`;
  }
  let measured: ObjectId | null = null;
  try {
    measured = measureVerity(fd, repo.alg);
  } catch (e) {
    const noVerity = e instanceof VerityError && (e.kind === "missing" || e.kind === "unsupported");
    if (!noVerity) return `object-verity-failed: ${rel}: ${detail(e)}`;
    if (!repo.insecure) return `object-verity-missing: ${rel}`;
  } finally {
    closeFd(fd);
  }
  if (measured === null) {
    try {
      measured = await fsverityDigestFile(abs, repo.alg);
    } catch (e) {
      return `object-open-failed: ${rel}: ${detail(e)}`;
    }
  }
  if (!measured.equals(id)) return `object-digest-mismatch: ${rel}: measured ${measured.hex()}`;
  return null;
}

// ---- links shared by phases 2 and 3 -----------------------------------------------------------------

/**
 * Checks one top-level entry of streams/ or images/: it must be a symlink that resolves. Returns
 * the resolved path, or null after recording the error.
 */
async function checkTopLink(
  abs: string,
  rel: string,
  r: FsckReport,
  err: (s: string) => void,
): Promise<string | null> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(abs);
  } catch (e) {
    err(`stat-failed: ${rel}: ${detail(e)}`);
    return null;
  }
  if (!st.isSymlink) {
    err(`entry-not-symlink: ${rel}`);
    return null;
  }
  try {
    return await Deno.realPath(abs);
  } catch {
    r.brokenLinks++;
    err(`broken-symlink: ${rel}`);
    return null;
  }
}

/** refs/ trees: symlinks must resolve, directories recurse, anything else is an error. */
async function checkRefsTree(absDir: string, relDir: string, r: FsckReport, err: (s: string) => void) {
  for (const e of (await readDirOrEmpty(absDir)).sort(byName)) {
    const abs = `${absDir}/${e.name}`;
    const rel = `${relDir}/${e.name}`;
    if (e.isSymlink) {
      try {
        await Deno.stat(abs);
      } catch {
        r.brokenLinks++;
        err(`broken-symlink: ${rel}`);
      }
    } else if (e.isDirectory) {
      await checkRefsTree(abs, rel, r, err);
    } else {
      err(`unexpected-file-type: ${rel}: ${e.isFile ? "regular file" : "special file"}`);
    }
  }
}

/** Whether an object referenced from a stream or image exists; records the problem otherwise. */
async function objectPresent(
  repo: Repository,
  id: ObjectId,
  rel: string,
  err: (s: string) => void,
): Promise<"present" | "missing" | "error"> {
  try {
    const st = await Deno.stat(repo.objectPath(id));
    if (st.isFile) return "present";
    err(`object-check-failed: ${rel}: ${id.toId()}: not a regular file`);
    return "error";
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "missing";
    err(`object-check-failed: ${rel}: ${id.toId()}: ${detail(e)}`);
    return "error";
  }
}

// ---- phase 2: streams --------------------------------------------------------------------------------

/**
 * Phases 2 and 3 share their walk: every top-level entry of streams/ or images/ is checked by
 * `checkOne` and counted, then the refs/ tree below it.
 */
async function checkLinkDir(
  repo: Repository,
  kind: "streams" | "images",
  checkOne: (
    repo: Repository,
    abs: string,
    rel: string,
    r: FsckReport,
    err: (s: string) => void,
  ) => Promise<void>,
  r: FsckReport,
  err: (s: string) => void,
): Promise<void> {
  const dir = `${repo.path}/${kind}`;
  for (const e of (await readDirOrEmpty(dir)).sort(byName)) {
    if (e.name === "refs" && e.isDirectory) continue;
    const before = r.errors.length;
    await checkOne(repo, `${dir}/${e.name}`, `${kind}/${e.name}`, r, err);
    const bad = r.errors.length > before;
    if (kind === "streams") {
      r.streamsChecked++;
      if (bad) r.streamsCorrupted++;
    } else {
      r.imagesChecked++;
      if (bad) r.imagesCorrupted++;
    }
  }
  await checkRefsTree(`${dir}/refs`, `${kind}/refs`, r, err);
}

function checkStreams(repo: Repository, r: FsckReport, err: (s: string) => void): Promise<void> {
  return checkLinkDir(repo, "streams", checkOneStream, r, err);
}

async function checkOneStream(
  repo: Repository,
  abs: string,
  rel: string,
  r: FsckReport,
  err: (s: string) => void,
): Promise<void> {
  const real = await checkTopLink(abs, rel, r, err);
  if (real === null) return;
  let reader: SplitStreamReader;
  try {
    reader = await SplitStreamReader.fromBytes(await Deno.readFile(real), { alg: repo.alg });
  } catch (e) {
    err(`stream-open-failed: ${rel}: ${detail(e)}`);
    return;
  }
  for (const id of reader.objectRefs) {
    if ((await objectPresent(repo, id, rel, err)) === "missing") {
      r.missingObjects++;
      err(`missing-object-ref: ${rel}: ${id.toId()}`);
    }
  }
  for (const [name, id] of reader.namedRefs) {
    if ((await objectPresent(repo, id, rel, err)) === "missing") {
      r.missingObjects++;
      err(`missing-named-ref: ${rel}: ref ${name}: ${id.toId()}`);
    }
  }
  try {
    // Decode the whole chunk stream: catches corrupt compression and bad record framing.
    for await (const _ of reader.chunks()) { /* structure only */ }
  } catch (e) {
    err(`stream-read-failed: ${rel}: ${detail(e)}`);
  }
}

// ---- phase 3: images ---------------------------------------------------------------------------------

function checkImages(repo: Repository, r: FsckReport, err: (s: string) => void): Promise<void> {
  return checkLinkDir(repo, "images", checkOneImage, r, err);
}

async function checkOneImage(
  repo: Repository,
  abs: string,
  rel: string,
  r: FsckReport,
  err: (s: string) => void,
): Promise<void> {
  const real = await checkTopLink(abs, rel, r, err);
  if (real === null) return;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(real);
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
  for (const id of objects) {
    if ((await objectPresent(repo, id, rel, err)) === "missing") {
      r.missingObjects++;
      err(`image-missing-object: ${rel}: ${id.toId()}`);
    }
  }
}
