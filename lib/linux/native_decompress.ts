// gzip and zstd decoding in the system's zlib / libzstd through FFI, on threads of their own
// (./decode_thread.ts). The calling thread only hands compressed bytes over and takes decoded 1 MiB
// chunks back; the decoding thread runs up to AHEAD chunks ahead of it on its own, so decoding does not
// wait for the calling thread's turns (docs/performance.md#where-the-time-goes-rootfs-pull). It can also
// hash what it decodes (hashOutput: a layer's diff_id), which then costs the calling thread nothing.
// One thread decodes every stream of the process (the layers of a pull imported in parallel share it:
// one more isolate, not one per layer); it keeps the process alive only while a stream is being decoded.
//
// Where FFI is not permitted or a library is missing, `nativeDecompress` returns null and the caller
// uses node:zlib.
import { Worker } from "node:worker_threads";
import { FormatError, InternalError } from "../errors.ts";
import {
  type DecodeCodec,
  type DecodeReply,
  type DecodeRequest,
  decodeThreadSource,
} from "./decode_thread.ts";

export type NativeCodec = DecodeCodec;

/**
 * Chunks handed out by a recycling decoder stay intact until this many further chunks have been
 * handed out.
 */
export const RECYCLE_DISTANCE = 4;
/** Output chunks the thread may decode beyond those its consumer holds. */
const AHEAD = 3;
/** Compressed bytes per hand-over, and hand-overs in flight (bounds the input held for the thread). */
const IN_PIECE = 256 * 1024;
const IN_FLIGHT = 4;

const probe: Record<NativeCodec, [string[], Deno.ForeignLibraryInterface]> = {
  gzip: [["libz.so.1", "libz.so"], { zlibVersion: { parameters: [], result: "pointer" } }],
  zstd: [["libzstd.so.1", "libzstd.so"], { ZSTD_versionNumber: { parameters: [], result: "u32" } }],
};
const available: Partial<Record<NativeCodec, boolean>> = {};

/** True when the native decoder for `codec` can be used in this process. */
export function nativeCodecAvailable(codec: NativeCodec): boolean {
  if (available[codec] !== undefined) return available[codec]!;
  available[codec] = false;
  // querySync first: dlopen without permission would prompt on a terminal.
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return false;
  const [names, symbols] = probe[codec];
  for (const name of names) {
    try {
      Deno.dlopen(name, symbols).close();
      return available[codec] = true;
    } catch { /* try the next name */ }
  }
  return false;
}

/** The worker running decode_thread.ts; it decodes every stream of the process, each a job. */
class DecodeThread {
  readonly worker: Worker;
  failed = false;
  #jobs = new Map<number, (m: DecodeReply) => void>();

