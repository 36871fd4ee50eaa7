// Directory-relative file system calls through FFI, for reading directory trees exactly: names as raw
// bytes (Deno's readDir decodes names lossily), nanosecond mtimes and rdev (Deno's stat has neither).
import { check, Errno, errno, errnoName, openLibc } from "./libc.ts";
import { KernelError } from "../errors.ts";
import { bytesToBstr } from "../util/bytes.ts";
import {
  AT_EMPTY_PATH,
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  O_CLOEXEC,
  O_RDWR,
  O_TMPFILE,
  S_IFMT,
  S_IFREG,
  STATX_BASIC_STATS,
} from "./constants.ts";
export { AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, O_RDONLY } from "./constants.ts";

const symbols = {
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
} as const;

function lib() {
  return openLibc(symbols);
}

export interface StatxResult {
  /** Full st_mode (type and permission bits). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Inode number as two 32-bit halves (exact for 64-bit inode numbers, no BigInt per file). */
  inoHi: number;
  inoLo: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** glibc makedev() encoding of the device a special file stands for. */
  rdev: number;
  /** glibc makedev() encoding of the device holding the file (hard-link identity with ino). */
  dev: number;
}

/** glibc/Linux 64-bit makedev(). Exact for every device number below 2^53 (all real ones). */
export function makedev(major: number, minor: number): number {
  // (major & 0xfffff000) << 32 | (major & 0xfff) << 8 | (minor & 0xffffff00) << 12 | (minor & 0xff),
  // in float arithmetic: statx is called once per file, BigInt math there showed in profiles.
  return Math.floor(major / 4096) * 2 ** 44 + (major % 4096) * 256 + Math.floor(minor / 256) * 2 ** 20 +
    (minor % 256);
}

// One NUL-terminated scratch copy of the name for each call (FFI calls are synchronous, so one
// buffer serves them all): no allocation per file.
let nameBuf = new Uint8Array(4096);
function cname(name: Uint8Array): Uint8Array {
  if (name.length >= nameBuf.length) nameBuf = new Uint8Array(name.length + 1);
  nameBuf.set(name);
  nameBuf[name.length] = 0;
  return nameBuf;
}

/** Opens `name` (raw bytes) relative to `dirfd`; returns the fd. */
export function openAt(dirfd: number, name: Uint8Array, flags: number, what?: string): number {
  return check(
    "openat",
    lib().openat(dirfd, cname(name), flags | O_CLOEXEC, 0),
    what ?? bytesToBstr(name),
  );
}

export function closeFd(fd: number): void {
  lib().close(fd);
}

const statxBuf = new Uint8Array(256);
const statxView = new DataView(statxBuf.buffer);

function decodeStatx(): StatxResult {
  const v = statxView;
  return {
    nlink: v.getUint32(16, true),
    uid: v.getUint32(20, true),
    gid: v.getUint32(24, true),
    mode: v.getUint16(28, true),
    inoLo: v.getUint32(32, true),
    inoHi: v.getUint32(36, true),
    size: v.getUint32(44, true) * 2 ** 32 + v.getUint32(40, true),
    mtimeSec: v.getInt32(116, true) * 2 ** 32 + v.getUint32(112, true),
    mtimeNsec: v.getUint32(120, true),
    rdev: makedev(v.getUint32(128, true), v.getUint32(132, true)),
    dev: makedev(v.getUint32(136, true), v.getUint32(140, true)),
  };
}

/** lstat-like statx of `name` relative to `dirfd` (a final symlink is not followed). */
export function statAt(dirfd: number, name: Uint8Array, what?: string): StatxResult {
  check(
    "statx",
    lib().statx(dirfd, cname(name), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuf),
    what ?? bytesToBstr(name),
  );
  return decodeStatx();
}

/** statx of an open file descriptor. */
export function statFd(fd: number, what?: string): StatxResult {
  check("statx", lib().statx(fd, new Uint8Array(1), AT_EMPTY_PATH, STATX_BASIC_STATS, statxBuf), what);
  return decodeStatx();
}

