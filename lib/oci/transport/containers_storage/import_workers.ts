// The per-file half of a containers-storage layer import on worker threads: opening each diff/
// file, statx, reflinking it into objects/, reading it and hashing the leaf level of its fs-verity
// tree, and later naming the clone in objects/ (the thread body and why:
// lib/linux/diff_import_thread.ts; measured: docs/performance.md#containers-storage).
//
// As lib/objects/write_worker.ts: node:worker_threads workers from source text (so they run from
// the single-file bundle), referenced only while requests are pending. Batches go to the least busy
// thread; each batch's results come back as one promise.
import { Worker } from "node:worker_threads";
import { FormatError, KernelError } from "../../../errors.ts";
import {
  diffBatchBytesStart,
  type DiffBatchViews,
  diffBatchViews,
  type DiffImportReply,
  type DiffImportRequest,
  diffImportThreadSource,
  DIGEST_BYTES,
  L,
  S,
} from "../../../linux/diff_import_thread.ts";
import { makedev } from "../../../linux/fs_at.ts";
import { errnoName } from "../../../linux/libc.ts";
import type { HashAlgorithm } from "../../../fsverity/object_id.ts";

export interface PrefetchItem {
  /** Path inside diff/ (no leading `./` or `/`). */
  path: Uint8Array;
  /** The size the layer gives the file. */
  size: number;
  /** Reflink into objects/ and hash the clone (content over 64 bytes, reflinks not known to fail here). */
  clone: boolean;
  /** Read the (small, inline) content into the batch's data buffer. */
  inline?: boolean;
  /** Open and clone, but do not hash (a large file: its ranges go to several threads, hashRange). */
  noHash?: boolean;
}

export interface PrefetchResult {
  /** The opened diff/ file, or -1 (then `openErrno`). */
  fd: number;
  openErrno: number;
  /** statx of fd: full st_mode, size, st_dev (glibc makedev encoding). */
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  dev: number;
  /** The reflink (O_TMPFILE under objects/), or -1 (then `cloneErrno`, 0 when not asked for). */
  tmp: number;
  cloneErrno: number;
  /** The leaf digests of the clone's 4096-byte blocks (when it was hashed). */
  leaves?: Uint8Array;
  /** Why the clone could not be hashed: a read's errno, or 0 when it was shorter or longer. */
  hashErrno?: number;
  /**
   * The content as the thread read it (a hashed clone's or an inline file's), when it fitted in the
   * batch's data buffer: valid until the batch is released (see request()).
   */
  data?: Uint8Array;
}

/** A clone to name `name` (relative to objects/) by linking `fd`; then fd and `close` are closed. */
export interface LinkJob {
  fd: number;
  close: number[];
  name: string;
}

/** What became of a LinkJob. */
export type LinkResult = "linked" | "present" | KernelError;

const enc = new TextEncoder();

/** A batch's answer: per file, per link job, and release(), which hands the data buffer back. */
export interface BatchReply {
  results: PrefetchResult[];
  links: LinkResult[];
  release: () => void;
}

/** A request sent: `finish` reads its results (from the shared buffers) once the thread is done. */
interface Waiting {
  finish: () => void;
  reject: (e: unknown) => void;
}

class ImportThread {
  readonly worker: Worker;
  readonly waiting = new Map<number, Waiting>();
  failed?: Error;

  constructor(useLibcrypto: boolean) {
    this.worker = new Worker(diffImportThreadSource(useLibcrypto), { eval: true });
    this.worker.unref();
    this.worker.on("message", (m: DiffImportReply) => this.#reply(m));
    this.worker.on("error", (e: Error) => {
      this.failed = e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    });
  }

  #reply(m: DiffImportReply): void {
    const w = this.waiting.get(m.seq);
    this.waiting.delete(m.seq);
    if (this.waiting.size === 0) this.worker.unref();
    if (!w) return;
    if (m.initErrno) {
      return w.reject(new KernelError("open", m.initErrno, errnoName(m.initErrno), undefined, ["objects/"]));
    }
    w.finish();
  }

  /** Sends `req`; `finish` runs when the thread answers (or the promise rejects). */
  send(req: DiffImportRequest, finish: () => void, reject: (e: unknown) => void): void {
    if (this.failed) return reject(this.failed);
    if (this.waiting.size === 0) this.worker.ref();
    this.waiting.set(req.seq, { finish, reject });
    this.worker.postMessage(req);
  }
}

