// The body of the thread that prepares a containers-storage layer's diff/ files ahead of the import
// (docs/containers-storage.md): opening each file (openat2 RESOLVE_BENEATH, as openBeneath in
// openat2.ts with followBeneath), statx, reflinking it (FICLONE) into an O_TMPFILE under objects/ and
// POSIX_FADV_WILLNEED on what will be hashed. Cold directory lookups, extent-map reads and readahead
// submission wait for the disk; here they do so beside the hashing on the main thread, many files
// ahead. File descriptors are process-wide, so the numbers the thread returns are used by the main
// thread directly, which owns (and closes) them from then on.
//
// lib/oci/transport/containers_storage/prefetch_worker.ts runs it on a node:worker_threads worker
// built from source text, so it also works from the single-file bundle: the function may use only
// its arguments and globals (Deno FFI), never a binding of this module — the kernel constants come
// in as an argument.
import {
  AT_EMPTY_PATH,
  Errno,
  FICLONE,
  O_CLOEXEC,
  O_NOFOLLOW,
  O_RDONLY,
  O_RDWR,
  O_TMPFILE,
  OPEN_HOW_SIZE,
  POSIX_FADV_WILLNEED,
  RESOLVE_BENEATH,
  RESOLVE_NO_MAGICLINKS,
  S_IFMT,
  S_IFREG,
  STATX_BASIC_STATS,
  SYS_OPENAT2,
} from "./constants.ts";

/**
 * A batch of files to prepare below the directory open as `diffFd`. On the wire a path is a byte
 * string (one char per byte): Deno's node:worker_threads clones a Uint8Array element by element
 * (~100 ms per MiB), a string at memcpy speed.
 */
export interface DiffPrefetchRequest {
  seq: number;
  diffFd: number;
  /** `clone`: reflink into objects/ (regular files only). */
  items: { path: string; clone: boolean }[];
}

/** What the thread found for one file. */
export interface DiffPrefetchResult {
  /** The opened diff/ file, or -1 (then `openErrno`). */
  fd: number;
  openErrno: number;
  /** statx of fd: full st_mode, size, link count, owner, st_dev as major and minor. */
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  devMajor: number;
  devMinor: number;
  /** The reflink (O_TMPFILE under objects/), or -1 (then `cloneErrno`, 0 when not asked for). */
  tmp: number;
  cloneErrno: number;
}

export interface DiffPrefetchReply {
  seq: number;
  results: DiffPrefetchResult[];
}

const K = {
  SYS_OPENAT2,
  OPEN_HOW_SIZE,
  OPEN_FLAGS: O_RDONLY | O_NOFOLLOW | O_CLOEXEC,
  RESOLVE: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
  TMPFILE_FLAGS: O_TMPFILE | O_RDWR | O_CLOEXEC,
  AT_EMPTY_PATH,
  STATX_BASIC_STATS,
  S_IFMT,
  S_IFREG,
  FICLONE: Number(FICLONE),
  POSIX_FADV_WILLNEED,
  EINTR: Errno.EINTR,
  EAGAIN: Errno.EAGAIN,
  ENAMETOOLONG: Errno.ENAMETOOLONG,
};

// deno-lint-ignore no-explicit-any
function threadMain(wt: any, objectsDir: string, k: typeof K): void {
  // deno-lint-ignore no-explicit-any
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
  const errno = () => new D.UnsafePointerView(lib.__errno_location()).getInt32(0);
  const how = new Uint8Array(k.OPEN_HOW_SIZE);
  const hv = new DataView(how.buffer);
  hv.setBigUint64(0, BigInt(k.OPEN_FLAGS), true);
  hv.setBigUint64(16, BigInt(k.RESOLVE), true);
  const dirPath = new TextEncoder().encode(objectsDir + "\0");
  const empty = new Uint8Array(1);
  const st = new Uint8Array(256);
  const sv = new DataView(st.buffer);
  const path = new Uint8Array(8192);

  const EMPTY = { fd: -1, openErrno: 0, mode: 0, size: 0, nlink: 0, uid: 0, devMajor: 0, devMinor: 0 };
  const EMPTY_RESULT: DiffPrefetchResult = { ...EMPTY, tmp: -1, cloneErrno: 0 };

  function one(diffFd: number, item: { path: string; clone: boolean }): DiffPrefetchResult {
    const r = { ...EMPTY_RESULT };
    const p = item.path;
    if (p.length >= path.length) {
      r.openErrno = k.ENAMETOOLONG;
      return r;
    }
    for (let i = 0; i < p.length; i++) path[i] = p.charCodeAt(i);
    path[p.length] = 0;
    let fd: number;
    do fd = Number(lib.syscall6(BigInt(k.SYS_OPENAT2), diffFd, path, how, BigInt(k.OPEN_HOW_SIZE))); while (
      fd < 0 && (errno() === k.EINTR || errno() === k.EAGAIN)
    );
    if (fd < 0) {
      r.openErrno = errno();
      return r;
    }
    r.fd = fd;
    if (lib.statx(fd, empty, k.AT_EMPTY_PATH, k.STATX_BASIC_STATS, st) < 0) {
      r.openErrno = errno();
      return r;
    }
    r.nlink = sv.getUint32(16, true);
    r.uid = sv.getUint32(20, true);
    r.mode = sv.getUint16(28, true);
    r.size = Number(sv.getBigUint64(40, true));
    r.devMajor = sv.getUint32(136, true);
    r.devMinor = sv.getUint32(140, true);
    let target = fd;
    if (item.clone && (r.mode & k.S_IFMT) === k.S_IFREG) {
      const tmp = lib.open(dirPath, k.TMPFILE_FLAGS, 0o644);
      if (tmp < 0) r.cloneErrno = errno();
      else if (lib.ioctl(tmp, BigInt(k.FICLONE), BigInt(fd)) < 0) {
        r.cloneErrno = errno();
        lib.close(tmp);
      } else {
        r.tmp = tmp;
        target = tmp;
      }
    }
    lib.posix_fadvise(target, 0n, 0n, k.POSIX_FADV_WILLNEED); // a hint, result ignored
    return r;
  }

  wt.parentPort.on("message", (m: DiffPrefetchRequest) => {
    const results = m.items.map((it) => one(m.diffFd, it));
    wt.parentPort.postMessage({ seq: m.seq, results } satisfies DiffPrefetchReply);
  });
}

/** Source text of a worker that answers DiffPrefetchRequests, reflinking into `objectsDir`. */
export function diffPrefetchThreadSource(objectsDir: string): string {
  return `const wt = require("node:worker_threads"); (${threadMain.toString()})(wt, ${
    JSON.stringify(objectsDir)
  }, ${JSON.stringify(K)});`;
}
