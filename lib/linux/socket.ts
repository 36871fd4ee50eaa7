// Unix socket pairs with file-descriptor passing (SCM_RIGHTS) through FFI, for talking to helper
// processes such as `skopeo experimental-image-proxy`. Receiving runs on an FFI worker thread
// (`nonblocking`) so the event loop never blocks on the socket.
import { KernelError } from "../errors.ts";
import { check, errno, errnoName, openLibc } from "./libc.ts";
import {
  AF_UNIX,
  Errno,
  F_GETFD,
  F_SETFD,
  F_SETPIPE_SZ,
  FD_CLOEXEC,
  MSG_CMSG_CLOEXEC,
  MSG_CTRUNC,
  MSG_TRUNC,
  SCM_RIGHTS,
  SHUT_RDWR,
  SOCK_CLOEXEC,
  SOCK_SEQPACKET,
  SOL_SOCKET,
} from "./constants.ts";
export { SOCK_SEQPACKET } from "./constants.ts";

const symbols = {
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize", nonblocking: true },
  close: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
} as const;

function libc() {
  return openLibc(symbols);
}

// struct msghdr (LP64): name ptr, namelen u32 (+pad), iov ptr, iovlen u64, control ptr,
// controllen u64, flags i32 (+pad) = 56 bytes. struct iovec: base ptr, len u64. cmsghdr: len u64,
// level i32, type i32, then data aligned to 8.
const MSGHDR_SIZE = 56;
const CMSG_HDR = 16;

function cmsgSpace(dataLen: number): number {
  return CMSG_HDR + ((dataLen + 7) & ~7);
}

function ptr(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** A connected socket pair; both ends close-on-exec (see `setInheritable`). */
export function socketPair(type = SOCK_SEQPACKET): [number, number] {
  const sv = new Int32Array(2);
  check("socketpair", libc().socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, new Uint8Array(sv.buffer)));
  return [sv[0], sv[1]];
}

/** Clears or sets FD_CLOEXEC: an inheritable descriptor survives into child processes. */
export function setInheritable(fd: number, inheritable: boolean): void {
  const flags = check("fcntl", libc().fcntl(fd, F_GETFD, 0));
  check("fcntl", libc().fcntl(fd, F_SETFD, inheritable ? flags & ~FD_CLOEXEC : flags | FD_CLOEXEC));
}

/** Grows a pipe's buffer (fewer wake-ups for bulk data); failures are harmless and ignored. */
export function setPipeSize(fd: number, bytes: number): void {
  libc().fcntl(fd, F_SETPIPE_SZ, bytes);
}

export function closeFd(fd: number): void {
  libc().close(fd);
}

/** shutdown(SHUT_RDWR): wakes a receive blocked on the socket. */
export function shutdownSocket(fd: number): void {
  libc().shutdown(fd, SHUT_RDWR);
}

/** Sends one message (one packet on SOCK_SEQPACKET), optionally passing file descriptors. */
export function sendMessage(fd: number, data: Uint8Array, fds: number[] = []): void {
  const payload = new Uint8Array(data.length);
  payload.set(data);
  const n = trySendMessage(fd, payload, fds, 0);
  if (n < 0) throw new KernelError("sendmsg", -n, errnoName(-n));
  if (n !== payload.length) {
    throw new KernelError("sendmsg", 0, "short write", "sendmsg: short write");
  }
}

/**
 * One sendmsg(2) of `data` (read in place, not copied) with `fds` passed along (SCM_RIGHTS): the
 * number of bytes sent, or minus errno. `flags` are MSG_* (MSG_DONTWAIT: fail with EAGAIN instead of
 * waiting for room). errno is read by a second FFI call and can be misread (lib/linux/libc.ts): a
 * caller decides nothing irreversible on its value alone.
 */
export function trySendMessage(fd: number, data: Uint8Array, fds: number[], flags: number): number {
  const iov = new Uint8Array(16);
  const iv = new DataView(iov.buffer);
  iv.setBigUint64(0, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data))), true);
  iv.setBigUint64(8, BigInt(data.length), true);
  const control = new Uint8Array(fds.length ? cmsgSpace(fds.length * 4) : 8);
  if (fds.length) {
    const cv = new DataView(control.buffer);
    cv.setBigUint64(0, BigInt(CMSG_HDR + fds.length * 4), true);
    cv.setInt32(8, SOL_SOCKET, true);
    cv.setInt32(12, SCM_RIGHTS, true);
    fds.forEach((f, i) => cv.setInt32(CMSG_HDR + i * 4, f, true));
  }
  const msg = new Uint8Array(MSGHDR_SIZE);
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(16, ptr(iov), true);
  mv.setBigUint64(24, 1n, true);
  if (fds.length) {
    mv.setBigUint64(32, ptr(control), true);
    mv.setBigUint64(40, BigInt(control.length), true);
  }
  const n = Number(libc().sendmsg(fd, msg, flags));
  if (n >= 0) return n;
  const e = errno();
  return -(e > 0 ? e : Errno.EIO); // a misread 0 is still a failure
}

export interface ReceivedMessage {
  data: Uint8Array;
  fds: number[];
  /** MSG_TRUNC/MSG_CTRUNC: the packet or its descriptors did not fit. */
  truncated: boolean;
}

/**
 * Receives one message and the descriptors passed with it (close-on-exec in this process). Resolves
 * with an empty `data` at end of stream (the peer closed).
 */
export async function receiveMessage(fd: number, maxLen: number, maxFds = 4): Promise<ReceivedMessage> {
  const payload = new Uint8Array(maxLen);
  const iov = new Uint8Array(16);
  const iv = new DataView(iov.buffer);
  iv.setBigUint64(0, ptr(payload), true);
  iv.setBigUint64(8, BigInt(maxLen), true);
  const control = new Uint8Array(cmsgSpace(maxFds * 4));
  const msg = new Uint8Array(MSGHDR_SIZE);
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(16, ptr(iov), true);
  mv.setBigUint64(24, 1n, true);
  mv.setBigUint64(32, ptr(control), true);
  mv.setBigUint64(40, BigInt(control.length), true);
  const n = Number(await libc().recvmsg(fd, msg, MSG_CMSG_CLOEXEC));
  if (n < 0) throw new KernelError("recvmsg", 0, "failed", "recvmsg failed");
  const flags = mv.getInt32(48, true);
  const controlLen = Number(mv.getBigUint64(40, true));
  const fds: number[] = [];
  const cv = new DataView(control.buffer);
  let off = 0;
  while (off + CMSG_HDR <= controlLen) {
    const len = Number(cv.getBigUint64(off, true));
    if (len < CMSG_HDR) break;
    if (cv.getInt32(off + 8, true) === SOL_SOCKET && cv.getInt32(off + 12, true) === SCM_RIGHTS) {
      for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) fds.push(cv.getInt32(p, true));
    }
    off += cmsgSpace(len - CMSG_HDR);
  }
  return { data: payload.slice(0, n), fds, truncated: (flags & (MSG_TRUNC | MSG_CTRUNC)) !== 0 };
}