function readResults(v: DiffBatchViews, files: number, ds: number, data: Uint8Array): PrefetchResult[] {
  const f = v.files;
  const out: PrefetchResult[] = [];
  for (let i = 0; i < files; i++) {
    const o = i * S.COUNT;
    const r: PrefetchResult = {
      fd: f[o + S.FD],
      openErrno: f[o + S.OPEN_ERRNO],
      mode: f[o + S.MODE],
      size: f[o + S.STAT_SIZE],
      nlink: f[o + S.NLINK],
      uid: f[o + S.UID],
      dev: makedev(f[o + S.DEV_MAJOR], f[o + S.DEV_MINOR]),
      tmp: f[o + S.TMP],
      cloneErrno: f[o + S.CLONE_ERRNO],
    };
    const hash = f[o + S.HASH];
    const at = f[o + S.LEAVES_OFF];
    if (hash === 1) r.leaves = v.bytes.subarray(at, at + Math.ceil(f[o + S.SIZE] / 4096) * ds);
    else if (hash > 1) r.hashErrno = f[o + S.HASH_ERRNO];
    const d = f[o + S.DATA_OFF];
    if (d >= 0 && hash < 2) r.data = data.subarray(d, d + f[o + S.SIZE]);
    out.push(r);
  }
  return out;
}

function readLinks(v: DiffBatchViews, jobs: LinkJob[]): LinkResult[] {
  return jobs.map((job, j) => {
    const r = v.links[j * L.COUNT + L.RESULT];
    if (r === 1) return "linked";
    if (r === 2) return "present";
    return new KernelError("linkat", -r, errnoName(-r), undefined, [`objects/${job.name}`]);
  });
}

/** Writes `items` and `links` into a new batch buffer (see DiffImportRequest). */
function buildBatch(alg: HashAlgorithm, items: PrefetchItem[], links: LinkJob[]): SharedArrayBuffer {
  const ds = DIGEST_BYTES[alg];
  const names = links.map((j) => enc.encode(j.name));
  let bytes = diffBatchBytesStart(items.length, links.length);
  for (const it of items) {
    bytes += it.path.length + (it.clone && !it.noHash ? Math.ceil(it.size / 4096) * ds : 0);
  }
  for (const n of names) bytes += n.length;
  const buf = new SharedArrayBuffer(bytes);
  const v = diffBatchViews(buf, items.length, links.length);
  let at = diffBatchBytesStart(items.length, links.length);
  items.forEach((it, i) => {
    const o = i * S.COUNT;
    v.files[o + S.SIZE] = it.size;
    v.files[o + S.CLONE] = it.clone ? 1 : 0;
    v.files[o + S.INLINE] = it.inline ? 1 : 0;
    v.files[o + S.NO_HASH] = it.noHash ? 1 : 0;
    v.files[o + S.PATH_OFF] = at;
    v.files[o + S.PATH_LEN] = it.path.length;
    v.bytes.set(it.path, at);
    at += it.path.length;
    v.files[o + S.LEAVES_OFF] = at;
    if (it.clone && !it.noHash) at += Math.ceil(it.size / 4096) * ds;
  });
  links.forEach((job, j) => {
    const o = j * L.COUNT;
    v.links[o + L.FD] = job.fd;
    v.links[o + L.CLOSE_A] = job.close[0] ?? -1;
    v.links[o + L.CLOSE_B] = job.close[1] ?? -1;
    v.links[o + L.NAME_OFF] = at;
    v.links[o + L.NAME_LEN] = names[j].length;
    v.bytes.set(names[j], at);
    at += names[j].length;
  });
  return buf;
}

/**
 * Bytes of a batch's data buffer: a batch of small files fits whole; a larger file that does not
 * fit is read again by the caller (from the page cache).
 */
const DATA_SIZE = 4 << 20;

/** Sends batches of diff/ files (and clones to link) to the import threads. */
export class ImportWorkers {
  #threads: ImportThread[] = [];
  #seq = 0;
  /** Data buffers handed back (reused: a fresh one costs a page fault per 4 KiB). */
  #free: SharedArrayBuffer[] = [];

  /**
   * Up to `threads` workers, started as they are needed: starting one holds up this thread for tens
   * of milliseconds (the new isolate is made meanwhile), so the first starts at once (throwing where
   * none can start) and each further one when all before it are busy, while they work.
   */
  constructor(readonly threads: number, readonly useLibcrypto: boolean) {
    this.#threads.push(new ImportThread(useLibcrypto));
  }

