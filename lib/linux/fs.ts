// Raw file-descriptor primitives through libc (FFI) for what Deno's file API cannot do: O_TMPFILE,
// linkat of /proc/self/fd/N, flock, syncfs, FICLONE, renameat2(RENAME_NOREPLACE), ioctls on plain fds.
// Every failure is a KernelError carrying errno and the path or fd it concerns. Paths are either
// normal JS strings (encoded as UTF-8, as Deno does) or raw bytes (a byte string via bstrToBytes).
// 64-bit FFI values: Deno wants bigint in its typings and always returns bigint for 64-bit results.
import { KernelError } from "../errors.ts";
import { check, cstr, cstrBytes, Errno, errno, errnoName, openLibc } from "./libc.ts";
import {
  AT_FDCWD,
  AT_SYMLINK_FOLLOW,
  FICLONE,
  LOCK_EX,
  LOCK_NB,
  LOCK_SH,
  LOCK_UN,
  O_CLOEXEC,
  O_DIRECTORY,
  O_RDONLY,
  O_RDWR,
  O_TMPFILE,
  RENAME_NOREPLACE,
  ST_RDONLY,
  W_OK,
} from "./constants.ts";
export {
  AT_FDCWD,
  O_APPEND,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOCTTY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
  O_RDONLY,
  O_RDWR,
  O_TMPFILE,
  O_TRUNC,
  O_WRONLY,
} from "./constants.ts";

