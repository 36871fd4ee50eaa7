// Object writes on a second thread. Creating a file costs tens of microseconds of kernel time
// (O_TMPFILE, write, linkat, close); for a layer of many small files that is most of the import, so
// the digests are computed on the calling thread (the ids are needed at once for the splitstream)
// and the bytes go, packed into a few reused 1 MiB batch buffers, to a worker thread that stores
// them — as `tar -x` runs beside `zstd -dc`. Objects stay atomic (O_TMPFILE, linked when complete);
// settle() is the barrier before anything that refers to them is published.
//
// The worker runs lib/linux/tmpfile_batch_thread.ts from source text, so it also runs from the
// single-file bundle; it keeps the process alive only while batches are pending.
import { Worker } from "node:worker_threads";
import { InternalError, KernelError } from "../errors.ts";
import { errnoName } from "../linux/libc.ts";
import {
  type FileBatch,
  type FileBatchReply,
  tmpfileBatchThreadSource,
} from "../linux/tmpfile_batch_thread.ts";

// 4 × 1 MiB lets the calling thread run up to 4 MiB ahead of the writes: the 100,000-file pull took
// as long as with 6 × 4 MiB (docs/performance.md#memory) and 20 MiB less memory.
const BATCH_SIZE = 1 << 20;
const MAX_BATCHES = 4;
/** The largest object tryAdd takes. */
export const MAX_BATCHED_OBJECT = BATCH_SIZE;
/** Objects per batch message (bounds the names array). */
const MAX_ITEMS = 1024;

interface OpenBatch {
  buf: ArrayBuffer;
  bytes: Uint8Array;
  used: number;
  names: string[];
  offs: number[];
  lens: number[];
}

/** The calling thread's side: packs objects into batches and hands them to the worker. */
export class ObjectWriteWorker {
  #worker: Worker;
  #free: ArrayBuffer[] = [];
  #allocated = 0;
  #cur: OpenBatch | null = null;
  #seq = 0;
  #inFlight = 0;
  #error: Error | undefined;
  #waiters: (() => void)[] = [];
  #flushScheduled = false;
  /** Objects found already present by the worker. */
  present = 0;

  constructor(objectsDir: string) {
    this.#worker = new Worker(tmpfileBatchThreadSource(objectsDir), { eval: true });
    this.#worker.unref();
    this.#worker.on("message", (r: FileBatchReply) => this.#done(r));
    this.#worker.on("error", (e: Error) => this.#fail(e));
  }

  /** The first write error, if any (later objects are still handed over but nothing is published). */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Copies `data` into the current batch and returns true; false when every batch buffer is with
   * the worker (await whenFree() and try again).
   */
  tryAdd(rel: string, data: Uint8Array): boolean {
    if (this.#error) throw this.#error;
    if (data.length > BATCH_SIZE) throw new InternalError(`object of ${data.length} bytes exceeds a batch`);
    let b = this.#cur;
    if (b && (b.used + data.length > BATCH_SIZE || b.names.length >= MAX_ITEMS)) {
      this.#send();
      b = null;
    }
    if (!b) {
      const buf = this.#free.pop() ??
        (this.#allocated < MAX_BATCHES ? (this.#allocated++, new ArrayBuffer(BATCH_SIZE)) : null);
      if (!buf) return false;
      b = this.#cur = { buf, bytes: new Uint8Array(buf), used: 0, names: [], offs: [], lens: [] };
    }
    b.bytes.set(data, b.used);
    b.names.push(rel);
    b.offs.push(b.used);
    b.lens.push(data.length);
    b.used += data.length;
    this.#scheduleFlush();
    return true;
  }

  /** Resolves when a batch buffer has come back from the worker. */
  whenFree(): Promise<void> {
    if (this.#free.length > 0 || this.#allocated < MAX_BATCHES || this.#error) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Sends what is gathered and waits until the worker has stored everything; rejects on a write
   * error. The idle batch buffers are let go (the next object allocates again): between layers and
   * during the image build after the last one they would only hold memory.
   */
  async settle(): Promise<void> {
    this.#send();
    while (this.#inFlight > 0 && !this.#error) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#error) throw this.#error;
    if (this.#inFlight === 0 && this.#cur === null) {
      this.#allocated -= this.#free.length;
      this.#free = [];
    }
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }

  /** A partly filled batch goes out when the thread next waits (e.g. for decompressed data). */
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setTimeout(() => {
      this.#flushScheduled = false;
      this.#send();
    }, 0);
  }

  #send(): void {
    const b = this.#cur;
    if (!b || b.names.length === 0) return;
    this.#cur = null;
    if (this.#inFlight++ === 0) this.#worker.ref(); // keeps the process alive while work is pending

    const msg: FileBatch = { seq: this.#seq++, buf: b.buf, names: b.names, offs: b.offs, lens: b.lens };
    this.#worker.postMessage(msg, [b.buf]);
  }

  #done(r: FileBatchReply): void {
    if (--this.#inFlight === 0) this.#worker.unref();
    this.present += r.present;
    this.#free.push(r.buf);
    if (r.err && !this.#error) {
      this.#error = new KernelError(r.err.syscall, r.err.errno, errnoName(r.err.errno), undefined, [
        r.err.where,
      ]);
    }
    this.#wake();
  }

  #fail(e: Error): void {
    this.#error ??= e;
    this.#inFlight = 0;
    this.#worker.unref();
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}
