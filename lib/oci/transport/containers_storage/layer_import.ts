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
import {
  FormatError,
  IntegrityError,
  InvalidArgumentError,
  KernelError,
  PermissionError,
} from "../../../errors.ts";
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
import { willNeed } from "../../../linux/file_extents.ts";
import { isRegular, pathSize, statFd, type StatxResult } from "../../../linux/fs_at.ts";
import { openBeneath } from "../../../linux/openat2.ts";
import { Errno, errnoName } from "../../../linux/libc.ts";
import { readXattrsFd } from "../../../linux/xattr.ts";
import type { ObjectDir } from "../../../objects/object_dir.ts";
import { INLINE_CONTENT_MAX, type SplitSink } from "../../layer_split.ts";
import { readTarSplit, type TarSplitRecord } from "./tar_split.ts";
import { hashThreadsRequested, leafPool } from "../../../fsverity/leaf_pool.ts";
import { VerityBatcher } from "../../../fsverity/verity_batcher.ts";
import type { HashSession } from "../../../fsverity/leaf_pool.ts";
import { Buffer } from "node:buffer";
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

/** What the import looks at of a diff/ file's statx. */
type FileStat = Pick<StatxResult, "mode" | "size" | "nlink" | "uid" | "dev">;

const BUF_SIZE = 1 << 20;
const SMALL_COPY_MAX = 1 << 20;

/**
 * Remembers, per (source device, objects device), whether reflinks or hard links failed with "this
 * filesystem cannot" so the rest of the import does not try again.
 */
