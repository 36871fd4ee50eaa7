// Importing one overlay-driver layer into the repository without building its tar
// (docs/containers-storage.md): the tar-split records give the tar headers (written inline into the
// splitstream) and, for each file, the path of its content in the layer's diff/ directory. Contents
// over 64 bytes become objects by the cheapest safe method: reflink (FICLONE into an O_TMPFILE in
// objects/), else a hard link of the diff/ file itself (only where that is safe), else a copy (not in
// zerocopy mode). The splitstream is the same as a pull of the original layer tar gives (same
// inline/external split as lib/oci/layer_split.ts), and the sha256 of the reassembled bytes is
// checked against the diff_id unless the caller trusts the store.
//
// Reflinks take the fast path: import threads (import_workers.ts) open, clone and hash the leaf
// level of many files at once, ahead of this thread, and leave each clone's bytes in a shared
// buffer; here each digest is finished from its leaves, the same bytes fed to the diff_id hash in tar
// order (only a file too large for the buffer is read again, from the page cache), and the clone
// handed back to a thread to be named in objects/. The other paths run here (store_file.ts). How:
// docs/containers-storage.md#threads; measured: docs/performance.md#containers-storage.
import { createHash, type Hash } from "node:crypto";
import { FormatError, IntegrityError, InternalError, KernelError, PermissionError } from "../../../errors.ts";
import { parseDigest } from "../../digest.ts";
import { FsVerityHasher } from "../../../fsverity/hasher.ts";
import type { ObjectId } from "../../../fsverity/object_id.ts";
import { closeFd, O_DIRECTORY, O_RDONLY, openPath } from "../../../linux/fs.ts";
import { isRegular, statFd } from "../../../linux/fs_at.ts";
import { Errno, errnoName } from "../../../linux/libc.ts";
import type { ObjectDir } from "../../../objects/object_dir.ts";
import { INLINE_CONTENT_MAX, type SplitSink } from "../../layer_split.ts";
import { readTarSplit, type TarSplitRecord } from "./tar_split.ts";
import { type LinkJob, type LinkResult, type PrefetchItem, type PrefetchResult } from "./import_workers.ts";
import {
  type FileStat,
  type LayerImportOptions,
  prefetchHere,
  readAll,
  readExactly,
  storeFile,
  ZeroCopyState,
} from "./store_file.ts";
import { humanBytes } from "../../../util/format.ts";
export {
  emptyLocalFetchStats,
  type LayerImportOptions,
  type LocalFetchMode,
  type LocalFetchStats,
  ZeroCopyState,
} from "./store_file.ts";

/** The pull summary when objects came from containers-storage (docs/containers-storage.md wording). */
export function formatLocalFetchStats(
  s: Record<string, number>,
  pull: { bytesStored: number; bytesInlined: number },
): string {
  return `${s.reflinked} reflinked + ${s.hardlinked} hardlinked + ${s.copied} copied + ${s.present} already present objects; ${
    humanBytes(pull.bytesStored)
  } stored, ${humanBytes(pull.bytesInlined)} inlined`;
}

