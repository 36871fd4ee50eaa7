// Directory-relative file system calls through FFI, for reading directory trees exactly: names as raw
// bytes (Deno's readDir decodes names lossily), nanosecond mtimes and rdev (Deno's stat has neither).
import { check, cstrBytes, openLibc } from "./libc.ts";
import { bytesToBstr } from "../util/bytes.ts";

const symbols = {
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
} as const;

function lib() {
  return openLibc(symbols);
}

export const AT_FDCWD = -100;
export const O_RDONLY = 0;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_CLOEXEC = 0o2000000;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_EMPTY_PATH = 0x1000;
const STATX_BASIC_STATS = 0x7ff;

export interface StatxResult {
  /** Full st_mode (type and permission bits). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  ino: bigint;
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
  const v = ((BigInt(major) & 0xfffff000n) << 32n) | ((BigInt(major) & 0xfffn) << 8n) |
    ((BigInt(minor) & 0xffffff00n) << 12n) | (BigInt(minor) & 0xffn);
  return Number(v);
}

/** Opens `name` (raw bytes) relative to `dirfd`; returns the fd. */
export function openAt(dirfd: number, name: Uint8Array, flags: number, what?: string): number {
  return check(
    "openat",
    lib().openat(dirfd, cstrBytes(name), flags | O_CLOEXEC, 0),
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
    ino: v.getBigUint64(32, true),
    size: Number(v.getBigUint64(40, true)),
    mtimeSec: Number(v.getBigInt64(112, true)),
    mtimeNsec: v.getUint32(120, true),
    rdev: makedev(v.getUint32(128, true), v.getUint32(132, true)),
    dev: makedev(v.getUint32(136, true), v.getUint32(140, true)),
  };
}

/** lstat-like statx of `name` relative to `dirfd` (a final symlink is not followed). */
export function statAt(dirfd: number, name: Uint8Array, what?: string): StatxResult {
  check(
    "statx",
    lib().statx(dirfd, cstrBytes(name), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuf),
    what ?? bytesToBstr(name),
  );
  return decodeStatx();
}

/** statx of an open file descriptor. */
export function statFd(fd: number, what?: string): StatxResult {
  check("statx", lib().statx(fd, new Uint8Array(1), AT_EMPTY_PATH, STATX_BASIC_STATS, statxBuf), what);
  return decodeStatx();
}

/** Target of the symlink `name` (raw bytes) relative to `dirfd`. */
export function readlinkAt(dirfd: number, name: Uint8Array, what?: string): Uint8Array {
  const buf = new Uint8Array(4097);
  const n = Number(check("readlinkat", lib().readlinkat(dirfd, cstrBytes(name), buf, 4097n), what));
  return buf.slice(0, n);
}

/** Names (raw bytes) in the open directory `fd`, without `.` and `..`, in kernel order. */
export function readDirNames(fd: number, what?: string): Uint8Array[] {
  const names: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  const view = new DataView(buf.buffer);
  for (;;) {
    const n = Number(check("getdents64", lib().getdents64(fd, buf, BigInt(buf.length)), what));
    if (n === 0) return names;
    let off = 0;
    while (off < n) {
      const reclen = view.getUint16(off + 16, true);
      const start = off + 19;
      let end = start;
      while (buf[end] !== 0) end++;
      const len = end - start;
      const dot = len === 1 && buf[start] === 0x2e;
      const dotdot = len === 2 && buf[start] === 0x2e && buf[start + 1] === 0x2e;
      if (!dot && !dotdot) names.push(buf.slice(start, end));
      off += reclen;
    }
  }
}
