// Stream sockets handed over as raw descriptors (systemd socket activation: LISTEN_FDS/LISTEN_PID,
// the first one is fd 3), which Deno cannot adopt: accept, read and write through FFI. Calls that
// wait run on FFI worker threads (`nonblocking`) so the event loop keeps running; sends never wait
// in the kernel (MSG_DONTWAIT) and wait for room with poll(2) on such a thread (docs/varlink.md#slow-readers).
import { KernelError } from "../errors.ts";
import {
  AF_UNIX,
  Errno,
  F_SETFD,
  FD_CLOEXEC,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  POLLERR,
  POLLHUP,
  POLLNVAL,
  POLLOUT,
  SHUT_RDWR,
  SO_ACCEPTCONN,
  SO_TYPE,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  SOL_SOCKET,
} from "./constants.ts";
import { cstr, errno, errnoName, openLibc } from "./libc.ts";
import { receiveMessage, trySendMessage } from "./socket.ts";

const symbols = {
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32", nonblocking: true },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  pollWait: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
} as const;
// errno of a `nonblocking` call belongs to the worker thread that ran it and cannot be read here:
// failed reads are retried a few times, then reported without an errno.

function libc() {
  return openLibc(symbols);
}

/** How long a send may make no progress (the peer reads nothing) before the connection is given up. */
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;

/** Bytes handed to one send(2): a large reply is written in pieces, none copied. */
const SEND_PIECE = 1 << 20;

/**
 * Sends that failed in a row although poll(2) said there was room: a real error (not EAGAIN), which
 * is then reported with its errno.
 */
const FAILED_WHILE_WRITABLE = 3;

export interface SendOptions {
  /** Descriptors passed with the first byte (SCM_RIGHTS). */
  fds?: number[];
  /** Give up when no byte could be sent for this long (default DEFAULT_STALL_TIMEOUT_MS). */
  stallTimeoutMs?: number;
}

function sockopt(fd: number, opt: number): number | null {
  const val = new Uint8Array(4);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 4, true);
  if (libc().getsockopt(fd, SOL_SOCKET, opt, val, len) < 0) return null;
  return new DataView(val.buffer).getInt32(0, true);
}

/** What a passed descriptor is: a listening stream socket, a connected one, or neither. */
export function streamSocketKind(fd: number): "listening" | "connected" | null {
  if (sockopt(fd, SO_TYPE) !== SOCK_STREAM) return null;
  return sockopt(fd, SO_ACCEPTCONN) === 1 ? "listening" : "connected";
}

/** struct pollfd for one descriptor: fd i32, events i16, revents i16. */
function pollFd(fd: number, events: number): Uint8Array<ArrayBuffer> {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, events, true);
  return pfd;
}

function revents(pfd: Uint8Array<ArrayBuffer>): number {
  return new DataView(pfd.buffer).getInt16(6, true);
}

/** A connected stream socket given as a descriptor. */
export class FdStream {
  #closed = false;
  constructor(readonly fd: number) {}

