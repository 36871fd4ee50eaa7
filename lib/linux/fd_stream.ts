// Stream sockets handed over as raw descriptors (systemd socket activation: LISTEN_FDS/LISTEN_PID,
// the first one is fd 3), which Deno cannot adopt: accept, read and write through FFI. Blocking
// calls run on FFI worker threads (`nonblocking`) so the event loop keeps running.
import { KernelError } from "../errors.ts";
import { cstr, errno, errnoName, openLibc } from "./libc.ts";
import { receiveMessage, sendMessage } from "./socket.ts";

const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const SO_TYPE = 3;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SHUT_RDWR = 2;
const EINTR = 4;
const POLLERR = 0x008;
const POLLHUP = 0x010;

const symbols = {
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32", nonblocking: true },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
} as const;
// errno of a `nonblocking` call belongs to the worker thread that ran it and cannot be read here:
// failed reads are retried a few times, then reported without an errno.

function libc() {
  return openLibc(symbols);
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

  /** Writes `data`, passing `fds` with its first byte. */
  send(data: Uint8Array, fds: number[] = []): void {
    if (fds.length === 0) return this.write(data);
    sendMessage(this.fd, data, fds);
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

  /** Writes everything (blocking the caller's thread only as long as the socket buffer is full). */
  write(data: Uint8Array): void {
    let off = 0;
    while (off < data.length) {
      const chunk = off === 0 ? data : data.slice(off);
      const n = Number(libc().write(this.fd, chunk, BigInt(chunk.length)));
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        throw new KernelError("write", e, errnoName(e), `write to socket fd ${this.fd} failed`);
      }
      off += n;
    }
  }

  /**
   * Whether the peer has closed its end completely (POLLHUP, without waiting). A peer that only shut
   * down its writing side (and still reads replies) has not hung up.
   */
  hungUp(): boolean {
    if (this.#closed) return true;
    const pfd = new Uint8Array(8); // struct pollfd: fd i32, events i16 (0: POLLHUP/POLLERR only), revents i16
    new DataView(pfd.buffer).setInt32(0, this.fd, true);
    if (libc().poll(pfd, 1n, 0) <= 0) return false;
    return (new DataView(pfd.buffer).getInt16(6, true) & (POLLHUP | POLLERR)) !== 0;
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
    libc().fcntl(3 + i, 2, /* F_SETFD */ 1 /* FD_CLOEXEC */);
  }
  return fds;
}

/** A listening unix stream socket at `path` (close-on-exec), as a descriptor. */
export function listenUnix(path: string, backlog = 64): number {
  const name = cstr(path);
  if (name.length > 108) throw new KernelError("bind", 36, "ENAMETOOLONG", `socket path too long: ${path}`);
  const fd = libc().socket(1, /* AF_UNIX */ SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const e = errno();
    throw new KernelError("socket", e, errnoName(e));
  }
  const addr = new Uint8Array(110);
  new DataView(addr.buffer).setUint16(0, 1, true);
  addr.set(name, 2);
  if (libc().bind(fd, addr, 2 + name.length) < 0 || libc().listen(fd, backlog) < 0) {
    const e = errno();
    libc().close(fd);
    throw new KernelError("bind", e, errnoName(e), `listening on ${path}: ${errnoName(e)}`);
  }
  return fd;
}
