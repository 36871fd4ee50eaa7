// Importing one overlay-driver layer into the repository without building its tar
// (docs/containers-storage.md): the tar-split records give the tar headers (written inline into the
// splitstream) and, for each file, the path of its content in the layer's diff/ directory. Contents over 64
// bytes become objects by the cheapest safe method: reflink (FICLONE into an O_TMPFILE in objects/), else a
// hard link of the diff/ file itself (only where that is safe, see canHardlink), else a copy (not in zerocopy
// mode). The splitstream is the same as a pull of the original layer tar gives (same inline/external split
// as lib/oci/layer_split.ts), and the sha256 of the reassembled bytes is checked against the diff_id
// unless the caller trusts the store. Every object is hashed from its own bytes (the clone, or the
// linked file), so what is named by a digest is what was hashed. Why and how: docs/containers-storage.md.
import { createHash, type Hash } from "node:crypto";
import { FormatError, IntegrityError, InvalidArgumentError, KernelError } from "../../../errors.ts";
import { parseDigest } from "../../digest.ts";
import { FsVerityHasher } from "../../../fsverity/hasher.ts";
import type { ObjectId } from "../../../fsverity/object_id.ts";
import {
  closeFd,
  ficlone,
  linkTmpfile,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_RDONLY,
  openPath,
  pread,
  writeAll,
} from "../../../linux/fs.ts";
import {
  type FileStat,
  isRegular,
  linkFdAt,
  openBeneath,
  pathSize,
  statFd,
  willNeed,
} from "../../../linux/file_extents.ts";
import { Errno, errnoName } from "../../../linux/libc.ts";
import { readXattrsFd } from "../../../linux/xattr.ts";
import type { ObjectDir } from "../../../objects/object_dir.ts";
import { INLINE_CONTENT_MAX, type SplitSink } from "../../layer_split.ts";
import { readTarSplit } from "./tar_split.ts";
import { type PrefetchItem, type PrefetchResult, PrefetchWorker } from "./prefetch_worker.ts";
import { humanBytes } from "../../../util/format.ts";

/** `--local-fetch`: disabled = skopeo proxy; auto = reflink, hard link or copy; zerocopy = no copy. */
export type LocalFetchMode = "disabled" | "auto" | "zerocopy";

export interface LocalFetchStats {
  reflinked: number;
  hardlinked: number;
  copied: number;
  present: number;
  bytesReflinked: number;
  bytesHardlinked: number;
  bytesCopied: number;
}

export function emptyLocalFetchStats(): LocalFetchStats {
  return {
    reflinked: 0,
    hardlinked: 0,
    copied: 0,
    present: 0,
    bytesReflinked: 0,
    bytesHardlinked: 0,
    bytesCopied: 0,
  };
}

/** The pull summary when objects came from containers-storage (docs/containers-storage.md wording). */
export function formatLocalFetchStats(
  s: Record<string, number>,
  pull: { bytesStored: number; bytesInlined: number },
): string {
  return `${s.reflinked} reflinked + ${s.hardlinked} hardlinked + ${s.copied} copied + ${s.present} already present objects; ${
    humanBytes(pull.bytesStored)
  } stored, ${humanBytes(pull.bytesInlined)} inlined`;
}

export interface LayerImportOptions {
  mode: "auto" | "zerocopy";
  /** `sha256:…` to check the reassembled stream against; undefined = trusted (not re-hashed). */
  verifyDiffId?: string;
  /** Whether the repository is insecure (no fs-verity required): a condition for hard links. */
  insecure: boolean;
  onProgress?: (bytes: number) => void;
}

export interface LayerImportResult {
  /** Bytes of the reassembled tar stream. */
  size: number;
  externalSize: number;
  inlineSize: number;
  entries: number;
}

const BUF_SIZE = 1 << 20;
const SMALL_COPY_MAX = 1 << 20;

/**
 * Remembers, per (source device, objects device), whether reflinks or hard links failed with "this
 * filesystem cannot" so the rest of the import does not try again.
 */
export class ZeroCopyState {
  /** (source dev>objects dev) → why reflinks cannot work there. */
  readonly noReflink = new Map<string, string>();
  readonly noHardlink = new Set<string>();
  objectsDev?: string;
  readonly stats = emptyLocalFetchStats();
  readonly buf = new Uint8Array(BUF_SIZE);
  readonly statBuf = new Uint8Array(256);
  hasher?: FsVerityHasher;
  /** Opens, reflinks and reads ahead on a second thread; null where no worker could start. */
  prefetch?: PrefetchWorker | null;