  /**
   * The next bytes and the descriptors that came with them (SCM_RIGHTS, close-on-exec); null at the
   * end of the stream.
   */
  async recv(maxLen = 64 * 1024): Promise<{ data: Uint8Array; fds: number[] } | null> {
    if (this.#closed) return null;
    let m;
    try {
      m = await receiveMessage(this.fd, maxLen, 8);
    } catch (e) {
      if (this.#closed) return null;
      throw e;
    }
    if (m.data.length === 0) {
      for (const f of m.fds) libc().close(f);
      return null;
    }
    return { data: m.data, fds: m.fds };
  }

  /** Up to `buf.length` bytes; null at end of stream. */
  async read(buf: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    for (let attempt = 0;; attempt++) {
      const n = Number(await libc().read(this.fd, buf, BigInt(buf.length)));
      if (n > 0) return n;
      if (n === 0) return null;
      if (this.#closed) return null;
      if (attempt >= 3) throw new KernelError("read", 0, "failed", `read from socket fd ${this.fd} failed`);
    }
  }

  /**
   * Writes all of `data` (`fds` go with its first byte) without ever blocking a thread in send(2):
   * while the socket buffer is full it waits for room (poll, on an FFI worker thread). A peer that
   * reads nothing for `stallTimeoutMs`, or is gone (EPIPE, ECONNRESET, POLLHUP/POLLERR), fails the
   * send with a KernelError (ETIMEDOUT for the stall), and the connection is shut down in both
   * directions (the descriptor stays open until `close`). SIGPIPE is never raised (MSG_NOSIGNAL).
   */
  async sendAll(data: Uint8Array, opts: SendOptions = {}): Promise<void> {
    const stallMs = opts.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    let fds = opts.fds ?? [];
    let off = 0;
    let deadline = performance.now() + stallMs;
    let failed = 0;
    while (off < data.length) {
      if (this.#closed) throw new KernelError("send", Errno.EPIPE, "EPIPE", `socket fd ${this.fd} is closed`);
      const n = this.#trySend(data.subarray(off, off + SEND_PIECE), fds);
      if (n > 0) {
        off += n;
        fds = [];
        deadline = performance.now() + stallMs;
        failed = 0;
        continue;
      }
      // Whatever errno says (it can be misread), poll decides: room, the peer gone, or the wait.
      const left = deadline - performance.now();
      if (left <= 0) {
        this.shutdown();
        const what = `socket fd ${this.fd}: the peer read nothing for ${(stallMs / 1000).toFixed(1)} s`;
        throw new KernelError("send", Errno.ETIMEDOUT, "ETIMEDOUT", what);
      }
      const ready = await this.#waitWritable(left);
      if (ready === "gone" || (ready === "writable" && ++failed >= FAILED_WHILE_WRITABLE)) {
        this.shutdown();
        const e = ready === "gone" || n === 0 ? Errno.EPIPE : -n;
        throw new KernelError(
          "send",
          e,
          errnoName(e),
          `send to socket fd ${this.fd} failed: ${errnoName(e)}`,
        );
      }
    }
  }

  /** One non-blocking send: bytes sent, or minus errno (EAGAIN: the buffer is full; 0: nothing sent). */
  #trySend(piece: Uint8Array, fds: number[]): number {
    const flags = MSG_DONTWAIT | MSG_NOSIGNAL;
    if (fds.length > 0) return trySendMessage(this.fd, piece, fds, flags);
    const n = Number(libc().send(this.fd, piece, BigInt(piece.length), flags));
    if (n >= 0) return n;
    const e = errno();
    return -(e > 0 ? e : Errno.EIO);
  }

  /**
   * Waits up to `ms` for room to write (poll on a worker thread; `shutdown` wakes it): "writable",
   * "gone" (the peer hung up, an error is pending, or the descriptor is closed) or "timeout".
   */
  async #waitWritable(ms: number): Promise<"writable" | "gone" | "timeout"> {
    const pfd = pollFd(this.fd, POLLOUT);
    const n = await libc().pollWait(pfd, 1n, Math.max(1, Math.min(Math.ceil(ms), 0x7fffffff)));
    if (this.#closed) return "gone";
    if (n <= 0) return "timeout"; // a timeout, or EINTR: the caller's deadline decides
    const r = revents(pfd);
    if (r & (POLLHUP | POLLERR | POLLNVAL)) return "gone";
    return r & POLLOUT ? "writable" : "timeout";
  }

  /**
   * Whether the peer has closed its end completely (POLLHUP, without waiting). A peer that only shut
   * down its writing side (and still reads replies) has not hung up.
   */
  hungUp(): boolean {
    if (this.#closed) return true;
    const pfd = pollFd(this.fd, 0); // events 0: POLLHUP/POLLERR only
    if (libc().poll(pfd, 1n, 0) <= 0) return false;
    return (revents(pfd) & (POLLHUP | POLLERR)) !== 0;
  }

  /**
   * shutdown(SHUT_RDWR): the peer sees the end of the stream, and a receive or a wait for room
   * pending here returns. The descriptor stays open (and its number taken) until `close`.
   */
  shutdown(): void {
    if (!this.#closed) libc().shutdown(this.fd, SHUT_RDWR);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().shutdown(this.fd, SHUT_RDWR);
    libc().close(this.fd);
  }
}

/** A listening stream socket given as a descriptor. */
export class FdListener {
  #closed = false;
  constructor(readonly fd: number) {}

  /** The next connection; null once closed. */
  async accept(): Promise<FdStream | null> {
    for (;;) {
      if (this.#closed) return null;
      const c = await libc().accept4(this.fd, null, null, SOCK_CLOEXEC);
      if (c >= 0) return new FdStream(c);
      if (this.#closed) return null;
      await new Promise((r) => setTimeout(r, 10)); // EINTR/ECONNABORTED: try again
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().shutdown(this.fd, SHUT_RDWR);
    libc().close(this.fd);
  }
}

/**
 * The descriptors of systemd socket activation for this process (LISTEN_PID = our pid), consumed:
 * the variables are removed so children do not see them.
 */
export function activationFds(
  env: { get(k: string): string | undefined; delete(k: string): void } = Deno.env,
): number[] {
  const pid = env.get("LISTEN_PID");
  const n = env.get("LISTEN_FDS");
  if (pid === undefined || n === undefined) return [];
  if (Number(pid) !== Deno.pid || !/^\d+$/.test(n)) return [];
  for (const k of ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) env.delete(k);
  const fds: number[] = [];
  for (let i = 0; i < Number(n); i++) {
    fds.push(3 + i);
    libc().fcntl(3 + i, F_SETFD, FD_CLOEXEC);
  }
  return fds;
}

/** A listening unix stream socket at `path` (close-on-exec), as a descriptor. */
export function listenUnix(path: string, backlog = 64): number {
  const name = cstr(path);
  if (name.length > 108) {
    throw new KernelError("bind", Errno.ENAMETOOLONG, "ENAMETOOLONG", `socket path too long: ${path}`);
  }
  const fd = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const e = errno();
    throw new KernelError("socket", e, errnoName(e));
  }
  const addr = new Uint8Array(110);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(name, 2);
  if (libc().bind(fd, addr, 2 + name.length) < 0 || libc().listen(fd, backlog) < 0) {
    const e = errno();
    libc().close(fd);
    throw new KernelError("bind", e, errnoName(e), `listening on ${path}: ${errnoName(e)}`);
  }
  return fd;
}
