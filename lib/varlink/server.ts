// The varlink wire protocol (https://varlink.org, docs/varlink.md): NUL-terminated JSON messages
// over a stream socket. A call is `{method, parameters?, more?, oneway?}`; replies are
// `{parameters?, continues?, error?}`. Calls on one connection are answered in order; a call with
// `more` may get several replies, all but the last with `continues: true`.
import { FdListener, FdStream, listenUnix } from "../linux/fd_stream.ts";
import { closeFd } from "../linux/socket.ts";
import { CfsError } from "../errors.ts";

/** Largest message accepted from a client (a hostile one cannot make the server buffer more). */
export const MAX_MESSAGE = 8 << 20;

export interface VarlinkCall {
  method: string;
  parameters: Record<string, unknown>;
  more: boolean;
  oneway: boolean;
  /** Descriptors the client passed with the call (SCM_RIGHTS); closed by the server after the call. */
  fds: number[];
  /** Aborted when the client hangs up (or the server stops) before the call is answered (not oneway). */
  signal: AbortSignal;
}

/** A varlink error reply: `error` is the qualified name, `parameters` its fields. */
export class VarlinkError extends CfsError {
  override name = "VarlinkError";
  constructor(readonly error: string, readonly parameters: Record<string, unknown> = {}) {
    super(`${error} ${JSON.stringify(parameters)}`);
  }
}

/** Sends the replies of one call (each `reply` but the last of a `more` call sets `continues`). */
export interface ReplySink {
  /** Intermediate reply of a `more` call (ignored when the call was not `more`). */
  progress(parameters: Record<string, unknown>): void;
  /** Descriptors to pass with the final reply (the server closes them once sent). */
  attachFds(fds: number[]): void;
}

export interface VarlinkService {
  /** Handles one call; returns the final reply's parameters, or throws VarlinkError. */
  handle(call: VarlinkCall, sink: ReplySink, conn: ConnectionInfo): Promise<Record<string, unknown>>;
  /** A connection closed (its resources, e.g. handles it opened, may be released). */
  closed?(conn: ConnectionInfo): void;
}

export interface ConnectionInfo {
  id: number;
}

export interface ServeOptions {
  /**
   * A client that reads none of its replies for this long is dropped: its connection is shut down
   * and its running call aborted, as when it hangs up (docs/varlink.md#slow-readers). Default 30 s.
   */
  stallTimeoutMs?: number;
}

/**
 * How often a running call checks whether its client hung up. A call reads nothing from the socket
 * while it runs (calls are answered in order), so the hang-up is seen by polling for POLLHUP — not
 * by end of input, which a client that shut down only its writing side also gives (it still reads).
 */
const HANGUP_CHECK_MS = 200;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

function invalidMessage(parameter: string): VarlinkError {
  return new VarlinkError("org.varlink.service.InvalidParameter", { parameter });
}

function parseCall(bytes: Uint8Array, fds: number[], signal: AbortSignal): VarlinkCall {
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(bytes));
  } catch {
    throw invalidMessage("message");
  }
  const o = v as Record<string, unknown>;
  if (!o || typeof o !== "object" || typeof o.method !== "string") throw invalidMessage("method");
  const p = o.parameters ?? {};
  if (typeof p !== "object" || p === null || Array.isArray(p)) throw invalidMessage("parameters");
  return {
    method: o.method,
    parameters: p as Record<string, unknown>,
    more: o.more === true,
    oneway: o.oneway === true,
    fds,
    signal,
  };
}

/** The error reply for whatever a call threw. */
function errorReply(e: unknown): Record<string, unknown> {
  if (e instanceof VarlinkError) return { error: e.error, parameters: e.parameters };
  const message = e instanceof Error ? e.message : String(e);
  return { error: "org.varlink.service.InternalError", parameters: { message } };
}

function closeAll(fds: number[]): void {
  for (const f of fds) closeFd(f);
}

let nextConnId = 1;

/** One client connection: reads NUL-terminated calls and answers them one after the other. */
class Connection {
  readonly info: ConnectionInfo = { id: nextConnId++ };
  /** Writes are queued so replies keep their order even while progress arrives from other tasks. */
  #writing: Promise<void> = Promise.resolve();
  /** A write failed or stalled: the client is gone (or as good as gone) and is dropped. */
  #broken = false;
  /** Aborts the call running now (null between calls). */
  #abort: AbortController | null = null;
  #pending = new Uint8Array(0);
  /** Descriptors received since the last complete message: they belong to the next one. */
  #inFds: number[] = [];

  constructor(private stream: FdStream, private service: VarlinkService, private opts: ServeOptions = {}) {}

