// Threads that hash the leaf level of fs-verity Merkle trees (docs/fsverity.md#digest) beside the main
// thread. The leaf level is all of the hashing work but 1/128 (SHA-256) or 1/64 (SHA-512): disjoint
// block-aligned ranges of a file, or many whole files, are hashed on the threads from their fds
// (lib/linux/block_hash_thread.ts) and the digests fed, in file order, into an FsVerityHasher
// (updateLeafDigests), which builds the upper levels and the descriptor exactly as for streamed data.
// One single-threaded hash runs at the speed of one core; this is how a digest uses all of them.
//
// The threads are started on first use, one per core (at most MAX_THREADS), and referenced only while
// requests are pending, so an idle pool does not keep the process alive.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { FormatError, KernelError } from "../errors.ts";
import { errnoName } from "../linux/libc.ts";
import { addShutdownHook } from "../util/shutdown.ts";
import {
  type BlockHashJob,
  type BlockHashReply,
  type BlockHashRequest,
  blockHashThreadSource,
  type StreamHashRequest,
} from "../linux/block_hash_thread.ts";
import { createHash } from "node:crypto";
import { hashBackend, type HashBackendName } from "./backend.ts";
import { DIGEST_SIZE, type HashAlgorithm } from "./object_id.ts";

const MAX_THREADS = 4;

/** A job that failed because the file ended before the length asked for (it was truncated). */
export class ShortFileError extends FormatError {
  override name = "ShortFileError";
}

interface Pending {
  /** Where the thread writes its result. */
  out: Uint8Array;
  resolve: (d: Uint8Array) => void;
  reject: (e: unknown) => void;
  /** What each job or part is, for error messages. */
  labels: string[];
}

class Thread {
  readonly worker: Worker;
  readonly waiting = new Map<number, Pending>();
  failed?: Error;
  /** Settles once the thread is set up (or failed to start): exiting before that can crash Deno. */
  readonly started: Promise<void>;

  constructor(libcrypto: boolean) {
    this.worker = new Worker(blockHashThreadSource(libcrypto), { eval: true });
    this.worker.unref();
    let ready = () => {};
    this.started = new Promise<void>((resolve) => {
      ready = resolve;
      this.worker.once("error", () => resolve());
      this.worker.once("exit", () => resolve());
    });
    this.worker.on("message", (m: BlockHashReply) => m.ready ? ready() : this.#reply(m));
    this.worker.on("error", (e: Error) => {
      this.failed = e;
      for (const p of this.waiting.values()) p.reject(e);
      this.waiting.clear();
    });
  }

  #reply(m: BlockHashReply): void {
    const p = this.waiting.get(m.seq);
    this.waiting.delete(m.seq);
    if (this.waiting.size === 0) this.worker.unref();
    if (!p) return;
    if (!m.error) return p.resolve(p.out);
    const { job, errno, message } = m.error!;
    p.reject(
      errno === 0 ? new ShortFileError(message) : new KernelError(
        message.startsWith("open ") ? "open" : "pread",
        errno,
        errnoName(errno),
        undefined,
        [
          p.labels[job],
        ],
      ),
    );
  }

  /** Sends `req`; resolves with `out` (the request's `out` buffer when not given) once it is done. */
  send(
    req: BlockHashRequest | StreamHashRequest,
    labels: string[],
    out: Uint8Array = new Uint8Array((req as { out: SharedArrayBuffer }).out),
  ): Promise<Uint8Array> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      if (this.waiting.size === 0) this.worker.ref();
      this.waiting.set(req.seq, { out, resolve, reject, labels });
      this.worker.postMessage(req);
    });
  }
}

export class LeafPool {
  readonly size: number;
  /** The hash backend the threads use (the one in effect when the pool was made). */
  readonly backend: HashBackendName;
  #threads: Thread[] = [];
  #unhook: (() => void) | undefined;
  #seq = 0;

  constructor(threads: number, backend: HashBackendName) {
    this.size = threads;
    this.backend = backend;
  }

