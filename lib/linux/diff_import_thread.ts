// The body of the threads that do the per-file work of a containers-storage layer import
// (docs/containers-storage.md#threads). For a batch of diff/ files: open each (openat2 RESOLVE_BENEATH,
// as openBeneath in openat2.ts with followBeneath), statx it, reflink it (FICLONE) into an O_TMPFILE
// under objects/ and POSIX_FADV_WILLNEED the clone — every file of the batch first, so the disk
// serves them together — then read each clone once and hash its 4096-byte blocks: the leaf level of
// its fs-verity tree (the calling thread builds the rest, lib/fsverity/hasher.ts). A batch also
// carries the clones of earlier batches to name in objects/ (linkat, mkdirat of the XX directory
// when missing) and close, now that the calling thread knows their digests. Cold directory lookups,
// extent-map reads and data reads wait for the disk here, on several threads, beside the calling
// thread. File descriptors are process-wide: the numbers returned are used by the calling thread
// directly, which owns (and closes) them from then on unless it hands them back to be linked.
//
// Requests and results travel in SharedArrayBuffers (DiffBatch below): Deno's node:worker_threads
// serialises arrays and objects element by element, a SharedArrayBuffer by reference. The layout is
// written and read only through diffBatch() and the slot numbers S, here and in the thread.
//
// lib/oci/transport/containers_storage/import_workers.ts runs it on node:worker_threads workers
// built from source text, so it also works from the single-file bundle: the function may use only
// its arguments and globals (Deno FFI), never a binding of this module — the kernel constants come
// in as an argument, the hashing core (fileBlockHasher, shared with block_hash_thread.ts) as source.
import { fileBlockHasher } from "./block_hash_thread.ts";
import {
  AT_EMPTY_PATH,
  AT_FDCWD,
  AT_SYMLINK_FOLLOW,
  Errno,
  FICLONE,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
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

/** Float64 slots per file of a batch: inputs (written by the caller), then results (by the thread). */
export const S = {
  SIZE: 0,
  CLONE: 1,
  PATH_OFF: 2,
  PATH_LEN: 3,
  LEAVES_OFF: 4,
  FD: 5,
  OPEN_ERRNO: 6,
  MODE: 7,
  STAT_SIZE: 8,
  NLINK: 9,
  UID: 10,
  DEV_MAJOR: 11,
  DEV_MINOR: 12,
  TMP: 13,
  CLONE_ERRNO: 14,
  /** 0: not hashed (not cloned), 1: hashed, 2: the clone was shorter or longer, 3: a read failed. */
  HASH: 15,
  HASH_ERRNO: 16,
  /** Input: 1 = read the (small) file's content into `data` (not hashed, not cloned). */
  INLINE: 17,
  /** Where in `data` the file's content is (a hashed clone's or an INLINE file's), or -1. */
  DATA_OFF: 18,
  /**
   * Input: 0 = a diff/ file (the slots above), 1 = a range of a file already open: hash the
   * blocks of RANGE_FD from RANGE_OFF for SIZE bytes (RANGE_LAST: the file must end there).
   */
  KIND: 19,
  RANGE_FD: 20,
  RANGE_OFF: 21,
  RANGE_LAST: 22,
  /** Input, for a diff/ file: open and clone it but do not hash it (its ranges come later). */
  NO_HASH: 23,
  COUNT: 24,
} as const;

/** Float64 slots per link job: the fd to name, two fds to close after (-1: none), the name, the result. */
export const L = {
  FD: 0,
  CLOSE_A: 1,
  CLOSE_B: 2,
  NAME_OFF: 3,
  NAME_LEN: 4,
  /** 1: linked, 2: the name existed (present), -errno: failed. */
  RESULT: 5,
  COUNT: 6,
} as const;

export interface DiffImportRequest {
  seq: number;
  /** The objects/ directory clones are made in and linked into ("" when the request has only ranges). */
  objectsDir: string;
  diffFd: number;
  alg: "sha256" | "sha512";
  /** Files, then link jobs (done first). */
  files: number;
  links: number;
  buf: SharedArrayBuffer;
  /**
   * Where the thread leaves file contents for the caller (the diff_id hash, inline contents), in
   * batch order while they fit: a clone takes its size rounded up past the next 4096 boundary, an
   * INLINE file its size and one byte.
   */
  data: SharedArrayBuffer;
}

export interface DiffImportReply {
  seq: number;
  /** objects/ would not open: errno (nothing was done). */
  initErrno?: number;
}

export const DIGEST_BYTES = { sha256: 32, sha512: 64 } as const;

/** Views of a batch's buffer: the file slots, the link slots, and the bytes after them. */
export interface DiffBatchViews {
  files: Float64Array;
  links: Float64Array;
  bytes: Uint8Array;
}

/** The views of `buf` for `files` files and `links` link jobs (the thread repeats this arithmetic). */
export function diffBatchViews(buf: SharedArrayBuffer, files: number, links: number): DiffBatchViews {
  return {
    files: new Float64Array(buf, 0, files * S.COUNT),
    links: new Float64Array(buf, files * S.COUNT * 8, links * L.COUNT),
    bytes: new Uint8Array(buf),
  };
}

/** Where the bytes of a batch start (after its slots). */
export function diffBatchBytesStart(files: number, links: number): number {
  return (files * S.COUNT + links * L.COUNT) * 8;
}

const K = {
  SYS_OPENAT2,
  OPEN_HOW_SIZE,
  // O_NONBLOCK: a FIFO put in diff/ must not block the open (it is refused as not a regular file).
  OPEN_FLAGS: O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
  RESOLVE: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
  TMPFILE_FLAGS: O_TMPFILE | O_RDWR | O_CLOEXEC,
  DIR_FLAGS: O_PATH | O_DIRECTORY | O_CLOEXEC,
  AT_EMPTY_PATH,
  AT_FDCWD,
  AT_SYMLINK_FOLLOW,
  STATX_BASIC_STATS,
  S_IFMT,
  S_IFREG,
  FICLONE: Number(FICLONE),
  POSIX_FADV_WILLNEED,
  EINTR: Errno.EINTR,
  EAGAIN: Errno.EAGAIN,
  EEXIST: Errno.EEXIST,
  ENOENT: Errno.ENOENT,
  ENAMETOOLONG: Errno.ENAMETOOLONG,
  DIGEST_BYTES,
  S,
  L,
};

// long: the thread runs this function from its source text, so everything it uses must be inside
// it: the bindings, prepare (open, statx, clone), link, and the message handler that hashes.
function threadMain(
  // deno-lint-ignore no-explicit-any
  wt: any,
  // deno-lint-ignore no-explicit-any
  req: any,
  useLibcrypto: boolean,
  k: typeof K,
  hasher: typeof fileBlockHasher,
): void {
  // deno-lint-ignore no-explicit-any
  const D = (globalThis as any).Deno;
  const lib = D.dlopen("libc.so.6", {
    syscall6: { name: "syscall", parameters: ["i64", "i32", "buffer", "buffer", "usize"], result: "i64" },
    open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
    ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
    posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
    linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
    mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  }).symbols;
  const { errno, hashJob, readFull, addressOf } = hasher(D, req, useLibcrypto);
  const { S, L } = k;
  const how = new Uint8Array(k.OPEN_HOW_SIZE);
  const hv = new DataView(how.buffer);
  hv.setBigUint64(0, BigInt(k.OPEN_FLAGS), true);
  hv.setBigUint64(16, BigInt(k.RESOLVE), true);
  const enc = new TextEncoder();
  // objects/ of the request: its path (for O_TMPFILE) and an O_PATH fd (for linkat, mkdirat),
  // opened for each request and closed at its end (a worker's fds outlive it: nothing may stay open).
  let dirName = "";
  let dirPath = new Uint8Array(1);
  let objectsFd = -1;
  const empty = new Uint8Array(1);
  const st = new Uint8Array(256);
  const sv = new DataView(st.buffer);
  const path = new Uint8Array(8192);
  const proc = new Uint8Array(64);
  const cstr = (dst: Uint8Array, bytes: Uint8Array, off: number, len: number) => {
    if (len >= dst.length) return false;
    dst.set(bytes.subarray(off, off + len));
    dst[len] = 0;
    return true;
  };

  /** Opens, stats and (when asked) clones file i, then asks for its data to be read ahead. */
  function prepare(diffFd: number, f: Float64Array, bytes: Uint8Array, i: number): void {
    const o = i * S.COUNT;
    f[o + S.FD] = f[o + S.TMP] = -1;
    if (!cstr(path, bytes, f[o + S.PATH_OFF], f[o + S.PATH_LEN])) {
      f[o + S.OPEN_ERRNO] = k.ENAMETOOLONG;
      return;
    }
    let fd: number;
    do fd = Number(lib.syscall6(BigInt(k.SYS_OPENAT2), diffFd, path, how, BigInt(k.OPEN_HOW_SIZE))); while (
      fd < 0 && (errno() === k.EINTR || errno() === k.EAGAIN)
    );
    if (fd < 0) {
      f[o + S.OPEN_ERRNO] = errno();
      return;
    }
    f[o + S.FD] = fd;
    if (lib.statx(fd, empty, k.AT_EMPTY_PATH, k.STATX_BASIC_STATS, st) < 0) {
      f[o + S.OPEN_ERRNO] = errno();
      return;
    }
    const mode = sv.getUint16(28, true);
    const size = sv.getUint32(44, true) * 2 ** 32 + sv.getUint32(40, true);
    f[o + S.NLINK] = sv.getUint32(16, true);
    f[o + S.UID] = sv.getUint32(20, true);
    f[o + S.MODE] = mode;
    f[o + S.STAT_SIZE] = size;
    f[o + S.DEV_MAJOR] = sv.getUint32(136, true);
    f[o + S.DEV_MINOR] = sv.getUint32(140, true);
    let target = fd;
    if (f[o + S.CLONE] && (mode & k.S_IFMT) === k.S_IFREG && size === f[o + S.SIZE]) {
      const tmp = lib.open(dirPath, k.TMPFILE_FLAGS, 0o644);
      if (tmp < 0) f[o + S.CLONE_ERRNO] = errno();
      else if (lib.ioctl(tmp, BigInt(k.FICLONE), BigInt(fd)) < 0) {
        f[o + S.CLONE_ERRNO] = errno();
        lib.close(tmp);
      } else {
        f[o + S.TMP] = tmp;
        target = tmp;
      }
    }
    lib.posix_fadvise(target, 0n, 0n, k.POSIX_FADV_WILLNEED); // a hint, result ignored
  }

  /** Names link job j in objects/ (making its XX directory when missing), then closes its fds. */
  function link(l: Float64Array, bytes: Uint8Array, j: number): void {
    const o = j * L.COUNT;
    const name = bytes.subarray(l[o + L.NAME_OFF], l[o + L.NAME_OFF] + l[o + L.NAME_LEN]);
    cstr(path, name, 0, name.length);
    const src = enc.encode(`/proc/self/fd/${l[o + L.FD]}\0`);
    proc.set(src);
    let r = 0;
    for (let tries = 0; r === 0; tries++) {
      if (lib.linkat(k.AT_FDCWD, proc, objectsFd, path, k.AT_SYMLINK_FOLLOW) === 0) r = 1;
      else if (errno() === k.EEXIST) r = 2;
      else if (errno() === k.ENOENT && tries === 0) {
        const slash = name.indexOf(0x2f);
        const dir = new Uint8Array(slash + 1);
        dir.set(name.subarray(0, slash));
        if (lib.mkdirat(objectsFd, dir, 0o755) < 0 && errno() !== k.EEXIST) r = -errno();
      } else r = -errno();
    }
    l[o + L.RESULT] = r;
    for (const c of [l[o + L.FD], l[o + L.CLOSE_A], l[o + L.CLOSE_B]]) if (c >= 0) lib.close(c);
  }

  /** Reads and hashes item i (a clone, a range, an inline file); returns where `data` is free now. */
  function hashItem(
    m: DiffImportRequest,
    f: Float64Array,
    bytes: Uint8Array,
    data: Uint8Array,
    i: number,
    free: number,
  ) {
    const o = i * S.COUNT;
    const size = f[o + S.SIZE];
    f[o + S.DATA_OFF] = -1;
    try {
      if (f[o + S.KIND] === 1) {
        hashJob(
          m.alg,
          f[o + S.RANGE_FD],
          f[o + S.RANGE_OFF],
          size,
          bytes,
          f[o + S.LEAVES_OFF],
          !!f[o + S.RANGE_LAST],
        );
        f[o + S.HASH] = 1;
      } else if (f[o + S.TMP] >= 0) {
        if (!f[o + S.NO_HASH]) {
          // The clone is ours alone: read once, one byte past the end to see that it is not longer.
          const room = Math.ceil((size + 1) / 4096) * 4096;
          const into = free + room <= data.length
            ? { bytes: data, addr: addressOf(data), off: free }
            : undefined;
          hashJob(m.alg, f[o + S.TMP], 0, size, bytes, f[o + S.LEAVES_OFF], true, into);
          f[o + S.HASH] = 1;
          if (into) {
            f[o + S.DATA_OFF] = free;
            free += room;
          }
        }
        // The diff/ file is not needed any more (the clone is what gets stored): one fd per file
        // in flight, not two.
        lib.close(f[o + S.FD]);
        f[o + S.FD] = -1;
      } else if (
        f[o + S.INLINE] && f[o + S.FD] >= 0 && (f[o + S.MODE] & k.S_IFMT) === k.S_IFREG &&
        size === f[o + S.STAT_SIZE] && free + size + 1 <= data.length
      ) {
        const got = readFull(f[o + S.FD], 0, size + 1, true, addressOf(data) + BigInt(free));
        if (got !== size) f[o + S.HASH] = 2;
        else {
          f[o + S.DATA_OFF] = free;
          free += size + 1;
        }
      }
    } catch (e) {
      // deno-lint-ignore no-explicit-any
      const en = (e as any).errno ?? 0;
      f[o + S.HASH] = en ? 3 : 2;
      f[o + S.HASH_ERRNO] = en;
    }
    return free;
  }

  wt.parentPort.on("message", (m: DiffImportRequest) => {
    if (m.objectsDir !== dirName) dirPath = enc.encode(m.objectsDir + "\0");
    dirName = m.objectsDir;
    objectsFd = m.objectsDir ? lib.open(dirPath, k.DIR_FLAGS, 0) : -1; // "": ranges only
    if (m.objectsDir && objectsFd < 0) {
      return wt.parentPort.postMessage({ seq: m.seq, initErrno: errno() } satisfies DiffImportReply);
    }
    const f = new Float64Array(m.buf, 0, m.files * S.COUNT);
    const l = new Float64Array(m.buf, m.files * S.COUNT * 8, m.links * L.COUNT);
    const bytes = new Uint8Array(m.buf);
    const data = new Uint8Array(m.data);
    for (let j = 0; j < m.links; j++) link(l, bytes, j);
    for (let i = 0; i < m.files; i++) if (f[i * S.COUNT + S.KIND] === 0) prepare(m.diffFd, f, bytes, i);
    let free = 0;
    for (let i = 0; i < m.files; i++) free = hashItem(m, f, bytes, data, i, free);
    if (objectsFd >= 0) lib.close(objectsFd);
    wt.parentPort.postMessage({ seq: m.seq } satisfies DiffImportReply);
  });
}

/**
 * Source text of a worker that answers DiffImportRequests, reflinking into and linking in
 * the request's objects/ directory; `useLibcrypto` false forces node:crypto.
 */
export function diffImportThreadSource(useLibcrypto: boolean): string {
  return `const wt = require("node:worker_threads"); (${threadMain.toString()})(wt, require, ${useLibcrypto}, ${
    JSON.stringify(K)
  }, ${fileBlockHasher.toString()});`;
}
