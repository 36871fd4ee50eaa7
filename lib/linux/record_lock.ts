// Whole-file fcntl record locks, the kind containers/storage guards its stores with (it takes classic
// POSIX locks with F_SETLKW on the whole file). We take open-file-description locks (F_OFD_*): they
// conflict with classic locks exactly as classic locks conflict with each other, but belong to the
// open file rather than to the process, so closing another descriptor of the same file elsewhere in
// this process cannot drop them. Why and where: docs/containers-storage.md ("Locking").
import { Errno, errno, errnoName, openLibc } from "./libc.ts";
import { KernelError } from "../errors.ts";
import {
  F_OFD_GETLK,
  F_OFD_SETLK,
  F_OFD_SETLKW,
  F_RDLCK,
  F_UNLCK,
  F_WRLCK,
  FLOCK_LEN_OFFSET,
  FLOCK_PID_OFFSET,
  FLOCK_SIZE,
  FLOCK_START_OFFSET,
  FLOCK_TYPE_OFFSET,
  FLOCK_WHENCE_OFFSET,
  SEEK_SET,
} from "./constants.ts";

const symbols = {
  fcntl: { parameters: ["i32", "i32", "buffer"], result: "i32" },
} as const;

/** The same call on a worker thread (F_OFD_SETLKW waits there, the event loop stays free). */
const asyncSymbols = {
  fcntl: { parameters: ["i32", "i32", "buffer"], result: "i32", nonblocking: true },
} as const;

/** `read` = shared (F_RDLCK), `write` = exclusive (F_WRLCK). */
export type RecordLockKind = "read" | "write";

/** A struct flock covering the whole file (start 0, length 0 = to the end, however it grows). */
function flockStruct(type: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(FLOCK_SIZE);
  const v = new DataView(b.buffer);
  v.setInt16(FLOCK_TYPE_OFFSET, type, true);
  v.setInt16(FLOCK_WHENCE_OFFSET, SEEK_SET, true);
  v.setBigInt64(FLOCK_START_OFFSET, 0n, true);
  v.setBigInt64(FLOCK_LEN_OFFSET, 0n, true);
  v.setInt32(FLOCK_PID_OFFSET, 0, true); // must be 0 for OFD locks
  return b;
}

function lockType(kind: RecordLockKind): number {
  return kind === "read" ? F_RDLCK : F_WRLCK;
}

function fail(cmd: string, fd: number, e: number): never {
  throw new KernelError("fcntl", e, errnoName(e), undefined, [`${cmd} on fd ${fd}`]);
}

/**
 * Takes (or converts to) a `kind` lock on the whole file open as `fd` without waiting. Returns false
 * when another open file (or process) holds a conflicting lock.
 */
export function tryRecordLock(fd: number, kind: RecordLockKind): boolean {
  const fl = flockStruct(lockType(kind));
  for (;;) {
    if (openLibc(symbols).fcntl(fd, F_OFD_SETLK, fl) >= 0) return true;
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.EAGAIN || e === Errno.EACCES) return false;
    fail("F_OFD_SETLK", fd, e);
  }
}

/**
 * Waits (F_OFD_SETLKW, in the kernel's queue, on a worker thread) until the `kind` lock is ours.
 * The worker thread's errno is not readable here, so a failed wait is followed by a non-blocking
 * attempt, which either takes the lock or reports the real error.
 */
export async function recordLockWait(fd: number, kind: RecordLockKind): Promise<void> {
  const fl = flockStruct(lockType(kind));
  for (;;) {
    const r = await openLibc(asyncSymbols).fcntl(fd, F_OFD_SETLKW, fl);
    if (r >= 0) return;
    if (tryRecordLock(fd, kind)) return;
  }
}

/** Drops this open file's lock on the whole file (closing the descriptor does it too). */
export function recordUnlock(fd: number): void {
  const fl = flockStruct(F_UNLCK);
  for (;;) {
    if (openLibc(symbols).fcntl(fd, F_OFD_SETLK, fl) >= 0) return;
    const e = errno();
    if (e !== Errno.EINTR) fail("F_OFD_SETLK F_UNLCK", fd, e);
  }
}

/** A lock that stands in the way: its kind and the holder's pid (-1 when held as an OFD lock). */
export interface RecordLockHolder {
  kind: RecordLockKind;
  pid: number;
}

/** Who, if anyone, holds a lock that conflicts with a `kind` lock on the file open as `fd`. */
export function recordLockHolder(fd: number, kind: RecordLockKind): RecordLockHolder | null {
  const fl = flockStruct(lockType(kind));
  for (;;) {
    if (openLibc(symbols).fcntl(fd, F_OFD_GETLK, fl) >= 0) break;
    const e = errno();
    if (e !== Errno.EINTR) fail("F_OFD_GETLK", fd, e);
  }
  const v = new DataView(fl.buffer);
  const type = v.getInt16(FLOCK_TYPE_OFFSET, true);
  if (type === F_UNLCK) return null;
  return { kind: type === F_RDLCK ? "read" : "write", pid: v.getInt32(FLOCK_PID_OFFSET, true) };
}
