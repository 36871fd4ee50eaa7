// Object writes on a second thread. Creating a file costs tens of microseconds of kernel time
// (O_TMPFILE, write, linkat, close); for a layer of many small files that is most of the import, so
// the digests are computed on the calling thread (the ids are needed at once for the splitstream)
// and the bytes go, packed into a few reused 1 MiB shared batch buffers, to a worker thread that stores
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
  SLOT_BUSY,
  SLOT_FREE,
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

/**
 * A batch buffer, shared with the worker. Whose it is lives in the shared state array, not in a
 * message: the worker frees a slot with an atomic store, which the calling thread sees at once. A
 * caller that never yields to its event loop (a directory walk reading page-cached files) would
 * otherwise never receive the buffers back and end up storing every object itself
 * (docs/performance.md#create-image).
 */
interface Slot {
  index: number;
  buf: SharedArrayBuffer;
  bytes: Uint8Array;
}

interface OpenBatch {
  slot: Slot;
  used: number;
  names: string[];
  offs: number[];
  lens: number[];
}

/** The calling thread's side: packs objects into batches and hands them to the worker. */
export class ObjectWriteWorker {
  #worker: Worker;
  /** SLOT_FREE / SLOT_BUSY per slot index (./tmpfile_batch_thread.ts sets it free when done). */
  #state = new Int32Array(new SharedArrayBuffer(4 * MAX_BATCHES));
  #slots: Slot[] = [];
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
   * the worker (await whenFree() and try again, or store it another way).
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
      const slot = this.#freeSlot();
      if (!slot) return false;
      b = this.#cur = { slot, used: 0, names: [], offs: [], lens: [] };
    }
    b.slot.bytes.set(data, b.used);
    b.names.push(rel);
    b.offs.push(b.used);
    b.lens.push(data.length);
    b.used += data.length;
    this.#scheduleFlush();
    return true;
  }

  /** Resolves when a batch buffer has come back from the worker. */
  whenFree(): Promise<void> {
    if (this.#error || this.#slots.length < MAX_BATCHES || this.#slots.some((s) => this.#isFree(s))) {
      return Promise.resolve();
    }
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
    if (this.#inFlight === 0 && this.#cur === null) this.#slots = [];
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }

  #isFree(s: Slot): boolean {
    return Atomics.load(this.#state, s.index) === SLOT_FREE;
  }

  /** A slot the worker is not holding (the open batch's is never free), or a new one while under the limit. */
  #freeSlot(): Slot | null {
    for (const s of this.#slots) if (this.#isFree(s)) return s;
    if (this.#slots.length >= MAX_BATCHES) return null;
    const buf = new SharedArrayBuffer(BATCH_SIZE);
    const slot = { index: this.#slots.length, buf, bytes: new Uint8Array(buf) };
    this.#slots.push(slot);
    return slot;
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
    Atomics.store(this.#state, b.slot.index, SLOT_BUSY);
    const msg: FileBatch = {
      seq: this.#seq++,
      buf: b.slot.buf,
      state: this.#state.buffer as SharedArrayBuffer,
      slot: b.slot.index,
      names: b.names,
      offs: b.offs,
      lens: b.lens,
    };
    this.#worker.postMessage(msg);
  }

  #done(r: FileBatchReply): void {
    if (--this.#inFlight === 0) this.#worker.unref();
    this.present += r.present;
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
