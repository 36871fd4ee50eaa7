// The blocking half of a containers-storage layer import on a second thread: opening each diff/
// file, statx, reflinking it into objects/ and read-ahead (the thread body and why:
// lib/linux/diff_prefetch_thread.ts; measured: docs/containers-storage.md).
//
// As lib/objects/write_worker.ts: a node:worker_threads worker from source text (so it runs from
// the single-file bundle), referenced only while requests are pending.
import { Worker } from "node:worker_threads";
import {
  type DiffPrefetchReply,
  type DiffPrefetchRequest,
  diffPrefetchThreadSource,
} from "../../../linux/diff_prefetch_thread.ts";
import { makedev } from "../../../linux/fs_at.ts";

export interface PrefetchItem {
  /** Path inside diff/ (no leading `./` or `/`). */
  path: Uint8Array;
  /** Reflink into objects/ (content over 64 bytes, reflinks not known to fail here). */
  clone: boolean;
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
}

function byteString(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

/** Sends batches of diff/ files to the worker; each batch's results come back as one promise. */
export class PrefetchWorker {
  #worker: Worker;
  #seq = 0;
  #waiting = new Map<number, { resolve: (r: PrefetchResult[]) => void; reject: (e: unknown) => void }>();
  #failed?: Error;

  constructor(objectsDir: string) {
    this.#worker = new Worker(diffPrefetchThreadSource(objectsDir), { eval: true });
    this.#worker.unref();
    this.#worker.on("message", (m: DiffPrefetchReply) => {
      const w = this.#waiting.get(m.seq);
      this.#waiting.delete(m.seq);
      if (this.#waiting.size === 0) this.#worker.unref();
      w?.resolve(
        m.results.map(({ devMajor, devMinor, ...r }) => ({ ...r, dev: makedev(devMajor, devMinor) })),
      );
    });
    this.#worker.on("error", (e: Error) => {
      this.#failed = e;
      for (const w of this.#waiting.values()) w.reject(e);
      this.#waiting.clear();
    });
  }

  /** Opens (and reflinks, reads ahead) `items` relative to the directory open as `diffFd`. */
  request(diffFd: number, items: PrefetchItem[]): Promise<PrefetchResult[]> {
    if (this.#failed) return Promise.reject(this.#failed);
    const seq = this.#seq++;
    return new Promise((resolve, reject) => {
      if (this.#waiting.size === 0) this.#worker.ref();
      this.#waiting.set(seq, { resolve, reject });
      const wire = items.map((it) => ({ path: byteString(it.path), clone: it.clone }));
      this.#worker.postMessage({ seq, diffFd, items: wire } satisfies DiffPrefetchRequest);
    });
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}
