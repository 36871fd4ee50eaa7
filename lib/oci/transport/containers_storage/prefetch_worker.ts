// The blocking half of a containers-storage layer import on a second thread: opening each diff/
// file (openat2 RESOLVE_BENEATH), statx, reflinking it into an O_TMPFILE under objects/ and
// POSIX_FADV_WILLNEED on what will be hashed. Cold directory lookups, extent-map reads and readahead
// submission wait for the disk; here they do so beside the hashing on the main thread, many files
// ahead (measured: docs/containers-storage.md). File descriptors are process-wide, so the numbers
// the worker returns are used by the main thread directly; it owns (and closes) them from then on.
//
// As lib/repository/object_write_worker.ts: a node:worker_threads worker from source text (so it
// runs from the single-file bundle), referenced only while requests are pending.
import { Worker } from "node:worker_threads";

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
  /** statx of fd: S_IF* mode bits, size, st_dev "major:minor". */
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  dev: string;
  /** The reflink (O_TMPFILE under objects/), or -1 (then `cloneErrno`, 0 when not asked for). */
  tmp: number;
  cloneErrno: number;
}

/**
 * On the wire a path is a byte string (one char per byte): Deno's node:worker_threads clones a
 * Uint8Array element by element (~100 ms per MiB), a string at memcpy speed.
 */
interface Request {
  seq: number;
  diffFd: number;
  items: { path: string; clone: boolean }[];
}

/** Runs from its source text in a fresh isolate: only its arguments and globals (Deno FFI). */
function prefetchMain(wt: any, objectsDir: string): void {
  const D = (globalThis as any).Deno;
  const lib = D.dlopen("libc.so.6", {
    syscall6: { name: "syscall", parameters: ["i64", "i32", "buffer", "buffer", "usize"], result: "i64" },
    open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
    ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
    posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
    __errno_location: { parameters: [], result: "pointer" },
  }).symbols;
  const O_RDONLY = 0, O_RDWR = 2, O_NOFOLLOW = 0o400000, O_CLOEXEC = 0o2000000;
  const O_TMPFILE = 0o20000000 | 0o200000;
  const EINTR = 4, EAGAIN = 11;
  const errno = () => new D.UnsafePointerView(lib.__errno_location()).getInt32(0);
  const how = new Uint8Array(24);
  const hv = new DataView(how.buffer);
  hv.setBigUint64(0, BigInt(O_RDONLY | O_NOFOLLOW | O_CLOEXEC), true);
  hv.setBigUint64(16, 0x08n | 0x02n, true); // RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
  const enc = new TextEncoder();
  const dirPath = enc.encode(objectsDir + "\0");
  const empty = new Uint8Array(1);
  const st = new Uint8Array(256);
  const sv = new DataView(st.buffer);
  const path = new Uint8Array(8192);

  function one(diffFd: number, item: { path: string; clone: boolean }) {
    const r = { fd: -1, openErrno: 0, mode: 0, size: 0, nlink: 0, uid: 0, dev: "", tmp: -1, cloneErrno: 0 };
    const p = item.path;
    if (p.length >= path.length) {
      r.openErrno = 36; // ENAMETOOLONG
      return r;
    }
    for (let i = 0; i < p.length; i++) path[i] = p.charCodeAt(i);
    path[p.length] = 0;
    let fd: number;
    do fd = Number(lib.syscall6(437n, diffFd, path, how, 24n)); while (
      fd < 0 && (errno() === EINTR || errno() === EAGAIN)
    );
    if (fd < 0) {
      r.openErrno = errno();
      return r;
    }
    r.fd = fd;
    if (lib.statx(fd, empty, 0x1000, 0x7ff, st) < 0) {
      r.openErrno = errno();
      return r;
    }
    r.nlink = sv.getUint32(16, true);
    r.uid = sv.getUint32(20, true);
    r.mode = sv.getUint16(28, true);
    r.size = Number(sv.getBigUint64(40, true));
    r.dev = `${sv.getUint32(136, true)}:${sv.getUint32(140, true)}`;
    let target = fd;
    if (item.clone && (r.mode & 0o170000) === 0o100000) {
      const tmp = lib.open(dirPath, O_TMPFILE | O_RDWR | O_CLOEXEC, 0o644);
      if (tmp < 0) r.cloneErrno = errno();
      else if (lib.ioctl(tmp, 0x40049409n, BigInt(fd)) < 0) {
        r.cloneErrno = errno();
        lib.close(tmp);
      } else {
        r.tmp = tmp;
        target = tmp;
      }
    }
    lib.posix_fadvise(target, 0n, 0n, 3); // POSIX_FADV_WILLNEED: a hint, result ignored
    return r;
  }

  wt.parentPort.on("message", (m: Request) => {
    const results = m.items.map((it) => one(m.diffFd, it));
    wt.parentPort.postMessage({ seq: m.seq, results });
  });
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
    const src = `const wt = require("node:worker_threads"); (${prefetchMain.toString()})(wt, ${
      JSON.stringify(objectsDir)
    });`;
    this.#worker = new Worker(src, { eval: true });
    this.#worker.unref();
    this.#worker.on("message", (m: { seq: number; results: PrefetchResult[] }) => {
      const w = this.#waiting.get(m.seq);
      this.#waiting.delete(m.seq);
      if (this.#waiting.size === 0) this.#worker.unref();
      w?.resolve(m.results);
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
      this.#worker.postMessage({ seq, diffFd, items: wire } satisfies Request);
    });
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}