export class ZeroCopyState {
  /** (source dev>objects dev) → why reflinks cannot work there. */
  readonly noReflink = new Map<string, string>();
  readonly noHardlink = new Set<number>();
  objectsDev?: number;
  readonly stats = emptyLocalFetchStats();
  readonly buf = new Uint8Array(BUF_SIZE);
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

const LOOKAHEAD_FILES = 128;
/** Files per request to the prefetch worker. */
const PREFETCH_BATCH = 32;

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
    dev: 0,
    tmp: -1,
    cloneErrno: 0,
  };
  try {
    r.fd = openBeneath(diffFd, item.path, O_RDONLY | O_NOFOLLOW, undefined, { followBeneath: true });
    const { mode, size, nlink, uid, dev } = statFd(r.fd);
    Object.assign(r, { mode, size, nlink, uid, dev });
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
      // Not the data's fault when we may not read it (a rootless store's sub-uid files): say so.
      const denied = res.openErrno === Errno.EACCES || res.openErrno === Errno.EPERM;
      throw new (denied ? PermissionError : FormatError)(
        `${label}: cannot open the content of a layer file (${errnoName(res.openErrno)})`,
      ).within(tarSplitPath);
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

/** Stores whose digest is being computed on the pool, at most this many at a time (then wait). */
const MAX_IN_FLIGHT = 256;
/** Files per request of the diff_id session. */
const SESSION_FLUSH_FILES = 128;

/**
 * One layer being imported: the tar-split records read ahead, the files prepared by the prefetch
 * worker, the splitstream written in tar order. With a hashing pool (lib/fsverity/leaf_pool.ts) the
 * fs-verity digests of the stored files are computed on its threads, batched (VerityBatcher), while
 * this thread goes on; their external references are written to the sink in tar order as the
 * digests arrive (#emit). The diff_id hash stays on this thread, in tar order.
 */
class LayerImport {
  readonly r: LayerImportResult = { size: 0, externalSize: 0, inlineSize: 0, entries: 0 };
  /** The diff_id hash here (no pool), or on a pool thread (#session). */
  readonly sha?: Hash;
  #session?: HashSession;
  #sessionFiles = 0;
  #diffFd: number;
  #queue: Queued[] = [];
  #aheadBytes = 0;
  #aheadFiles = 0;
  #records: AsyncIterator<TarSplitRecord>;
  #exhausted = false;
  #batch: PrefetchItem[] = [];
  #waiters: { resolve: (r: PrefetchResult) => void; reject: (e: unknown) => void }[] = [];
  #batcher: VerityBatcher | null;
  /** Sink writes, chained in tar order; stores still hashing. */
  #chain: Promise<void> = Promise.resolve();
  #inFlight: Promise<unknown>[] = [];
  #sinceProgress = 0;

  constructor(
    readonly tarSplitPath: string,
    readonly diffDir: string,
    readonly objects: ObjectDir,
    readonly sink: SplitSink,
    readonly state: ZeroCopyState,
    readonly opts: LayerImportOptions,
  ) {
    // Hashing on the pool only when threads are asked for (CFSCTL_HASH_THREADS): measured on 2
    // shared cores (scripts/bench_cstorage.ts), the prefetch worker (opening, reflinking) and this
    // thread keep both cores busy already, and moving the hashing to pool threads cost ~0.9 s more
    // CPU for the 370 MiB rootfs and was no faster (0.44× vs 0.40× the skopeo path). When asked,
    // one thread fewer than the pool has is used (1 of 2: that beat 2).
    const pool = hashThreadsRequested() ? leafPool() : null;
    const threads = pool ? Math.max(1, pool.size - 1) : 0;
    pool?.warm(threads); // started while the first records are read and files prepared
    this.#batcher = pool && new VerityBatcher(pool, objects.alg, threads);
    if (opts.verifyDiffId !== undefined) {
      const alg = parseDigest(opts.verifyDiffId, "diff_id").alg;
      if (pool) this.#session = pool.openSession(alg, threads);
      else this.sha = createHash(alg);
    }
    this.#diffFd = openPath(diffDir, O_RDONLY | O_DIRECTORY);
    this.#records = readTarSplit(tarSplitPath)[Symbol.asyncIterator]();
  }

  /** Writes `b` (tar headers, padding, small contents) inline, after everything queued before. */
  #inline(b: Uint8Array): void {
    if (!b.length) return;
    this.sha?.update(b);
    void this.#session?.add(b);
    this.r.size += b.length;
    this.r.inlineSize += b.length;
    this.#emit(() => this.sink.writeInline(b));
  }

  #emit(write: () => unknown): void {
    this.#chain = this.#chain.then(async () => {
      await write();
    });
    // Observed by run() (and #drainOne); this keeps a failure meanwhile from being "unhandled".
    this.#chain.catch(() => {});
  }

  /** Sends the batch of files read ahead to the prefetch worker (or prepares them here). */
  #send(): void {
    if (!this.#batch.length) return;
    const items = this.#batch;
    const ws = this.#waiters;
    this.#batch = [];
    this.#waiters = [];
    const worker = prefetcher(this.state, this.objects);
    if (!worker) {
      items.forEach((it, k) => ws[k].resolve(prefetchHere(this.#diffFd, it, this.objects)));
      return;
    }
    worker.request(this.#diffFd, items).then(
      (rs) => rs.forEach((res, k) => ws[k].resolve(res)),
      (e) => ws.forEach((w) => w.reject(e)),
    );
  }

  /**
   * Reads records ahead, up to LOOKAHEAD_FILES / LOOKAHEAD_BYTES: files are opened (and cloned)
   * ahead of the one being hashed, with POSIX_FADV_WILLNEED on what will be read, so the disk
   * serves many files at once while the hashing, which must follow the tar order for the diff_id,
   * goes on.
   */
  async #fill(): Promise<void> {
    try {
      while (!this.#exhausted && this.#aheadFiles < LOOKAHEAD_FILES && this.#aheadBytes < LOOKAHEAD_BYTES) {
        const next = await this.#records.next();
        if (next.done) {
          this.#exhausted = true;
          return;
        }
        this.#record(next.value);
      }
    } finally {
      this.#send();
    }
  }

  #record(rec: TarSplitRecord): void {
    if (rec.type === "segment") {
      this.#queue.push({ kind: "segment", bytes: rec.bytes });
      return;
    }
    this.r.entries++;
    if (rec.size === 0) return;
    const rel = diffRelative(rec.name);
    if (!rel) throw new FormatError(`${this.tarSplitPath}: file record with content but no path`);
    const label = `${this.diffDir}/${dec.decode(rec.name)}`;
    const state = this.state;
    this.#batch.push({
      path: rel.slice(),
      clone: rec.size > INLINE_CONTENT_MAX && state.noReflink.size === 0,
    });
    const size = rec.size;
    // Settled when the batch is sent (at PREFETCH_BATCH, or at the end of this fill).
    const ready = new Promise<PrefetchResult>((resolve, reject) => this.#waiters.push({ resolve, reject }))
      .then((res) => toQueued(res, size, label, this.tarSplitPath, state));
    ready.catch(() => {}); // observed in order by run()
    this.#queue.push({ kind: "pending", size, ready });
    if (this.#batch.length >= PREFETCH_BATCH) this.#send();
    this.#aheadFiles++;
    this.#aheadBytes += size;
  }

  /** Stores one prepared file and queues its reference (inline when small). */
  async #file(f: QueuedFile): Promise<void> {
    const { objects, state, opts, sha } = this;
    if (f.size <= INLINE_CONTENT_MAX) {
      try {
        this.#inline(readExactly(f.fd, f.size, state.buf, f.label).slice());
      } finally {
        closeQueued(f);
      }
      return;
    }
    const tmp = f.tmp;
    f.tmp = -1;
    this.r.size += f.size;
    this.r.externalSize += f.size;
    if (!this.#batcher) {
      try {
        const id = await storeFile(f.fd, f.st, objects, state, opts, sha, f.label, tmp);
        this.#emit(() => this.sink.writeExternal(id, f.size));
      } finally {
        closeQueued(f); // storeFile owns (and closes) tmp
      }
      return;
    }
    // The diff_id hash on one pool thread, in order; the fs-verity digest on the others.
    const session = this.#session;
    const hashed = session?.add([tmp >= 0 ? tmp : f.fd, 0, f.size]);
    if (session && ++this.#sessionFiles % SESSION_FLUSH_FILES === 0) session.flush();
    const stored = storeFile(
      f.fd,
      f.st,
      objects,
      state,
      opts,
      undefined,
      f.label,
      tmp,
      this.#batcher,
      hashed,
    );
    // tmp is storeFile's, but the session reads it too: storeFile seals and closes it only after.
    const settled = Promise.allSettled([stored, hashed]).then(() => closeQueued(f));
    this.#inFlight.push(settled);
    this.#emit(async () => this.sink.writeExternal(await stored, f.size));
    if (this.#inFlight.length >= MAX_IN_FLIGHT) await this.#drainOne();
  }

  async #drainOne(): Promise<void> {
    this.#batcher?.flush();
    this.#session?.flush();
    await this.#inFlight.shift();
    // A failed store or sink write ends the import now rather than after the whole layer.
    await Promise.race([this.#chain, Promise.resolve()]);
  }

  #progress(bytes: number): void {
    this.#sinceProgress += bytes;
    if (this.#sinceProgress >= 1 << 20 && this.opts.onProgress) {
      this.opts.onProgress(this.#sinceProgress);
      this.#sinceProgress = 0;
    }
  }

  async run(): Promise<LayerImportResult> {
    try {
      for (;;) {
        await this.#fill();
        const q = this.#queue.shift();
        if (!q) break;
        if (q.kind === "segment") {
          this.#inline(q.bytes);
          continue;
        }
        this.#aheadFiles--;
        this.#aheadBytes -= q.size;
        await this.#file(await q.ready);
        this.#progress(q.size);
      }
      this.#batcher?.flush();
      this.#session?.flush();
      await this.#chain;
      await this.objects.settle();
    } finally {
      this.#batcher?.flush();
      this.#session?.flush();
      await Promise.all(this.#inFlight);
      await this.#chain.catch(() => {});
      // Files still being prepared: wait for them, then close what they opened.
      for (const q of this.#queue) if (q.kind === "pending") await q.ready.then(closeQueued, () => {});
      await this.#records.return?.(undefined);
      closeFd(this.#diffFd);
    }
    if (this.#sinceProgress && this.opts.onProgress) this.opts.onProgress(this.#sinceProgress);
    return this.r;
  }

  /** `alg:hex` of the reassembled stream when verifying the diff_id, else undefined. */
  async diffIdDigest(): Promise<string | undefined> {
    const alg = this.opts.verifyDiffId !== undefined
      ? parseDigest(this.opts.verifyDiffId, "diff_id").alg
      : "";
    if (this.#session) return `${alg}:${Buffer.from(await this.#session.digest()).toString("hex")}`;
    return this.sha ? `${alg}:${this.sha.digest("hex")}` : undefined;
  }
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
  await objects.prepare();
  if (state.objectsDev === undefined) {
    const fd = openPath(objects.dir, O_RDONLY | O_DIRECTORY);
    try {
      state.objectsDev = statFd(fd, objects.dir).dev;
    } finally {
      closeFd(fd);
    }
  }
  const layer = new LayerImport(tarSplitPath, diffDir, objects, sink, state, opts);
  const r = await layer.run();
  const got = await layer.diffIdDigest();
  if (got !== undefined) {
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

/**
 * Hashes `size` bytes of `fd` from offset 0 (fs-verity digest, and the diff_id hash if any): here,
 * or on the pool through `batcher` (then `sha` must be undefined: the caller fed it already).
 */
function hashFd(
  fd: number,
  size: number,
  state: ZeroCopyState,
  sha: Hash | undefined,
  label: string,
  batcher?: VerityBatcher,
): ObjectId | Promise<ObjectId> {
  if (batcher) {
    return batcher.digest(fd, size).then((id) => {
      // One more read must see the end: a file that grew is not the layer's file any more.
      if (pread(fd, new Uint8Array(1), size) !== 0) {
        throw new FormatError(`${label}: file grew while being read`);
      }
      return id;
    });
  }
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
  /** The reflink prepareFile made, or -1 (it is closed here). */
  tmp: number,
  /** Hashes on the pool (the caller feeds the diff_id hash itself). */
  batcher?: VerityBatcher,
  /** Another reader of tmp (the diff_id session): tmp is sealed and closed only after it. */
  tmpReader?: Promise<unknown>,
): Promise<ObjectId> {
  state.hasher ??= new FsVerityHasher(objects.alg);
  if (tmp >= 0) {
    return await finishTmpfile(tmp, st.size, objects, state, sha, label, "reflinked", batcher, tmpReader);
  }
  const pair = `${st.dev}>${state.objectsDev}`;
  let whyNot = `reflink: ${state.noReflink.get(pair) ?? "not tried"}`;
  const noLink = canHardlink(fd, st, state, opts);
  if (noLink === null) {
    const id = await hashFd(fd, st.size, state, sha, label, batcher);
    const final = objects.pathOf(id);
    if (pathSize(final) === st.size) {
      state.stats.present++;
      objects.countFinished(true);
      return id;
    }
    await objects.ensureSubdir(id);
    try {
      const linked = linkTmpfile(fd, final); // a named file gets one more name the same way
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

/** Hashes the filled O_TMPFILE, then links it under its digest (or drops it if present). */
async function finishTmpfile(
  tmp: number,
  size: number,
  objects: ObjectDir,
  state: ZeroCopyState,
  sha: Hash | undefined,
  label: string,
  how: "reflinked" | "copied",
  batcher?: VerityBatcher,
  tmpReader?: Promise<unknown>,
): Promise<ObjectId> {
  let fd = tmp;
  try {
    const id = await hashFd(tmp, size, state, sha, label, batcher);
    await tmpReader?.catch(() => {}); // its failure is reported by its own owner
    const final = objects.pathOf(id);
    if (pathSize(final) === size) {
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