/** Size of the regular file at `path` (following symlinks), or null when there is none; never throws. */
export function pathSize(path: string): number | null {
  if (lib().statx(AT_FDCWD, cname(new TextEncoder().encode(path)), 0, STATX_BASIC_STATS, statxBuf) < 0) {
    return null;
  }
  const st = decodeStatx();
  return (st.mode & S_IFMT) === S_IFREG ? st.size : null;
}

/** Whether `st` is a regular file. */
export function isRegular(st: { mode: number }): boolean {
  return (st.mode & S_IFMT) === S_IFREG;
}

/** Target of the symlink `name` (raw bytes) relative to `dirfd`. */
export function readlinkAt(dirfd: number, name: Uint8Array, what?: string): Uint8Array {
  const buf = new Uint8Array(4097);
  const n = Number(check("readlinkat", lib().readlinkat(dirfd, cname(name), buf, 4097n), what));
  return buf.slice(0, n);
}

/** Names (raw bytes) in the open directory `fd`, without `.` and `..`, in kernel order. */
export function readDirNames(fd: number, what?: string): Uint8Array[] {
  return readDirEntries(fd, what).names;
}

/** A directory's entries: `types[i]` is the getdents64 d_type of `names[i]` (DT_UNKNOWN: not known). */
export interface DirEntries {
  names: Uint8Array[];
  types: Uint8Array;
}

/** Entries of the open directory `fd` with their d_type, without `.` and `..`, in kernel order. */
export function readDirEntries(fd: number, what?: string): DirEntries {
  const names: Uint8Array[] = [];
  const types: number[] = [];
  const buf = new Uint8Array(65536);
  const view = new DataView(buf.buffer);
  for (;;) {
    const n = Number(check("getdents64", lib().getdents64(fd, buf, BigInt(buf.length)), what));
    if (n === 0) return { names, types: Uint8Array.from(types) };
    let off = 0;
    while (off < n) {
      const reclen = view.getUint16(off + 16, true);
      const start = off + 19;
      let end = start;
      while (buf[end] !== 0) end++;
      const len = end - start;
      const dot = len === 1 && buf[start] === 0x2e;
      const dotdot = len === 2 && buf[start] === 0x2e && buf[start + 1] === 0x2e;
      if (!dot && !dotdot) {
        names.push(buf.slice(start, end));
        types.push(buf[off + 18]);
      }
      off += reclen;
    }
  }
}

function fail(syscall: string, what?: string): KernelError {
  const e = errno();
  return new KernelError(syscall, e, errnoName(e), undefined, what ? [what] : undefined);
}

/** Whether `name` exists relative to `dirfd` (no symlink followed); other errors throw. */
export function existsAt(dirfd: number, name: Uint8Array, what?: string): boolean {
  // mask 0: only the lookup, no attributes wanted
  if (lib().statx(dirfd, cname(name), AT_SYMLINK_NOFOLLOW, 0, statxBuf) === 0) return true;
  if (errno() === Errno.ENOENT) return false;
  throw fail("statx", what ?? bytesToBstr(name));
}

/**
 * An unnamed writable file (O_TMPFILE) in the directory `name` relative to `dirfd`, or null when
 * the filesystem does not support O_TMPFILE.
 */
export function openTmpfileIn(dirfd: number, name: Uint8Array, mode: number, what?: string): number | null {
  for (;;) {
    const fd = lib().openat(dirfd, cname(name), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    if (fd >= 0) return fd;
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.EOPNOTSUPP || e === Errno.EISDIR || e === Errno.EINVAL) return null;
    throw fail("openat(O_TMPFILE)", what ?? bytesToBstr(name));
  }
}

/** mkdirat; returns false when the name already exists. */
export function mkdirAt(dirfd: number, name: Uint8Array, mode: number, what?: string): boolean {
  if (lib().mkdirat(dirfd, cname(name), mode) === 0) return true;
  if (errno() === Errno.EEXIST) return false;
  throw fail("mkdirat", what ?? bytesToBstr(name));
}

/** pread of up to `buf.length` bytes at `offset` (retried on EINTR); returns the count read. */
export function preadFd(fd: number, buf: Uint8Array, offset: number, what?: string): number {
  for (;;) {
    const n = Number(lib().pread64(fd, buf, BigInt(buf.length), BigInt(offset)));
    if (n >= 0) return n;
    if (errno() !== Errno.EINTR) throw fail("pread", what);
  }
}