  /** Ends the prefetch worker (the import is over). */
  async close(): Promise<void> {
    await this.prefetch?.terminate();
    this.prefetch = undefined;
  }
}

function isCannot(e: unknown): boolean {
  return e instanceof KernelError &&
    [Errno.EOPNOTSUPP, Errno.EXDEV, Errno.EINVAL, Errno.ENOTTY, Errno.ENOSYS, Errno.EPERM].includes(
      e.errno as never,
    );
}

/** Path of a tar entry inside diff/: leading `./` and `/` removed; empty (the root) is null. */
function diffRelative(name: Uint8Array): Uint8Array | null {
  let i = 0;
  for (;;) {
    if (name[i] === 0x2f) i++;
    else if (name[i] === 0x2e && name[i + 1] === 0x2f) i += 2;
    else break;
  }
  let end = name.length;
  while (end > i && name[end - 1] === 0x2f) end--;
  return end > i ? name.subarray(i, end) : null;
}

const dec = new TextDecoder();

const LOOKAHEAD_FILES = 64;
/** Files per request to the prefetch worker. */
const PREFETCH_BATCH = 16;

/** The state's prefetch worker (started on first use), or null where none can run. */
function prefetcher(state: ZeroCopyState, objects: ObjectDir): PrefetchWorker | null {
  if (state.prefetch !== undefined) return state.prefetch;
  try {
    state.prefetch = new PrefetchWorker(objects.dir);
  } catch {
    state.prefetch = null;
  }
  return state.prefetch;
}
const LOOKAHEAD_BYTES = 64 << 20;

interface QueuedFile {
  kind: "file";
  size: number;
  label: string;
  fd: number;
  st: FileStat;
  /** The reflink already made (O_TMPFILE in objects/), -1 when none (not possible here). */
  tmp: number;
}

/** In tar order: raw segments, and files being prepared (opened, reflinked, read ahead). */
type Queued = { kind: "segment"; bytes: Uint8Array } | {
  kind: "pending";
  size: number;
  ready: Promise<QueuedFile>;
};

function closeQueued(q: QueuedFile): void {
  if (q.tmp >= 0) closeFd(q.tmp);
  q.tmp = -1;
  if (q.fd >= 0) closeFd(q.fd);
  q.fd = -1;
}

const CANNOT = new Set<number>([
  Errno.EOPNOTSUPP,
  Errno.EXDEV,
  Errno.EINVAL,
  Errno.ENOTTY,
  Errno.ENOSYS,
  Errno.EPERM,
]);

/**
 * The same work as the prefetch worker, on this thread (where no worker can be started). Failures
 * come back as errnos, like the worker's.
 */
function prefetchHere(diffFd: number, item: PrefetchItem, objects: ObjectDir): PrefetchResult {
  const r: PrefetchResult = {
    fd: -1,
    openErrno: 0,
    mode: 0,
    size: 0,
    nlink: 0,
    uid: 0,
    dev: "",
    tmp: -1,
    cloneErrno: 0,
  };
  try {
    r.fd = openBeneath(diffFd, item.path, O_RDONLY | O_NOFOLLOW);
    Object.assign(r, statFd(r.fd));
  } catch (e) {
    r.openErrno = e instanceof KernelError ? e.errno : Errno.EIO;
    return r;
  }
  if (item.clone && isRegular(r)) {
    const tmp = objects.tmpfile(objects.dir);
    if (tmp === null) r.cloneErrno = Errno.EOPNOTSUPP;
    else {
      try {
        ficlone(tmp, r.fd);
        r.tmp = tmp;
      } catch (e) {
        closeFd(tmp);
        r.cloneErrno = e instanceof KernelError ? e.errno : Errno.EIO;
      }
    }
  }
  willNeed(r.tmp >= 0 ? r.tmp : r.fd);
  return r;
}

/** Checks a prefetched file against its record; takes ownership of its fds (closed on error). */
function toQueued(
  res: PrefetchResult,
  size: number,
  label: string,
  tarSplitPath: string,
  state: ZeroCopyState,
): QueuedFile {
  const q: QueuedFile = { kind: "file", size, label, fd: res.fd, st: res, tmp: res.tmp };
  try {
    if (res.openErrno) {
      throw new FormatError(`${label}: cannot open the content of a layer file (${errnoName(res.openErrno)})`)
        .within(tarSplitPath);
    }
    if (!isRegular(res) || res.size !== size) {
      throw new FormatError(
        `${label}: ${
          isRegular(res) ? `${res.size} bytes` : "not a regular file"
        }, the layer says ${size} bytes`,
      );
    }
    if (res.cloneErrno) {
      if (!CANNOT.has(res.cloneErrno)) {
        throw new KernelError("ioctl(FICLONE)", res.cloneErrno, errnoName(res.cloneErrno), undefined, [
          label,
        ]);
      }
      state.noReflink.set(`${res.dev}>${state.objectsDev}`, errnoName(res.cloneErrno));
    }
  } catch (e) {
    closeQueued(q);
    throw e;
  }
  return q;
}