/** A path as a Unicode string (UTF-8 encoded) or raw bytes. */
export type PathArg = string | Uint8Array;

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  preadv2: { parameters: ["i32", "buffer", "i32", "i64", "i32"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  fsync: { parameters: ["i32"], result: "i32" },
  syncfs: { parameters: ["i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  statvfs: { parameters: ["buffer", "buffer"], result: "i32" },
  access: { parameters: ["buffer", "i32"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  renameat2: { parameters: ["i32", "buffer", "i32", "buffer", "u32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
} as const;

/** A second table whose blocking calls run on a worker thread (they return Promises). */
const asyncSymbols = {
  flock: { parameters: ["i32", "i32"], result: "i32", nonblocking: true },
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  syncfs: { parameters: ["i32"], result: "i32", nonblocking: true },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32", nonblocking: true },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32", nonblocking: true },
} as const;

function libc() {
  return openLibc(symbols);
}

/** NUL-terminated bytes of a path argument. */
export function pathBytes(p: PathArg): Uint8Array<ArrayBuffer> {
  return typeof p === "string" ? cstr(p) : cstrBytes(p);
}

/** Human-readable form of a path argument for error context. */
export function pathLabel(p: PathArg): string {
  return typeof p === "string" ? p : new TextDecoder().decode(p);
}

function fail(syscall: string, context: string, e = errno()): never {
  throw new KernelError(syscall, e, errnoName(e), undefined, [context]);
}

/** Retries a call while it fails with EINTR; returns the first other result. */
function retryIntr<T extends number | bigint>(call: () => T): T {
  for (;;) {
    const r = call();
    if ((typeof r === "bigint" ? r >= 0n : r >= 0) || errno() !== Errno.EINTR) return r;
  }
}

// ---- opening ---------------------------------------------------------------------------------------

/** open(2); O_CLOEXEC is always added. */
export function openPath(path: PathArg, flags: number, mode = 0): number {
  const p = pathBytes(path);
  const fd = retryIntr(() => libc().open(p, flags | O_CLOEXEC, mode));
  if (fd < 0) fail("open", pathLabel(path));
  return fd;
}

/** openat(2) relative to a directory fd; O_CLOEXEC is always added. */
export function openAt(dirFd: number, path: PathArg, flags: number, mode = 0): number {
  const p = pathBytes(path);
  const fd = retryIntr(() => libc().openat(dirFd, p, flags | O_CLOEXEC, mode));
  if (fd < 0) fail("openat", pathLabel(path));
  return fd;
}

/** Opens a directory read-only (for flock, syncfs, fstatvfs, openat). */
export function openDir(path: PathArg): number {
  return openPath(path, O_RDONLY | O_DIRECTORY);
}

/** errnos by which open(O_TMPFILE) says "this filesystem cannot" rather than "this failed". */
function tmpfileUnsupported(e: number): boolean {
  return e === Errno.EOPNOTSUPP || e === Errno.EISDIR || e === Errno.EINVAL;
}

/**
 * An unnamed, writable file in `dirPath` (O_TMPFILE|O_RDWR), or null when the filesystem does not
 * support O_TMPFILE.
 */
export function openTmpfile(dirPath: PathArg, mode = 0o644): number | null {
  const p = pathBytes(dirPath);
  const fd = retryIntr(() => libc().open(p, O_TMPFILE | O_RDWR | O_CLOEXEC, mode));
  if (fd >= 0) return fd;
  const e = errno();
  if (tmpfileUnsupported(e)) return null;
  fail("open(O_TMPFILE)", pathLabel(dirPath), e);
}

/**
 * openTmpfile on a worker thread: on a busy ext4 the orphan-list lock makes O_TMPFILE take a
 * millisecond or more, during which the calling thread goes on (receiving the next object).
 */
export async function openTmpfileAsync(dirPath: PathArg, mode = 0o644): Promise<number | null> {
  const p = pathBytes(dirPath);
  const fd = await openLibc(asyncSymbols).open(p, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  // errno belongs to the worker thread: a synchronous retry reports the real error (or succeeds).
  return fd >= 0 ? fd : openTmpfile(dirPath, mode);
}

/** Like openTmpfile, in the directory open as `dirFd`. */
export function openTmpfileAt(dirFd: number, mode = 0o644): number | null {
  const fd = retryIntr(() => libc().openat(dirFd, cstr("."), O_TMPFILE | O_RDWR | O_CLOEXEC, mode));
  if (fd >= 0) return fd;
  const e = errno();
  if (tmpfileUnsupported(e)) return null;
  fail("openat(O_TMPFILE)", `directory fd ${dirFd}`, e);
}

/** A new read-only fd for the same file (via /proc/self/fd/N): also works for O_TMPFILE files. */
export function reopenReadOnly(fd: number): number {
  return openPath(`/proc/self/fd/${fd}`, O_RDONLY);
}

export function closeFd(fd: number): void {
  // No EINTR retry: on Linux the fd is released even when close reports EINTR.
  if (libc().close(fd) < 0) {
    const e = errno();
    if (e !== Errno.EINTR) fail("close", `fd ${fd}`, e);
  }
}

// ---- reading and writing ---------------------------------------------------------------------------

/** Writes all of `data` (looping over short writes). */
export function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) {
    const chunk = off === 0 ? data : data.subarray(off);
    const n = retryIntr(() => libc().write(fd, chunk, BigInt(chunk.length)));
    if (n < 0n) fail("write", `fd ${fd}`);
    off += Number(n);
  }
}

/** read(2) into `buf`; returns the byte count (0 at end of file). */
export function read(fd: number, buf: Uint8Array): number {
  const n = retryIntr(() => libc().read(fd, buf, BigInt(buf.length)));
  if (n < 0n) fail("read", `fd ${fd}`);
  return Number(n);
}

const RWF_NOWAIT = 0x8;
let noWaitUnsupported = false;
const iov = new BigUint64Array(2);
const iovBytes = new Uint8Array(iov.buffer);

/**
 * pread of `buf` at `offset` only from the page cache (preadv2 with RWF_NOWAIT): the byte count, or
 * null when the data is not all cached (EAGAIN), or the kernel or filesystem cannot say. A caller with
 * many small files reads the cached ones at once and sends only the rest to the I/O threads.
 * `buf` must live off the V8 heap (≥ 4 KiB), as its address is passed.
 */
export function preadCached(fd: number, buf: Uint8Array, offset: number): number | null {
  if (noWaitUnsupported || buf.length === 0) return null;
  const p = Deno.UnsafePointer.of(buf);
  if (p === null) return null;
  iov[0] = BigInt(Deno.UnsafePointer.value(p));
  iov[1] = BigInt(buf.length);
  const n = libc().preadv2(fd, iovBytes, 1, BigInt(offset), RWF_NOWAIT);
  if (n >= 0n) return Number(n);
  const e = errno();
  if (e === Errno.EOPNOTSUPP || e === Errno.EINVAL || e === Errno.ENOSYS) noWaitUnsupported = true;
  return null;
}

/** pread(2) into `buf` at `offset` (the fd position is unchanged); returns the byte count. */
export function pread(fd: number, buf: Uint8Array, offset: number): number {
  const n = retryIntr(() => libc().pread64(fd, buf, BigInt(buf.length), BigInt(offset)));
  if (n < 0n) fail("pread", `fd ${fd}`);
  return Number(n);
}

/** pread(2) on a worker thread, so a caller can overlap reading and computing. */
export async function preadAsync(fd: number, buf: Uint8Array, offset: number): Promise<number> {
  const n = await openLibc(asyncSymbols).pread64(fd, buf, BigInt(buf.length), BigInt(offset));
  if (n >= 0n) return Number(n);
  // errno belongs to the worker thread, not ours: a synchronous retry reports the real error (or
  // succeeds, e.g. after EINTR).
  return pread(fd, buf, offset);
}

export function fsync(fd: number): void {
  if (retryIntr(() => libc().fsync(fd)) < 0) fail("fsync", `fd ${fd}`);
}

/** Flushes the whole filesystem holding `fd`. */
export function syncfs(fd: number): void {
  if (libc().syncfs(fd) < 0) fail("syncfs", `fd ${fd}`);
}

/**
 * syncfs(2) on a worker thread: flushing a filesystem takes up to seconds, during which the calling
 * thread goes on with other work (the next layer of a pull).
 */
export async function syncfsAsync(fd: number): Promise<void> {
  if ((await openLibc(asyncSymbols).syncfs(fd)) >= 0) return;
  // errno belongs to the worker thread: a synchronous retry reports the real error (or succeeds).
  syncfs(fd);
}

/** Size in bytes of the open file (fstat st_size). */
export function fstatSize(fd: number): number {
  // struct stat on x86_64: st_size is an off_t at byte 48 (144-byte struct).
  const st = new Uint8Array(256);
  if (libc().fstat(fd, st) < 0) fail("fstat", `fd ${fd}`);
  return Number(new DataView(st.buffer).getBigInt64(48, true));
}

// ---- locking ---------------------------------------------------------------------------------------

export type LockMode = "sh" | "ex" | "un";

function lockOp(mode: LockMode, nonBlocking: boolean): number {
  const op = mode === "sh" ? LOCK_SH : mode === "ex" ? LOCK_EX : LOCK_UN;
  return nonBlocking ? op | LOCK_NB : op;
}

/**
 * flock(2). Blocking by default (this thread waits). With `nonBlocking`, returns false instead of
 * waiting when another open file description holds a conflicting lock.
 */
export function flock(fd: number, mode: LockMode, opts: { nonBlocking?: boolean } = {}): boolean {
  const op = lockOp(mode, opts.nonBlocking ?? false);
  if (retryIntr(() => libc().flock(fd, op)) >= 0) return true;
  const e = errno();
  if (e === Errno.EAGAIN && opts.nonBlocking) return false;
  fail("flock", `fd ${fd}`, e);
}

/** Blocking flock that waits on a worker thread, leaving the event loop free. */
export async function flockAsync(fd: number, mode: "sh" | "ex"): Promise<void> {
  const r = await openLibc(asyncSymbols).flock(fd, lockOp(mode, false));
  if (r >= 0) return;
  // errno of the worker thread is lost; a non-blocking retry tells whether the lock is now ours.
  if (flock(fd, mode, { nonBlocking: true })) return;
  return flockAsync(fd, mode);
}

// ---- names -------------------------------------------------------------------------------------------

/**
 * Gives the unnamed file open as `fd` (O_TMPFILE) the name `destPath`. Returns false when the name
 * already exists (nothing is replaced).
 */
export function linkTmpfile(fd: number, destPath: PathArg): boolean {
  return linkTmpfileAt(fd, AT_FDCWD, destPath);
}

/** linkTmpfile on a worker thread (linkat of an O_TMPFILE takes the orphan-list lock too). */
export async function linkTmpfileAsync(fd: number, destPath: PathArg): Promise<boolean> {
  const src = cstr(`/proc/self/fd/${fd}`);
  const dst = pathBytes(destPath);
  if ((await openLibc(asyncSymbols).linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW)) >= 0) {
    return true;
  }
  // errno belongs to the worker thread: the synchronous call says EEXIST (false) or the real error.
  return linkTmpfile(fd, destPath);
}

/** linkTmpfile with `destPath` relative to the directory fd `dirFd`. */
export function linkTmpfileAt(fd: number, dirFd: number, destPath: PathArg): boolean {
  const src = cstr(`/proc/self/fd/${fd}`);
  const dst = pathBytes(destPath);
  if (libc().linkat(AT_FDCWD, src, dirFd, dst, AT_SYMLINK_FOLLOW) >= 0) return true;
  const e = errno();
  if (e === Errno.EEXIST) return false;
  fail("linkat", pathLabel(destPath), e);
}

/**
 * Renames `from` to `to` unless `to` exists (then returns false and leaves both). Filesystems without
 * RENAME_NOREPLACE get link + unlink, which gives the same no-replace guarantee.
 */
export function renameNoReplace(from: PathArg, to: PathArg): boolean {
  const f = pathBytes(from);
  const t = pathBytes(to);
  if (libc().renameat2(AT_FDCWD, f, AT_FDCWD, t, RENAME_NOREPLACE) >= 0) return true;
  const e = errno();
  if (e === Errno.EEXIST) return false;
  if (e !== Errno.EINVAL && e !== Errno.ENOSYS) {
    fail("renameat2", `${pathLabel(from)} -> ${pathLabel(to)}`, e);
  }
  if (libc().linkat(AT_FDCWD, f, AT_FDCWD, t, 0) < 0) {
    const le = errno();
    if (le === Errno.EEXIST) return false;
    fail("link", `${pathLabel(from)} -> ${pathLabel(to)}`, le);
  }
  if (libc().unlinkat(AT_FDCWD, f, 0) < 0) fail("unlink", pathLabel(from));
  return true;
}

// ---- filesystem properties ---------------------------------------------------------------------------

/** True when `path` is on a filesystem mounted read-write and this process may write to it. */
export function isWritableFs(path: PathArg): boolean {
  const p = pathBytes(path);
  // struct statvfs on 64-bit Linux: f_flag is the 10th unsigned long, at byte 72.
  const st = new Uint8Array(128);
  check("statvfs", libc().statvfs(p, st), pathLabel(path));
  const flags = new DataView(st.buffer).getBigUint64(72, true);
  if ((flags & BigInt(ST_RDONLY)) !== 0n) return false;
  return libc().access(p, W_OK) === 0;
}

/** Reflinks the whole content of `srcFd` into `dstFd` (FICLONE). Throws KernelError (EOPNOTSUPP, EXDEV…). */
export function ficlone(dstFd: number, srcFd: number): void {
  if (libc().ioctl(dstFd, FICLONE, BigInt(srcFd)) < 0) fail("ioctl(FICLONE)", `fd ${srcFd} -> fd ${dstFd}`);
}