  constructor() {
    this.worker = new Worker(decodeThreadSource(), { eval: true });
    this.worker.unref();
    this.worker.on("message", (m: DecodeReply) => this.#jobs.get(m.job)?.(m));
    const fail = (message: string) => {
      this.failed = true;
      for (const [job, h] of this.#jobs) h({ t: "error", job, format: false, message });
    };
    this.worker.on("error", (e: Error) => fail(`decoding thread failed: ${e?.message ?? e}`));
    this.worker.on("exit", () => fail("decoding thread exited"));
  }

  /** Routes the job's replies to `h`; the thread keeps the process alive while it has jobs. */
  attach(job: number, h: (m: DecodeReply) => void): void {
    if (this.#jobs.size === 0) this.worker.ref();
    this.#jobs.set(job, h);
  }

  detach(job: number): void {
    if (!this.#jobs.delete(job) || this.#jobs.size > 0) return;
    this.worker.unref();
    if (this.#stopWhenIdle) this.stop();
  }

  #stopWhenIdle = false;

  /** Ends the thread now, or when its last job ends; a later stream starts a new one. */
  stop(): void {
    this.#stopWhenIdle = true;
    if (this.#jobs.size > 0) return;
    this.failed = true; // not to be handed out again
    this.worker.removeAllListeners("exit");
    void this.worker.terminate();
    if (shared === this) shared = undefined;
  }

  post(m: DecodeRequest, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
  }
}

let shared: DecodeThread | undefined;

function decodeThread(): DecodeThread {
  if (!shared || shared.failed) shared = new DecodeThread();
  return shared;
}

/**
 * Starts the decoding thread now, so that the first stream does not wait for its start (tens of
 * milliseconds, more under load). Callers that know streams are coming (a pull, before its layers'
 * downloads start) warm it.
 */
export function warmDecodeThread(): void {
  if (nativeCodecAvailable("gzip") || nativeCodecAvailable("zstd")) decodeThread();
}

/**
 * Ends the decoding thread once no stream uses it. Its isolate and buffers (~20 MiB) are given back before
 * the next phase needs the memory (a pull's image build); the next stream starts a new thread.
 */
export function stopDecodeThread(): void {
  shared?.stop();
}

/** A stream being decoded on a thread: its chunks, and optionally the digest of what they hold. */
export interface NativeDecoding {
  /** The decoded chunks; each stays intact only until RECYCLE_DISTANCE further chunks were read. */
  readonly chunks: AsyncGenerator<Uint8Array>;
  /** Asks for the `alg` (node:crypto name) digest of the output; only before the first chunk is read. */
  hashOutput(alg: string): void;
  /** Once the chunks have ended: the digest asked for (hex) and the output size. */
  outputDigest(): { hex: string; size: number } | undefined;
}

let jobs = 0;

/** What the consumer waits for: messages of its job, a failure of the input side. */
class Inbox {
  readonly items: DecodeReply[] = [];
  inputError: { e: unknown } | undefined;
  #wake: (() => void) | null = null;

  push(m: DecodeReply): void {
    this.items.push(m);
    this.wake();
  }

  wake(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async next(): Promise<DecodeReply> {
    for (;;) {
      if (this.inputError) throw this.inputError.e;
      const m = this.items.shift();
      if (m) return m;
      await new Promise<void>((r) => (this.#wake = r));
    }
  }
}

class Decoding implements NativeDecoding {
  readonly chunks: AsyncGenerator<Uint8Array>;
  #codec: NativeCodec;
  #source: AsyncIterable<Uint8Array>;
  #hash: string | null = null;
  #started = false;
  #result: { hex: string; size: number } | undefined;

  constructor(source: AsyncIterable<Uint8Array>, codec: NativeCodec) {
    this.#source = source;
    this.#codec = codec;
    this.chunks = this.#run();
  }

  hashOutput(alg: string): void {
    if (this.#started) throw new InternalError("hashOutput() after the first chunk was read");
    this.#hash = alg;
  }

  outputDigest(): { hex: string; size: number } | undefined {
    return this.#result;
  }

  async *#run(): AsyncGenerator<Uint8Array> {
    this.#started = true;
    const thread = decodeThread();
    const job = ++jobs;
    const inbox = new Inbox();
    const input = new InputFeeder(thread, job, this.#source, inbox);
    thread.attach(job, (m) => {
      if (m.t === "in-free") input.returned(m.buf);
      else inbox.push(m);
    });
    thread.post({
      t: "start",
      job,
      codec: this.#codec,
      hash: this.#hash,
      outputs: RECYCLE_DISTANCE + 1 + AHEAD,
    });
    const feeding = input.run();
    const held: ArrayBuffer[] = [];
    let finished = false;
    try {
      for (;;) {
        const m = await inbox.next();
        if (m.t === "out") {
          held.push(m.buf);
          while (held.length > RECYCLE_DISTANCE + 1) {
            const b = held.shift()!;
            thread.post({ t: "free", job, buf: b }, [b]);
          }
          yield new Uint8Array(m.buf, 0, m.len);
        } else if (m.t === "done") {
          // The input must have ended cleanly too (a digest check at its end may still fail).
          await feeding;
          if (inbox.inputError) throw inbox.inputError.e;
          finished = true;
          if (this.#hash !== null) this.#result = { hex: m.digest!, size: m.size };
          return;
        } else if (m.t === "error") {
          throw m.format ? new FormatError(m.message) : new InternalError(m.message);
        }
      }
    } finally {
      if (!finished) thread.post({ t: "stop", job });
      input.stop();
      await feeding.catch(() => {});
      // The chunks still held are the consumer's (the thread makes new buffers for its next stream).
      thread.detach(job);
    }
  }
}

/** Copies the compressed source into transferable pieces and hands them to the thread. */
class InputFeeder {
  #thread: DecodeThread;
  #job: number;
  #source: AsyncIterable<Uint8Array>;
  #inbox: Inbox;
  #free: ArrayBuffer[] = [];
  #made = 0;
  #inFlight = 0;
  /** The piece being filled, and its bytes so far. */
  #piece: Uint8Array | null = null;
  #used = 0;
  #stopped = false;
  #wake: (() => void) | null = null;

  constructor(thread: DecodeThread, job: number, source: AsyncIterable<Uint8Array>, inbox: Inbox) {
    this.#thread = thread;
    this.#job = job;
    this.#source = source;
    this.#inbox = inbox;
  }

  returned(buf: ArrayBuffer): void {
    this.#inFlight--;
    this.#free.push(buf);
    // The thread has taken in everything: a partly filled piece goes now rather than when it fills.
    if (this.#inFlight === 0 && this.#used > 0) this.#sendPiece();
    this.#wakeUp();
  }

  stop(): void {
    this.#stopped = true;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async #newPiece(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#stopped) return null;
      const b = this.#free.pop() ??
        (this.#made < IN_FLIGHT ? (this.#made++, new ArrayBuffer(IN_PIECE)) : null);
      if (b) return new Uint8Array(b);
      await new Promise<void>((r) => (this.#wake = r));
    }
  }

  #sendPiece(): void {
    const buf = this.#piece!.buffer as ArrayBuffer;
    this.#thread.post({ t: "in", job: this.#job, buf, len: this.#used }, [buf]);
    this.#inFlight++;
    this.#piece = null;
    this.#used = 0;
  }

  /** Feeds the whole source, then "end"; a source failure goes to the consumer. */
  async run(): Promise<void> {
    const it = this.#source[Symbol.asyncIterator]();
    try {
      for (;;) {
        const r = await it.next();
        if (this.#stopped) return;
        if (r.done) break;
        const c = r.value;
        for (let off = 0; off < c.length;) {
          this.#piece ??= await this.#newPiece();
          if (!this.#piece) return;
          const take = Math.min(c.length - off, IN_PIECE - this.#used);
          this.#piece.set(take === c.length ? c : c.subarray(off, off + take), this.#used);
          this.#used += take;
          off += take;
          // A full piece goes at once; a partial one when the thread has nothing else to decode.
          if (this.#used === IN_PIECE || this.#inFlight === 0) this.#sendPiece();
        }
      }
      if (this.#used > 0) this.#sendPiece();
      this.#thread.post({ t: "end", job: this.#job });
    } catch (e) {
      this.#inbox.inputError = { e };
      this.#inbox.wake();
    } finally {
      if (this.#stopped) await it.return?.().catch(() => {});
    }
  }
}

/**
 * Decompresses `source` on a decoding thread, or returns null when the library cannot be loaded
 * (no FFI permission, library missing). Errors in the data reject with FormatError, errors of the
 * source are passed on as they are.
 */
export function nativeDecompress(
  source: AsyncIterable<Uint8Array>,
  codec: NativeCodec,
): NativeDecoding | null {
  if (!nativeCodecAvailable(codec)) return null;
  return new Decoding(source, codec);
}