/**
 * Walks `tarSplitPath` and writes the layer into `sink`, storing contents from `diffDir` in
 * `objects`. Throws IntegrityError when the reassembled stream does not hash to the diff_id,
 * FormatError for a record that does not match diff/ (missing file, not a regular file, wrong size),
 * InvalidArgumentError in zerocopy mode when a file can neither be reflinked nor hard-linked. On failure the
 * sink holds a partial stream (discard it); objects stored so far stay as garbage for gc.
 */
export async function importOverlayLayer(
  tarSplitPath: string,
  diffDir: string,
  objects: ObjectDir,
  sink: SplitSink,
  state: ZeroCopyState,
  opts: LayerImportOptions,
): Promise<LayerImportResult> {
  const sha = opts.verifyDiffId !== undefined
    ? createHash(parseDigest(opts.verifyDiffId, "diff_id").alg)
    : undefined;
  await objects.prepare();
  if (state.objectsDev === undefined) {
    const fd = openPath(objects.dir, O_RDONLY | O_DIRECTORY);
    try {
      state.objectsDev = statFd(fd, state.statBuf).dev;
    } finally {
      closeFd(fd);
    }
  }
  const diffFd = openPath(diffDir, O_RDONLY | O_DIRECTORY);
  const r: LayerImportResult = { size: 0, externalSize: 0, inlineSize: 0, entries: 0 };
  let sinceProgress = 0;
  const inline = async (b: Uint8Array) => {
    if (!b.length) return;
    sha?.update(b);
    r.size += b.length;
    r.inlineSize += b.length;
    const w = sink.writeInline(b);
    if (w instanceof Promise) await w;
  };
  // Files are opened (and cloned) up to LOOKAHEAD_FILES / LOOKAHEAD_BYTES ahead of the one being
  // hashed, with POSIX_FADV_WILLNEED on what will be read: the disk then serves many files at
  // once while the hashing, which must follow the tar order for the diff_id, goes on.
  const queue: Queued[] = [];
  let aheadBytes = 0;
  let aheadFiles = 0;
  const records = readTarSplit(tarSplitPath)[Symbol.asyncIterator]();
  let exhausted = false;
  let batch: PrefetchItem[] = [];
  let waiters: { resolve: (r: PrefetchResult) => void; reject: (e: unknown) => void }[] = [];
  const send = () => {
    if (!batch.length) return;
    const items = batch;
    const ws = waiters;
    batch = [];
    waiters = [];
    const worker = prefetcher(state, objects);
    if (!worker) {
      items.forEach((it, k) => ws[k].resolve(prefetchHere(diffFd, it, objects)));
      return;
    }
    worker.request(diffFd, items).then(
      (rs) => rs.forEach((res, k) => ws[k].resolve(res)),
      (e) => ws.forEach((w) => w.reject(e)),
    );
  };
  const fill = async () => {
    try {
      await fillRecords();
    } finally {
      send();
    }
  };
  const fillRecords = async () => {
    while (!exhausted && aheadFiles < LOOKAHEAD_FILES && aheadBytes < LOOKAHEAD_BYTES) {
      const next = await records.next();
      if (next.done) {
        exhausted = true;
        return;
      }
      const rec = next.value;
      if (rec.type === "segment") {
        queue.push({ kind: "segment", bytes: rec.bytes });
        continue;
      }
      r.entries++;
      if (rec.size === 0) continue;
      const rel = diffRelative(rec.name);
      if (!rel) throw new FormatError(`${tarSplitPath}: file record with content but no path`);
      const label = `${diffDir}/${dec.decode(rec.name)}`;
      const item = { path: rel.slice(), clone: rec.size > INLINE_CONTENT_MAX && state.noReflink.size === 0 };
      batch.push(item);
      const size = rec.size;
      // Settled when the batch is sent (below, or at the end of this fill).
      const ready = new Promise<PrefetchResult>((resolve, reject) => waiters.push({ resolve, reject }))
        .then((res) => toQueued(res, size, label, tarSplitPath, state));
      ready.catch(() => {}); // observed in order below
      queue.push({ kind: "pending", size: rec.size, ready });
      if (batch.length >= PREFETCH_BATCH) send();
      aheadFiles++;
      aheadBytes += rec.size;
    }
  };
  try {
    for (;;) {
      await fill();
      const q = queue.shift();
      if (!q) break;
      if (q.kind === "segment") {
        await inline(q.bytes);
        continue;
      }
      aheadFiles--;
      aheadBytes -= q.size;
      const f = await q.ready;
      try {
        if (f.size <= INLINE_CONTENT_MAX) {
          await inline(readExactly(f.fd, f.size, state.buf, f.label));
        } else {
          const tmp = f.tmp;
          f.tmp = -1;
          const id = await storeFile(f.fd, f.st, objects, state, opts, sha, f.label, tmp);
          r.size += q.size;
          r.externalSize += q.size;
          const w = sink.writeExternal(id, q.size);
          if (w instanceof Promise) await w;
        }
      } finally {
        closeQueued(f);
      }
      sinceProgress += q.size;
      if (sinceProgress >= 1 << 20 && opts.onProgress) {
        opts.onProgress(sinceProgress);
        sinceProgress = 0;
      }
    }
    await objects.settle();
  } finally {
    // Files still being prepared: wait for them, then close what they opened.
    for (const q of queue) if (q.kind === "pending") await q.ready.then(closeQueued, () => {});
    await records.return?.(undefined);
    closeFd(diffFd);
  }
  if (sinceProgress && opts.onProgress) opts.onProgress(sinceProgress);
  if (sha) {
    const got = `${parseDigest(opts.verifyDiffId!, "diff_id").alg}:${sha.digest("hex")}`;
    if (got !== opts.verifyDiffId) {
      throw new IntegrityError(
        `layer diff_id mismatch: expected ${opts.verifyDiffId}, the ${r.size} bytes rebuilt from ${diffDir} and its tar-split hash to ${got} (was a file in diff/ changed?)`,
      );
    }
  }
  return r;
}