  /**
   * The block digests (ceil(length/4096) per job, back to back) of `jobs`, hashed on the least busy
   * thread. Rejects with ShortFileError when a file ended early, KernelError when a read failed.
   */
  hash(alg: HashAlgorithm, jobs: BlockHashJob[], threads = this.size): Promise<Uint8Array> {
    const seq = this.#seq++;
    let blocks = 0;
    for (const j of jobs) blocks += Math.ceil(j[2] / 4096);
    const head = 24 * jobs.length;
    const buf = new SharedArrayBuffer(head + blocks * DIGEST_SIZE[alg]);
    const f = new Float64Array(buf, 0, 3 * jobs.length);
    for (let k = 0; k < jobs.length; k++) f.set(jobs[k], 3 * k);
    return this.#thread(threads).send(
      { seq, kind: "blocks", alg, count: jobs.length, buf },
      jobs.map((j) => `fd ${j[0]}`),
      new Uint8Array(buf, head),
    );
  }

  /**
   * The plain `alg` digest (node:crypto name) of the concatenation of `parts`: bytes (copied into
   * shared memory for the thread), and whole files by path (opened O_NOFOLLOW, read to the end).
   */
  hashStream(alg: string, parts: (Uint8Array | string)[]): Promise<Uint8Array> {
    const seq = this.#seq++;
    let total = 0;
    for (const p of parts) if (typeof p !== "string") total += p.length;
    const data = new SharedArrayBuffer(total);
    const view = new Uint8Array(data);
    let at = 0;
    const ranges = parts.map((p): [number, number] | string => {
      if (typeof p === "string") return p;
      view.set(p, at);
      at += p.length;
      return [at - p.length, at];
    });
    const labels = parts.map((p) => (typeof p === "string" ? p : "(bytes)"));
    const out = new SharedArrayBuffer(64);
    return this.#thread().send({ seq, kind: "stream", alg, parts: ranges, data, out }, labels)
      .then((d) => d.slice(0, createHash(alg).digest().length));
  }

  /** The least busy of the first `limit` threads. */
  #thread(limit = this.size): Thread {
    this.warm(limit);
    let best = this.#threads[0];
    for (const t of this.#threads.slice(0, Math.max(1, limit))) {
      if (t.waiting.size < best.waiting.size) best = t;
    }
    return best;
  }

  /**
   * Starts every thread now. A thread's start takes tens of milliseconds (hundreds on a loaded
   * machine), and the first message to it waits for that on the calling thread: callers that know
   * they will hash (a fetch, an import) warm the pool before their first network or disk wait.
   */
  warm(threads = this.size): void {
    if (this.#threads.length === 0 && threads > 0) this.#unhook ??= addShutdownHook(() => this.settle());
    while (this.#threads.length < Math.min(threads, this.size)) {
      this.#threads.push(new Thread(this.backend === "libcrypto"));
    }
  }

  /** Threads started so far (for tests and benchmarks). */
  get started(): number {
    return this.#threads.length;
  }

  /** Waits until every thread has started (Deno.exit is safe then; see Thread.started). */
  async settle(): Promise<void> {
    await Promise.all(this.#threads.map(async (t) => {
      t.worker.ref(); // an unref'd thread would not keep the process waiting for it
      await t.started;
      if (t.waiting.size === 0) t.worker.unref();
    }));
  }

  /** Stops every thread, each once it has started (see Thread.started). */
  async terminate(): Promise<void> {
    const ts = this.#threads;
    this.#threads = [];
    this.#unhook?.();
    this.#unhook = undefined;
    await Promise.all(ts.map(async (t) => {
      await t.started;
      await t.worker.terminate();
    }));
  }
}

let wanted: number | undefined;

/** CFSCTL_HASH_THREADS=N (0 or 1: no pool), read when allowed; undefined when unset or not readable. */
function envThreads(): number | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: "CFSCTL_HASH_THREADS" }).state !== "granted") {
      return undefined;
    }
    const v = Deno.env.get("CFSCTL_HASH_THREADS");
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  } catch {
    return undefined;
  }
}
let pool: LeafPool | null | undefined;

/**
 * Sets how many hashing threads leafPool() uses (0 or 1 = none: every digest on the calling thread);
 * undefined = one per core. Benchmarks use it to compare; an existing pool is dropped.
 */
export function setHashThreads(n: number | undefined): void {
  if (n === wanted) return;
  wanted = n;
  const old = pool;
  pool = undefined;
  void old?.terminate();
}

/** The thread count asked for by setHashThreads or CFSCTL_HASH_THREADS; undefined when not asked. */
export function hashThreadsRequested(): number | undefined {
  return wanted ?? envThreads();
}

/**
 * The shared pool, or null when there is only one core, threads are turned off, or FFI is not
 * allowed (the threads read with pread through FFI). Uses the hash backend in effect now.
 */
export function leafPool(): LeafPool | null {
  const backend = hashBackend().name;
  if (pool === null || pool?.backend === backend) return pool;
  const explicit = wanted ?? envThreads();
  // Asked for: that many threads (0 = none). By default one per core, none on a single core.
  const n = Math.min(explicit ?? (availableParallelism() >= 2 ? availableParallelism() : 0), MAX_THREADS);
  let ffi = false;
  try {
    ffi = Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    ffi = false;
  }
  void pool?.terminate();
  if (n < 1 || !ffi) {
    pool = null;
    return null;
  }
  pool = new LeafPool(n, backend);
  return pool;
}