export interface LayerImportResult {
  /** Bytes of the reassembled tar stream. */
  size: number;
  externalSize: number;
  inlineSize: number;
  entries: number;
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

/** Files read ahead of the one being stored, at most (and at most LOOKAHEAD_BYTES of them). */
const LOOKAHEAD_FILES = 256;
const LOOKAHEAD_BYTES = 64 << 20;
/** Files per request to an import thread. */
const PREFETCH_BATCH = 48;
/** Files this large have their ranges hashed on all import threads at once (#hashRanges). */
const SPLIT_MIN = 4 << 20;
/** Clones waiting to be linked, at most, before they go to a thread without files to prepare. */
const LINK_BATCH = 256;

interface QueuedFile {
  kind: "file";
  size: number;
  label: string;
  fd: number;
  st: FileStat;
  /** The reflink already made (O_TMPFILE in objects/), -1 when none. */
  tmp: number;
  /** The leaf digests of tmp's blocks, hashed by an import thread. */
  leaves?: Uint8Array;
  /** The content, as the import thread read it (valid until done()). */
  data?: Uint8Array;
  /** Called once the file is stored: the batch's data buffer is reused when all its files are. */
  done?: () => void;
}

/** In tar order: raw segments, and files being prepared (opened, reflinked, hashed). */
type Queued = { kind: "segment"; bytes: Uint8Array } | {
  kind: "pending";
  size: number;
  /** The batch the file is in (sent once it is no longer the one being filled). */
  batch: PrefetchItem[];
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

/** Checks a prepared file against its record; takes ownership of its fds (closed on error). */
function toQueued(
  res: PrefetchResult & { done?: () => void },
  size: number,
  label: string,
  tarSplitPath: string,
  state: ZeroCopyState,
): QueuedFile {
  const { fd, tmp, leaves, data, done } = res;
  const q: QueuedFile = { kind: "file", size, label, fd, st: res, tmp, leaves, data, done };
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
    if (res.hashErrno !== undefined) {
      const e = res.hashErrno;
      if (e !== 0) throw new KernelError("pread", e, errnoName(e), undefined, [label]);
      throw new FormatError(
        `${label}: file changed while being read (its size is not ${size} bytes any more)`,
      );
    }
  } catch (e) {
    closeQueued(q);
    throw e;
  }
  return q;
}

/** A clone waiting to be named in objects/, and what to count when it is. */
interface PendingLink {
  job: LinkJob;
  size: number;
}

/**
 * One layer being imported: the tar-split records read ahead, the files prepared by the import
 * threads, the splitstream written in tar order, the diff_id hashed here in tar order.
 */
class LayerImport {
  readonly r: LayerImportResult = { size: 0, externalSize: 0, inlineSize: 0, entries: 0 };
  readonly sha?: Hash;
  readonly #hasher: FsVerityHasher;
  #diffFd: number;
  #queue: Queued[] = [];
  #aheadBytes = 0;
  #aheadFiles = 0;
  #records: AsyncIterator<TarSplitRecord[]>;
  /** Records read and not yet looked at. */
  #pendingRecords: TarSplitRecord[] = [];
  #nextRecord = 0;
  #exhausted = false;
  #batch: PrefetchItem[] = [];
  #waiters: { resolve: (r: PrefetchResult & { done?: () => void }) => void; reject: (e: unknown) => void }[] =
    [];
  #links: PendingLink[] = [];
  /** Requests that carry links, until they are done; the first link failure. */
  #linking: Promise<void>[] = [];
  #linkError?: unknown;
  /** Sink writes, chained in tar order. */
  #chain: Promise<void> = Promise.resolve();
  #sinceProgress = 0;

  constructor(
    readonly tarSplitPath: string,
    readonly diffDir: string,
    readonly objects: ObjectDir,
    readonly sink: SplitSink,
    readonly state: ZeroCopyState,
    readonly opts: LayerImportOptions,
  ) {
    if (opts.verifyDiffId !== undefined) this.sha = createHash(parseDigest(opts.verifyDiffId, "diff_id").alg);
    this.#hasher = state.hasher ??= new FsVerityHasher(objects.alg);
    state.startThreads(); // started now: a large first file is split among them (#hashRanges)
    this.#diffFd = openPath(diffDir, O_RDONLY | O_DIRECTORY);
    this.#records = readTarSplit(tarSplitPath)[Symbol.asyncIterator]();
  }

  /** Writes `b` (tar headers, padding, small contents) inline, after everything queued before. */
  #inline(b: Uint8Array): void {
    if (!b.length) return;
    this.sha?.update(b);
    this.r.size += b.length;
    this.r.inlineSize += b.length;
    this.#emit(() => this.sink.writeInline(b));
  }