function readExactly(fd: number, size: number, buf: Uint8Array, label: string): Uint8Array {
  let o = 0;
  while (o < size) {
    const n = pread(fd, buf.subarray(o, size), o);
    if (n === 0) throw new FormatError(`${label}: file shrank while being read (${o} of ${size} bytes)`);
    o += n;
  }
  return buf.subarray(0, size);
}

/** Hashes `size` bytes of `fd` from offset 0 (fs-verity digest, and the diff_id hash if any). */
function hashFd(
  fd: number,
  size: number,
  state: ZeroCopyState,
  sha: Hash | undefined,
  label: string,
): ObjectId {
  const h = state.hasher!;
  h.reset();
  let o = 0;
  const buf = state.buf;
  while (o < size) {
    const n = pread(fd, buf.subarray(0, Math.min(buf.length, size - o)), o);
    if (n === 0) throw new FormatError(`${label}: file shrank while being read (${o} of ${size} bytes)`);
    const chunk = buf.subarray(0, n);
    h.update(chunk);
    sha?.update(chunk);
    o += n;
  }
  // One more read must see the end: a file that grew is not the layer's file any more.
  if (pread(fd, buf.subarray(0, 1), size) !== 0) {
    throw new FormatError(`${label}: file grew while being read`);
  }
  return h.digest();
}

/**
 * A hard link shares the inode with containers-storage: its mode, owner and xattrs, and any later
 * change to it. Done only where that cannot widen access or be changed unnoticed by us: the
 * repository is insecure (no fs-verity demanded on its objects: this kernel has none), the file is on
 * the objects' filesystem, has no set-uid/set-gid bit and no file capabilities.
 */
function canHardlink(
  fd: number,
  st: FileStat,
  state: ZeroCopyState,
  opts: LayerImportOptions,
): string | null {
  if (!opts.insecure) {
    return "the repository requires fs-verity (a hard link would need verity on the storage file)";
  }
  if (st.dev !== state.objectsDev) return "storage and repository are on different filesystems";
  if (state.noHardlink.has(st.dev)) return "hard links failed before on this filesystem";
  if (st.mode & 0o6000) return "set-uid/set-gid file";
  try {
    if (readXattrsFd(fd).has("security.capability")) return "file has capabilities";
  } catch { /* no xattr support: none */ }
  return null;
}

