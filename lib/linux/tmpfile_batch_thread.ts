// The body of a thread that stores batches of small files: for each (name, bytes) of a batch,
// "already there?" (fstatat), then O_TMPFILE in the name's directory, write, linkat under the name.
// Every file appears complete or not at all. lib/objects/write_worker.ts runs it on a
// node:worker_threads worker built from source text, so it also works from the single-file
// bundle: the function may use only its arguments and globals (Deno FFI), never a binding of this
// module — the kernel constants come in as an argument.
import {
  AT_FDCWD,
  AT_SYMLINK_FOLLOW,
  Errno,
  O_CLOEXEC,
  O_DIRECTORY,
  O_PATH,
  O_RDWR,
  O_TMPFILE,
} from "./constants.ts";

/** `state[slot]` of a batch buffer the sender may fill. */
export const SLOT_FREE = 0;
/** `state[slot]` of a batch buffer handed to the thread. */
export const SLOT_BUSY = 1;

/**
 * A batch: `names[i]` (relative to the directory, "XX/rest") holds `buf[offs[i], offs[i] + lens[i])`.
 * `buf` and `state` are shared: once the batch is stored the thread sets `state[slot]` to SLOT_FREE,
 * before it replies, so the sender may reuse the buffer without waiting for the reply.
 */
export interface FileBatch {
  seq: number;
  buf: SharedArrayBuffer;
  state: SharedArrayBuffer;
  slot: number;
  names: string[];
  offs: number[];
  lens: number[];
}

/** The reply to a batch (its buffer was freed in `state` just before). */
export interface FileBatchReply {
  seq: number;
  /** Files found already present (not written). */
  present: number;
  /** The first failure; the rest of the batch was not stored. */
  err: { syscall: string; errno: number; where: string } | null;
}

const K = {
  AT_FDCWD,
  AT_SYMLINK_FOLLOW,
  EEXIST: Errno.EEXIST,
  EINTR: Errno.EINTR,
  O_CLOEXEC,
  O_PATH,
  O_DIRECTORY,
  O_RDWR,
  O_TMPFILE,
  SLOT_FREE,
};

// deno-lint-ignore no-explicit-any
function threadMain(wt: any, dir: string, k: typeof K): void {
  // deno-lint-ignore no-explicit-any
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
  const dirFd = lib.open(cstr(0, dir), k.O_PATH | k.O_DIRECTORY | k.O_CLOEXEC, 0);
  const initErr = dirFd < 0 ? { syscall: "open", errno: errno(), where: dir } : null;

  function store(bytes: Uint8Array, name: string, off: number, len: number): boolean {
    const rel = cstr(1, name);
    if (lib.fstatat(dirFd, rel, st, 0) === 0) return true;
    const slash = name.indexOf("/");
    const sub = slash < 0 ? "." : name.slice(0, slash);
    if (!made.has(sub)) {
      if (sub !== "." && lib.mkdirat(dirFd, cstr(2, sub), 0o755) < 0 && errno() !== k.EEXIST) {
        throw { syscall: "mkdir", errno: errno(), where: `${dir}/${sub}` };
      }
      made.add(sub);
    }
    let fd: number;
    do fd = lib.openat(dirFd, cstr(2, sub), k.O_TMPFILE | k.O_RDWR | k.O_CLOEXEC, 0o644); while (
      fd < 0 && errno() === k.EINTR
    );
    if (fd < 0) throw { syscall: "open(O_TMPFILE)", errno: errno(), where: `${dir}/${sub}` };
    try {
      let done = 0;
      while (done < len) {
        const n = Number(lib.write(fd, bytes.subarray(off + done, off + len), BigInt(len - done)));
        if (n < 0) {
          if (errno() === k.EINTR) continue;
          throw { syscall: "write", errno: errno(), where: `${dir}/${name}` };
        }
        done += n;
      }
      if (lib.linkat(k.AT_FDCWD, cstr(2, `/proc/self/fd/${fd}`), dirFd, rel, k.AT_SYMLINK_FOLLOW) < 0) {
        // EEXIST: stored meanwhile by someone else, which is fine (same name = same content).
        if (errno() !== k.EEXIST) throw { syscall: "linkat", errno: errno(), where: `${dir}/${name}` };
      }
    } finally {
      lib.close(fd);
    }
    return false;
  }

  wt.parentPort.on("message", (m: FileBatch) => {
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
    // Free first: a sender woken by the reply must find the buffer free.
    Atomics.store(new Int32Array(m.state), m.slot, k.SLOT_FREE);
    const reply: FileBatchReply = { seq: m.seq, present, err };
    wt.parentPort.postMessage(reply);
  });
}

/** Source text of a worker that stores FileBatch messages into `dir` (node:worker_threads, eval). */
export function tmpfileBatchThreadSource(dir: string): string {
  return `const wt = require("node:worker_threads"); (${threadMain.toString()})(wt, ${JSON.stringify(dir)}, ${
    JSON.stringify(K)
  });`;
}