  #emit(write: () => unknown): void {
    this.#chain = this.#chain.then(async () => {
      await write();
    });
    // Observed by run(); this keeps a failure meanwhile from being "unhandled".
    this.#chain.catch(() => {});
  }

  /** Sends the files read ahead (and the clones to link) to an import thread, or prepares them here. */
  #send(): void {
    if (!this.#batch.length && !this.#links.length) return;
    const items = this.#batch;
    const ws = this.#waiters;
    const links = this.#links;
    this.#batch = [];
    this.#waiters = [];
    this.#links = [];
    const worker = this.state.startThreads();
    if (!worker) {
      items.forEach((it, k) => ws[k].resolve(prefetchHere(this.#diffFd, it, this.objects)));
      return;
    }
    const { dir, alg } = this.objects;
    const done = worker.request(dir, alg, this.#diffFd, items, links.map((l) => l.job));
    done.then(({ results, release }) => {
      let left = results.length;
      const fileDone = () => --left === 0 && release();
      results.forEach((res, k) => ws[k].resolve({ ...res, done: fileDone }));
    }, (e) => ws.forEach((w) => w.reject(e)));
    if (links.length) {
      const linked = done.then(({ links: rs }) => this.#linked(links, rs));
      linked.catch((e) => this.#linkError ??= e);
      this.#linking.push(linked);
    }
  }

  /** Counts what the thread did with `links`; throws the first failure. */
  #linked(links: PendingLink[], results: LinkResult[]): void {
    const stats = this.state.stats;
    results.forEach((r, k) => {
      if (r instanceof KernelError) throw r;
      this.objects.countFinished(r === "present");
      if (r === "present") stats.present++;
      else {
        stats.reflinked++;
        stats.bytesReflinked += links[k].size;
      }
    });
  }

  /** Reads records ahead, up to LOOKAHEAD_FILES / LOOKAHEAD_BYTES (sending each full batch). */
  async #fill(): Promise<void> {
    while (!this.#exhausted && this.#aheadFiles < LOOKAHEAD_FILES && this.#aheadBytes < LOOKAHEAD_BYTES) {
      if (this.#nextRecord === this.#pendingRecords.length) {
        const next = await this.#records.next();
        if (next.done) {
          this.#exhausted = true;
          this.#send();
          return;
        }
        this.#pendingRecords = next.value;
        this.#nextRecord = 0;
      }
      this.#record(this.#pendingRecords[this.#nextRecord++]);
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
    const size = rec.size;
    const clone = size > INLINE_CONTENT_MAX && state.noReflink.size === 0;
    // A large file goes alone, to be opened and cloned; its ranges are then hashed on all threads.
    const split = clone && size >= SPLIT_MIN && state.prefetch;
    if (split) this.#send();
    const batch = this.#batch;
    batch.push({ path: rel.slice(), size, clone, inline: size <= INLINE_CONTENT_MAX, noHash: !!split });
    // Settled when the batch is sent (at PREFETCH_BATCH, or when run() needs it).
    let got = new Promise<PrefetchResult>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (split) got = got.then((res) => this.#hashRanges(res, size, label));
    const ready = got.then((res) => toQueued(res, size, label, this.tarSplitPath, state));
    ready.catch(() => {}); // observed in order by run()
    this.#queue.push({ kind: "pending", size, batch, ready });
    if (split || batch.length >= PREFETCH_BATCH) this.#send();
    this.#aheadFiles++;
    this.#aheadBytes += size;
  }

  /**
   * The leaves of a large clone, its ranges hashed on the import threads at once (a single thread
   * would hold up the import: lookahead is bounded, the next file waits for this one).
   */
  async #hashRanges(res: PrefetchResult & { done?: () => void }, size: number, label: string) {
    const workers = this.state.prefetch;
    if (res.tmp < 0 || !workers) return res; // not cloned: stored by storeFile, which hashes it
    const n = workers.threads;
    const step = Math.ceil(size / n / 4096) * 4096;
    const ranges: Promise<Uint8Array>[] = [];
    for (let off = 0; off < size; off += step) {
      const len = Math.min(step, size - off);
      ranges.push(workers.hashRange(this.objects.alg, res.tmp, off, len, off + len === size));
    }
    try {
      const parts = await Promise.all(ranges);
      const leaves = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
      let at = 0;
      for (const p of parts) {
        leaves.set(p, at);
        at += p.length;
      }
      return { ...res, leaves };
    } catch (e) {
      await Promise.allSettled(ranges); // they read tmp: close it only after them
      for (const fd of [res.tmp, res.fd]) if (fd >= 0) closeFd(fd);
      throw e instanceof FormatError ? new FormatError(`${label}: file changed while being read`) : e;
    }
  }

  /** Stores one prepared file and queues its reference (inline when small). */
  async #file(f: QueuedFile): Promise<void> {
    const { objects, state, opts, sha } = this;
    if (f.size <= INLINE_CONTENT_MAX) {
      try {
        this.#inline((f.data ?? readExactly(f.fd, f.size, state.buf, f.label)).slice());
      } finally {
        closeQueued(f);
      }
      return;
    }
    this.r.size += f.size;
    this.r.externalSize += f.size;
    if (f.leaves && f.tmp >= 0) return this.#fileHashed(f);
    const tmp = f.tmp;
    f.tmp = -1;
    try {
      const id = await storeFile(f.fd, f.st, objects, state, opts, sha, f.label, tmp);
      this.#emit(() => this.sink.writeExternal(id, f.size));
    } finally {
      closeQueued(f); // storeFile owns (and closes) tmp
    }
  }

  /**
   * A clone an import thread hashed: its digest from the leaves, its bytes into the diff_id hash,
   * and the clone (sealed: fs-verity where the repository wants it) handed back to be linked.
   */
  #fileHashed(f: QueuedFile): void {
    let id: ObjectId;
    try {
      // The bytes the thread hashed, or (a file too large for its buffer) read again here.
      if (this.sha && f.data) this.sha.update(f.data);
      else if (this.sha) readAll(f.tmp, f.size, this.state.buf, f.label, (c) => this.sha!.update(c));
      const h = this.#hasher;
      h.reset();
      h.updateLeafDigests(f.leaves!, f.size);
      id = h.digest();
    } catch (e) {
      closeQueued(f);
      throw e;
    }
    const tmp = f.tmp;
    f.tmp = -1;
    let sealed: number;
    try {
      sealed = this.objects.sealTmpfile(tmp, this.objects.dir, id);
    } catch (e) {
      closeQueued(f);
      throw e;
    }
    // The thread closed the diff/ file already (it is not needed once the clone is hashed).
    const close = f.fd >= 0 ? [f.fd] : [];
    this.#links.push({ job: { fd: sealed, close, name: id.objectPath() }, size: f.size });
    f.fd = -1;
    if (this.#links.length >= LINK_BATCH) this.#send();
    this.#emit(() => this.sink.writeExternal(id, f.size));
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
        if (this.#linkError) throw this.#linkError;
        if (this.#aheadFiles < LOOKAHEAD_FILES - PREFETCH_BATCH || this.#aheadFiles === 0) await this.#fill();
        const q = this.#queue.shift();
        if (!q) {
          if (this.#exhausted) break;
          await this.#fill();
          continue;
        }
        if (q.kind === "segment") {
          this.#inline(q.bytes);
          continue;
        }
        this.#aheadFiles--;
        this.#aheadBytes -= q.size;
        if (q.batch === this.#batch) this.#send(); // waited for: send what is there
        const f = await q.ready;
        await this.#file(f);
        f.done?.();
        this.#progress(q.size);
      }
      this.#send(); // the last clones to link
      await Promise.all(this.#linking);
      await this.#chain;
      await this.objects.settle();
    } finally {
      for (const l of this.#links) for (const fd of [l.job.fd, ...l.job.close]) if (fd >= 0) closeFd(fd);
      this.#links = [];
      // Files never sent (the import failed before they were needed): nothing to close.
      for (const w of this.#waiters) w.reject(new InternalError("layer import ended"));
      await Promise.allSettled(this.#linking);
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
  diffIdDigest(): string | undefined {
    if (!this.sha) return undefined;
    return `${parseDigest(this.opts.verifyDiffId!, "diff_id").alg}:${this.sha.digest("hex")}`;
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
  const got = layer.diffIdDigest();
  if (got !== undefined && got !== opts.verifyDiffId) {
    throw new IntegrityError(
      `layer diff_id mismatch: expected ${opts.verifyDiffId}, the ${r.size} bytes rebuilt from ${diffDir} and its tar-split hash to ${got} (was a file in diff/ changed?)`,
    );
  }
  return r;
}
