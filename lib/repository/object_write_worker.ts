// Object writes on a second thread. Creating a file costs tens of microseconds of kernel time
// (O_TMPFILE, write, linkat, close); for a layer of many small files that is most of the import, so
// the digests are computed on the calling thread (the ids are needed at once for the splitstream)
// and the bytes go, packed into a few reused 4 MiB batch buffers, to a worker thread that stores
// them — as `tar -x` runs beside `zstd -dc`. Objects stay atomic (O_TMPFILE, linked when complete);
// settle() is the barrier before anything that refers to them is published.
//
// The worker is a node:worker_threads worker from source text (a blob of this file's workerMain),
// so it also runs from the single-file bundle; it keeps the process alive only while batches are
// pending.
import { Worker } from "node:worker_threads";
import { KernelError } from "../errors.ts";
import { errnoName } from "../linux/libc.ts";

const BATCH_SIZE = 4 << 20;
const MAX_BATCHES = 6;
/** Objects per batch message (bounds the names array). */
const MAX_ITEMS = 1024;

interface BatchMessage {
  seq: number;
  buf: ArrayBuffer;
  names: string[];
  offs: number[];
  lens: number[];
}

interface BatchReply {
  seq: number;
  buf: ArrayBuffer;
  /** Objects found already present (not written). */
  present: number;
  err: { syscall: string; errno: number; where: string } | null;
}

/**
 * The worker's code. It runs from its source text in a fresh isolate: it may use only its argument
 * and globals (Deno FFI), nothing imported by this module.
 */
function workerMain(wt: any, dir: string): void {
  const D = (globalThis as any).Deno;
  const lib = D.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
    mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    close: { parameters: ["i32"], result: "i32" },
    linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
    fstatat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
    __errno_location: { parameters: [], result: "pointer" },
  }).symbols;
  const O_RDWR = 0o2, O_DIRECTORY = 0o200000, O_CLOEXEC = 0o2000000, O_PATH = 0o10000000;
  const O_TMPFILE = 0o20000000 | O_DIRECTORY;
  const AT_FDCWD = -100, AT_SYMLINK_FOLLOW = 0x400, EINTR = 4, EEXIST = 17;
  const enc = new TextEncoder();
  const paths = [new Uint8Array(4096), new Uint8Array(256), new Uint8Array(256)];
  const cstr = (i: number, s: string) => {
    const { written } = enc.encodeInto(s, paths[i]);
    paths[i][written] = 0;
    return paths[i];
  };
  const errno = () => new D.UnsafePointerView(lib.__errno_location()).getInt32(0);
  const st = new Uint8Array(256);
  const made = new Set<string>();
  const dirFd = lib.open(cstr(0, dir), O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  const initErr = dirFd < 0 ? { syscall: "open", errno: errno(), where: dir } : null;

  function store(bytes: Uint8Array, name: string, off: number, len: number): boolean {
    const rel = cstr(1, name);
    if (lib.fstatat(dirFd, rel, st, 0) === 0) return true;
    const xx = name.slice(0, 2);
    if (!made.has(xx)) {
      if (lib.mkdirat(dirFd, cstr(2, xx), 0o755) < 0 && errno() !== EEXIST) {
        throw { syscall: "mkdir", errno: errno(), where: `${dir}/${xx}` };
      }
      made.add(xx);
    }
    let fd: number;
    do fd = lib.openat(dirFd, cstr(2, xx), O_TMPFILE | O_RDWR | O_CLOEXEC, 0o644); while (
      fd < 0 && errno() === EINTR
    );
    if (fd < 0) throw { syscall: "open(O_TMPFILE)", errno: errno(), where: `${dir}/${xx}` };
    try {
      let done = 0;
      while (done < len) {
        const n = Number(lib.write(fd, bytes.subarray(off + done, off + len), BigInt(len - done)));
        if (n < 0) {
          if (errno() === EINTR) continue;
          throw { syscall: "write", errno: errno(), where: `${dir}/${name}` };
        }
        done += n;
      }
      if (lib.linkat(AT_FDCWD, cstr(2, `/proc/self/fd/${fd}`), dirFd, rel, AT_SYMLINK_FOLLOW) < 0) {
        if (errno() !== EEXIST) throw { syscall: "linkat", errno: errno(), where: `${dir}/${name}` };
      }
    } finally {
      lib.close(fd);
    }
    return false;
  }

  wt.parentPort.on("message", (m: BatchMessage) => {
    const bytes = new Uint8Array(m.buf);
    let present = 0;
    let err = initErr;
    for (let i = 0; i < m.names.length && !err; i++) {
      try {
        if (store(bytes, m.names[i], m.offs[i], m.lens[i])) present++;
      } catch (e) {
        err = e as typeof err;
      }
    }
    const reply: BatchReply = { seq: m.seq, buf: m.buf, present, err };
    wt.parentPort.postMessage(reply, [m.buf]);
  });
}

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
    const src = `const wt = require("node:worker_threads"); (${workerMain.toString()})(wt, ${
      JSON.stringify(objectsDir)
    });`;
    this.#worker = new Worker(src, { eval: true });
    this.#worker.unref();
    this.#worker.on("message", (r: BatchReply) => this.#done(r));
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
    if (data.length > BATCH_SIZE) throw new RangeError(`object of ${data.length} bytes exceeds a batch`);
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

  /** Sends what is gathered and waits until the worker has stored everything; rejects on a write error. */
  async settle(): Promise<void> {
    this.#send();
    while (this.#inFlight > 0 && !this.#error) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#error) throw this.#error;
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

    const msg: BatchMessage = { seq: this.#seq++, buf: b.buf, names: b.names, offs: b.offs, lens: b.lens };
    this.#worker.postMessage(msg, [b.buf]);
  }

  #done(r: BatchReply): void {
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
