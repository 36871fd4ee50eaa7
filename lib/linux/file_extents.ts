// What the containers-storage import needs from the kernel beyond lib/linux/fs.ts: opening a path
// confined to a directory (openat2 RESOLVE_BENEATH), statx of an fd (device, mode, size), linking an
// existing file's fd under a new name, and FIEMAP (which physical extents a file occupies: tests and
// docs/containers-storage.md use it to show that a reflinked object shares its blocks with the source).
// FICLONE itself lives in lib/linux/fs.ts (ficlone).
import { KernelError } from "../errors.ts";
import { Errno, errno, errnoName, openLibc } from "./libc.ts";
import { AT_FDCWD, O_CLOEXEC, type PathArg, pathBytes, pathLabel } from "./fs.ts";

const SYS_OPENAT2 = 437n; // same number on x86_64 and the generic (aarch64) table
const RESOLVE_NO_MAGICLINKS = 0x02n;
const RESOLVE_BENEATH = 0x08n;
const AT_EMPTY_PATH = 0x1000;
const AT_SYMLINK_FOLLOW = 0x400;
const STATX_BASIC_STATS = 0x7ff;
/** FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap) */
const FS_IOC_FIEMAP = 0xC020660Bn;
const FIEMAP_FLAG_SYNC = 1;
const FIEMAP_EXTENT_LAST = 0x1;
export const FIEMAP_EXTENT_SHARED = 0x2000;

const symbols = {
  sys_openat2: { name: "syscall", parameters: ["i64", "i32", "buffer", "buffer", "usize"], result: "i64" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  ioctl_buf: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
} as const;

const POSIX_FADV_WILLNEED = 3;

/**
 * Asks the kernel to start reading the whole file into the page cache now (POSIX_FADV_WILLNEED):
 * reads of many files then overlap. Only a hint: failures are ignored.
 */
export function willNeed(fd: number): void {
  lib().posix_fadvise(fd, 0n, 0n, POSIX_FADV_WILLNEED);
}

/** Size of the file at `path` (following symlinks), or null when there is none; never throws. */
export function pathSize(path: PathArg, buf = new Uint8Array(256)): number | null {
  if (lib().statx(AT_FDCWD, pathBytes(path), 0, STATX_BASIC_STATS, buf) < 0) return null;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if ((v.getUint16(28, true) & S_IFMT) !== S_IFREG) return null;
  return Number(v.getBigUint64(40, true));
}

function lib() {
  return openLibc(symbols);
}

function fail(syscall: string, context: string, e = errno()): never {
  throw new KernelError(syscall, e, errnoName(e), undefined, [context]);
}

/**
 * openat2(dirFd, path, flags) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: the path (and every
 * symlink on it) must stay inside the directory; `..` out of it, absolute symlinks and /proc magic
 * links fail with EXDEV/ELOOP. O_CLOEXEC is added. Returns the fd or throws KernelError.
 */
export function openBeneath(dirFd: number, path: PathArg, flags: number): number {
  const how = new Uint8Array(24);
  const v = new DataView(how.buffer);
  v.setBigUint64(0, BigInt(flags | O_CLOEXEC), true);
  v.setBigUint64(16, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, true);
  const p = pathBytes(path);
  for (;;) {
    const fd = Number(lib().sys_openat2(SYS_OPENAT2, dirFd, p, how, 24n));
    if (fd >= 0) return fd;
    const e = errno();
    if (e === Errno.EINTR || e === Errno.EAGAIN) continue;
    fail("openat2", pathLabel(path), e);
  }
}

export interface FileStat {
  /** st_dev as "major:minor". */
  dev: string;
  ino?: bigint;
  mode: number;
  nlink: number;
  uid: number;
  size: number;
}

const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;

/** statx of an open fd (architecture-independent layout). */
export function statFd(fd: number, buf = new Uint8Array(256)): FileStat {
  if (lib().statx(fd, new Uint8Array(1), AT_EMPTY_PATH, STATX_BASIC_STATS, buf) < 0) {
    fail("statx", `fd ${fd}`);
  }
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    nlink: v.getUint32(16, true),
    uid: v.getUint32(20, true),
    mode: v.getUint16(28, true),
    ino: v.getBigUint64(32, true),
    size: Number(v.getBigUint64(40, true)),
    dev: `${v.getUint32(136, true)}:${v.getUint32(140, true)}`,
  };
}

export function isRegular(st: FileStat): boolean {
  return (st.mode & S_IFMT) === S_IFREG;
}

/**
 * Gives the (named) file open as `fd` one more name, `destPath` (a hard link, via /proc/self/fd/N,
 * which needs no CAP_DAC_READ_SEARCH). Returns false when the name exists already.
 */
export function linkFdAt(fd: number, destDirFd: number, destPath: PathArg): boolean {
  const src = pathBytes(`/proc/self/fd/${fd}`);
  if (lib().linkat(AT_FDCWD, src, destDirFd, pathBytes(destPath), AT_SYMLINK_FOLLOW) >= 0) return true;
  const e = errno();
  if (e === Errno.EEXIST) return false;
  fail("linkat", pathLabel(destPath), e);
}

export interface Extent {
  logical: number;
  physical: number;
  length: number;
  flags: number;
}

/** The file's extents (FS_IOC_FIEMAP with FIEMAP_FLAG_SYNC), in logical order. */
export function fileExtents(fd: number): Extent[] {
  const out: Extent[] = [];
  const PER_CALL = 256;
  const buf = new Uint8Array(32 + 56 * PER_CALL);
  const v = new DataView(buf.buffer);
  let start = 0n;
  for (;;) {
    buf.fill(0);
    v.setBigUint64(0, start, true);
    v.setBigUint64(8, 0xffffffffffffffffn, true);
    v.setUint32(16, FIEMAP_FLAG_SYNC, true);
    v.setUint32(24, PER_CALL, true);
    if (lib().ioctl_buf(fd, FS_IOC_FIEMAP, buf) < 0) fail("ioctl(FS_IOC_FIEMAP)", `fd ${fd}`);
    const n = v.getUint32(20, true);
    if (n === 0) return out;
    let last = false;
    for (let i = 0; i < n; i++) {
      const o = 32 + 56 * i;
      const e = {
        logical: Number(v.getBigUint64(o, true)),
        physical: Number(v.getBigUint64(o + 8, true)),
        length: Number(v.getBigUint64(o + 16, true)),
        flags: v.getUint32(o + 40, true),
      };
      out.push(e);
      if (e.flags & FIEMAP_EXTENT_LAST) last = true;
    }
    if (last) return out;
    const end = out[out.length - 1];
    start = BigInt(end.logical + end.length);
  }
}