  /**
   * Links `links` (first), then prepares (and reflinks into `objectsDir`, hashes with `alg`)
   * `items` relative to the directory open as `diffFd`, on the least busy thread.
   */
  request(
    objectsDir: string,
    alg: HashAlgorithm,
    diffFd: number,
    items: PrefetchItem[],
    links: LinkJob[] = [],
  ): Promise<BatchReply> {
    const buf = buildBatch(alg, items, links);
    const data = this.#dataBuffer(items);
    let released = false;
    const release = () => {
      if (released || !data.byteLength) return;
      released = true;
      this.#free.push(data);
    };
    const req: DiffImportRequest = {
      seq: this.#seq++,
      objectsDir,
      diffFd,
      alg,
      files: items.length,
      links: links.length,
      buf,
      data,
    };
    return new Promise((resolve, reject) => {
      this.#leastBusy().send(req, () => {
        const v = diffBatchViews(buf, items.length, links.length);
        const results = readResults(v, items.length, DIGEST_BYTES[alg], new Uint8Array(data));
        resolve({ results, links: readLinks(v, links), release });
      }, reject);
    });
  }

  /**
   * The leaf digests of `length` bytes of the open file `fd` from `offset` (a multiple of 4096),
   * on the least busy thread: ranges of one large file go to several threads at once. With `last`,
   * the file must end at offset + length. Rejects with KernelError (a read failed) or FormatError
   * (the file ended early or goes on).
   */
  hashRange(
    alg: HashAlgorithm,
    fd: number,
    offset: number,
    length: number,
    last: boolean,
  ): Promise<Uint8Array> {
    const start = diffBatchBytesStart(1, 0);
    const n = Math.ceil(length / 4096) * DIGEST_BYTES[alg];
    const buf = new SharedArrayBuffer(start + n);
    const f = diffBatchViews(buf, 1, 0).files;
    f[S.KIND] = 1;
    f[S.RANGE_FD] = fd;
    f[S.RANGE_OFF] = offset;
    f[S.SIZE] = length;
    f[S.RANGE_LAST] = last ? 1 : 0;
    f[S.LEAVES_OFF] = start;
    const req: DiffImportRequest = {
      seq: this.#seq++,
      objectsDir: "",
      diffFd: -1,
      alg,
      files: 1,
      links: 0,
      buf,
      data: new SharedArrayBuffer(0),
    };
    return new Promise((resolve, reject) => {
      this.#leastBusy().send(req, () => {
        if (f[S.HASH] === 1) return resolve(new Uint8Array(buf, start, n));
        const e = f[S.HASH_ERRNO];
        if (e) reject(new KernelError("pread", e, errnoName(e), undefined, [`fd ${fd}`]));
        else reject(new FormatError(`fd ${fd}: the file is not ${offset + length} bytes long any more`));
      }, reject);
    });
  }

  #leastBusy(): ImportThread {
    let t = this.#threads[0];
    for (const x of this.#threads) if (x.waiting.size < t.waiting.size) t = x;
    if (t.waiting.size > 0 && this.#threads.length < this.threads) {
      try {
        t = new ImportThread(this.useLibcrypto);
        this.#threads.push(t);
      } catch { /* the ones there are will do */ }
    }
    return t;
  }

  /** A data buffer for `items` (see DiffImportRequest.data): a free one large enough, or a new one. */
  #dataBuffer(items: PrefetchItem[]): SharedArrayBuffer {
    let need = 0;
    for (const it of items) {
      need += it.clone && !it.noHash ? Math.ceil((it.size + 1) / 4096) * 4096 : it.inline ? it.size + 1 : 0;
    }
    need = Math.min(need, DATA_SIZE);
    if (need === 0) return new SharedArrayBuffer(0);
    const k = this.#free.findIndex((b) => b.byteLength >= need);
    if (k >= 0) return this.#free.splice(k, 1)[0];
    return new SharedArrayBuffer(Math.min(DATA_SIZE, Math.ceil(need / (1 << 20)) * (1 << 20)));
  }

  async terminate(): Promise<void> {
    const ts = this.#threads;
    this.#threads = [];
    await Promise.all(ts.map((t) => t.worker.terminate()));
  }
}