async function storeFile(
  fd: number,
  st: FileStat,
  objects: ObjectDir,
  state: ZeroCopyState,
  opts: LayerImportOptions,
  sha: Hash | undefined,
  label: string,
  /** The reflink prepareFile made, or -1. */
  tmp: number,
): Promise<ObjectId> {
  state.hasher ??= new FsVerityHasher(objects.alg);
  if (tmp >= 0) return await finishTmpfile(tmp, st.size, objects, state, sha, label, "reflinked");
  const pair = `${st.dev}>${state.objectsDev}`;
  let whyNot = `reflink: ${state.noReflink.get(pair) ?? "not tried"}`;
  const noLink = canHardlink(fd, st, state, opts);
  if (noLink === null) {
    const id = hashFd(fd, st.size, state, sha, label);
    const final = objects.pathOf(id);
    if (sizeOf(final) === st.size) {
      state.stats.present++;
      objects.countFinished(true);
      return id;
    }
    await objects.ensureSubdir(id);
    try {
      const linked = linkFdAt(fd, -100, final);
      objects.countFinished(!linked);
      if (linked) {
        state.stats.hardlinked++;
        state.stats.bytesHardlinked += st.size;
      } else state.stats.present++;
      return id;
    } catch (e) {
      if (!isCannot(e) && !(e instanceof KernelError && e.errno === Errno.EACCES)) throw e;
      state.noHardlink.add(st.dev);
      whyNot += `; hard link: ${(e as KernelError).code}`;
      // Already hashed into `sha`: the copy below must not feed it again.
      return await copyFile(fd, st.size, objects, state, opts, undefined, label, whyNot);
    }
  }
  whyNot += `; hard link: ${noLink}`;
  return await copyFile(fd, st.size, objects, state, opts, sha, label, whyNot);
}

async function copyFile(
  fd: number,
  size: number,
  objects: ObjectDir,
  state: ZeroCopyState,
  opts: LayerImportOptions,
  sha: Hash | undefined,
  label: string,
  whyNot: string,
): Promise<ObjectId> {
  if (opts.mode === "zerocopy") {
    throw new InvalidArgumentError(
      `--local-fetch zerocopy: ${label} can be neither reflinked nor hard-linked (${whyNot})`,
    );
  }
  state.stats.copied++;
  state.stats.bytesCopied += size;
  if (size <= SMALL_COPY_MAX) {
    const data = readExactly(fd, size, state.buf, label);
    sha?.update(data);
    return await objects.ensureObjectBorrowed(data);
  }
  const tmp = objects.tmpfile(objects.dir);
  if (tmp === null) {
    const w = objects.createObjectWriter();
    try {
      let o = 0;
      while (o < size) {
        const n = pread(fd, state.buf, o);
        if (n === 0) throw new FormatError(`${label}: file shrank while being read`);
        const c = state.buf.subarray(0, n);
        sha?.update(c);
        await w.write(c);
        o += n;
      }
    } catch (e) {
      await w.abort();
      throw e;
    }
    return (await w.finish()).id;
  }
  // The copy is written first and then hashed from the copy, like a reflink.
  try {
    let o = 0;
    while (o < size) {
      const n = pread(fd, state.buf, o);
      if (n === 0) throw new FormatError(`${label}: file shrank while being read`);
      writeAll(tmp, state.buf.subarray(0, n));
      o += n;
    }
  } catch (e) {
    closeFd(tmp);
    throw e;
  }
  state.stats.copied--; // counted by finishTmpfile
  state.stats.bytesCopied -= size;
  return await finishTmpfile(tmp, size, objects, state, sha, label, "copied");
}

function sizeOf(path: string): number | null {
  return pathSize(path);
}

/** Hashes the filled O_TMPFILE, then links it under its digest (or drops it if present). */
async function finishTmpfile(
  tmp: number,
  size: number,
  objects: ObjectDir,
  state: ZeroCopyState,
  sha: Hash | undefined,
  label: string,
  how: "reflinked" | "copied",
): Promise<ObjectId> {
  let fd = tmp;
  try {
    const id = hashFd(tmp, size, state, sha, label);
    const final = objects.pathOf(id);
    if (sizeOf(final) === size) {
      state.stats.present++;
      objects.countFinished(true);
      return id;
    }
    fd = -1;
    fd = objects.sealTmpfile(tmp, objects.dir, id);
    await objects.ensureSubdir(id);
    const linked = linkTmpfile(fd, final);
    objects.countFinished(!linked);
    if (!linked) state.stats.present++;
    else if (how === "reflinked") {
      state.stats.reflinked++;
      state.stats.bytesReflinked += size;
    } else {
      state.stats.copied++;
      state.stats.bytesCopied += size;
    }
    return id;
  } finally {
    if (fd >= 0) closeFd(fd);
  }
}