  async serve(): Promise<void> {
    try {
      for (;;) {
        const got = await this.stream.recv();
        if (got === null || this.#broken) break;
        this.#inFds.push(...got.fds);
        this.#append(got.data);
        for (let m = this.#nextMessage(); m && !this.#broken; m = this.#nextMessage()) {
          await this.#answer(m.bytes, m.fds);
        }
        if (this.#broken) break;
        if (this.#pending.length > MAX_MESSAGE) {
          this.#send(errorReply(invalidMessage("message")));
          break;
        }
      }
    } catch {
      // the peer went away
    } finally {
      await this.#writing;
      closeAll(this.#inFds);
      this.service.closed?.(this.info);
      this.stream.close();
    }
  }

  /**
   * Queues a reply. It is written without blocking the server (FdStream.sendAll): a client that reads
   * slowly delays only itself, and one that reads nothing for the stall timeout, or is gone, is dropped.
   */
  #send(msg: Record<string, unknown>, fds: number[] = []): void {
    const bytes = enc.encode(JSON.stringify(msg) + "\0");
    this.#writing = this.#writing.then(async () => {
      try {
        if (!this.#broken) {
          await this.stream.sendAll(bytes, { fds, stallTimeoutMs: this.opts.stallTimeoutMs });
        }
      } catch (e) {
        this.#drop(e);
      } finally {
        closeAll(fds);
      }
    });
  }

  /**
   * Gives the client up (a send failed or stalled): nothing more is written or read, the running call
   * is aborted as on a hang-up, and the connection ends once that call returns.
   */
  #drop(cause: unknown): void {
    if (this.#broken) return;
    this.#broken = true;
    this.stream.shutdown(); // ends the read loop's pending receive
    this.#abort?.abort(new CfsError("the varlink client stopped reading its replies", { cause }));
  }

  #append(data: Uint8Array): void {
    const joined = new Uint8Array(this.#pending.length + data.length);
    joined.set(this.#pending);
    joined.set(data, this.#pending.length);
    this.#pending = joined;
  }

  /** The next complete message and its descriptors, or null. */
  #nextMessage(): { bytes: Uint8Array; fds: number[] } | null {
    const nul = this.#pending.indexOf(0);
    if (nul < 0) return null;
    const bytes = this.#pending.subarray(0, nul);
    this.#pending = this.#pending.slice(nul + 1);
    const fds = this.#inFds;
    this.#inFds = [];
    return { bytes, fds };
  }

  /** Parses and runs one call; returns once its replies are written. */
  async #answer(bytes: Uint8Array, fds: number[]): Promise<void> {
    const abort = new AbortController();
    let call: VarlinkCall;
    try {
      call = parseCall(bytes, fds, abort.signal);
    } catch (e) {
      closeAll(fds);
      this.#send(errorReply(e));
      return;
    }
    // A oneway call's client wants no reply and may be gone already: its call runs to the end.
    if (!call.oneway) this.#abort = abort;
    const watch = call.oneway ? undefined : setInterval(() => {
      if (abort.signal.aborted) return clearInterval(watch);
      if (!this.#broken && !this.stream.hungUp()) return;
      abort.abort(new CfsError("the varlink client hung up"));
      clearInterval(watch);
    }, HANGUP_CHECK_MS);
    try {
      await this.#run(call);
    } finally {
      clearInterval(watch);
      this.#abort = null;
      closeAll(call.fds);
    }
    await this.#writing;
  }

  async #run(call: VarlinkCall): Promise<void> {
    let outFds: number[] = [];
    const sink: ReplySink = {
      progress: (parameters) => {
        if (call.more && !call.oneway) this.#send({ parameters, continues: true });
      },
      attachFds: (f) => {
        outFds = f;
      },
    };
    let reply: Record<string, unknown>;
    try {
      reply = { parameters: await this.service.handle(call, sink, this.info) };
    } catch (e) {
      closeAll(outFds);
      outFds = [];
      reply = errorReply(e);
    }
    if (call.oneway) closeAll(outFds);
    else this.#send(reply, outFds);
  }
}

export interface RunningServer {
  /** Resolves when the server stops (listener closed, or the single activated connection ended). */
  done: Promise<void>;
  close(): void;
}

/** Serves on a unix socket path (an existing socket file there is replaced). */
export function serveUnix(path: string, service: VarlinkService, opts: ServeOptions = {}): RunningServer {
  try {
    if (Deno.lstatSync(path).isSocket) Deno.removeSync(path);
  } catch { /* nothing there */ }
  const server = serveFd(listenUnix(path), "listening", service, opts);
  return {
    done: server.done,
    close() {
      server.close();
      try {
        Deno.removeSync(path);
      } catch { /* gone */ }
    },
  };
}

/** Serves on an activated descriptor: a listening socket (accept loop) or one connected socket. */
export function serveFd(
  fd: number,
  kind: "listening" | "connected",
  service: VarlinkService,
  opts: ServeOptions = {},
): RunningServer {
  if (kind === "connected") {
    const s = new FdStream(fd);
    return { done: new Connection(s, service, opts).serve(), close: () => s.close() };
  }
  const l = new FdListener(fd);
  const conns = new Set<Promise<void>>();
  const streams = new Set<FdStream>();
  const done = (async () => {
    for (;;) {
      const c = await l.accept();
      if (!c) break;
      streams.add(c);
      const p = new Connection(c, service, opts).serve().finally(() => {
        conns.delete(p);
        streams.delete(c);
      });
      conns.add(p);
    }
    await Promise.all(conns);
  })();
  return {
    done,
    close() {
      l.close();
      for (const c of streams) c.close(); // wakes their pending reads
    },
  };
}
