// The varlink wire protocol (https://varlink.org, docs/varlink.md): NUL-terminated JSON messages
// over a stream socket. A call is `{method, parameters?, more?, oneway?}`; replies are
// `{parameters?, continues?, error?}`. Calls on one connection are answered in order; a call with
// `more` may get several replies, all but the last with `continues: true`.
import { FdListener, FdStream, listenUnix } from "../linux/fd_stream.ts";
import { closeFd } from "../linux/socket.ts";

/** Largest message accepted from a client (a hostile one cannot make the server buffer more). */
export const MAX_MESSAGE = 8 << 20;

export interface VarlinkCall {
  method: string;
  parameters: Record<string, unknown>;
  more: boolean;
  oneway: boolean;
  /** Descriptors the client passed with the call (SCM_RIGHTS); closed by the server after the call. */
  fds: number[];
}

/** A varlink error reply: `error` is the qualified name, `parameters` its fields. */
export class VarlinkError extends Error {
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

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

function parseCall(bytes: Uint8Array, fds: number[]): VarlinkCall {
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(bytes));
  } catch {
    throw new VarlinkError("org.varlink.service.InvalidParameter", { parameter: "message" });
  }
  const o = v as Record<string, unknown>;
  if (!o || typeof o !== "object" || typeof o.method !== "string") {
    throw new VarlinkError("org.varlink.service.InvalidParameter", { parameter: "method" });
  }
  const p = o.parameters ?? {};
  if (typeof p !== "object" || p === null || Array.isArray(p)) {
    throw new VarlinkError("org.varlink.service.InvalidParameter", { parameter: "parameters" });
  }
  return {
    method: o.method,
    parameters: p as Record<string, unknown>,
    more: o.more === true,
    oneway: o.oneway === true,
    fds,
  };
}

let nextConnId = 1;

async function serveConnection(stream: FdStream, service: VarlinkService): Promise<void> {
  const info: ConnectionInfo = { id: nextConnId++ };
  // Writes are queued so replies keep their order even while progress arrives from other tasks.
  let writing: Promise<void> = Promise.resolve();
  let broken = false;
  const send = (msg: Record<string, unknown>, fds: number[] = []) => {
    const bytes = enc.encode(JSON.stringify(msg) + "\0");
    writing = writing.then(() => {
      try {
        if (!broken) stream.send(bytes, fds);
      } catch {
        broken = true;
      } finally {
        for (const f of fds) closeFd(f);
      }
    });
  };
  let pending = new Uint8Array(0);
  /** Descriptors received since the last complete message: they belong to the next one. */
  let inFds: number[] = [];
  try {
    for (;;) {
      const got = await stream.recv();
      if (got === null || broken) break;
      inFds.push(...got.fds);
      const joined = new Uint8Array(pending.length + got.data.length);
      joined.set(pending);
      joined.set(got.data, pending.length);
      pending = joined;
      let nul: number;
      while ((nul = pending.indexOf(0)) >= 0) {
        const message = pending.subarray(0, nul);
        pending = pending.slice(nul + 1);
        const fds = inFds;
        inFds = [];
        let call: VarlinkCall;
        try {
          call = parseCall(message, fds);
        } catch (e) {
          for (const f of fds) closeFd(f);
          const ve = e as VarlinkError;
          send({ error: ve.error, parameters: ve.parameters });
          continue;
        }
        let outFds: number[] = [];
        const sink: ReplySink = {
          progress: (parameters) => {
            if (call.more && !call.oneway) send({ parameters, continues: true });
          },
          attachFds: (f) => {
            outFds = f;
          },
        };
        try {
          const parameters = await service.handle(call, sink, info);
          if (!call.oneway) send({ parameters }, outFds);
          else for (const f of outFds) closeFd(f);
        } catch (e) {
          for (const f of outFds) closeFd(f);
          if (e instanceof VarlinkError) {
            if (!call.oneway) send({ error: e.error, parameters: e.parameters });
          } else {
            const message = e instanceof Error ? e.message : String(e);
            if (!call.oneway) send({ error: "org.varlink.service.InternalError", parameters: { message } });
          }
        } finally {
          for (const f of call.fds) closeFd(f);
        }
        await writing;
      }
      if (pending.length > MAX_MESSAGE) {
        send({ error: "org.varlink.service.InvalidParameter", parameters: { parameter: "message" } });
        break;
      }
    }
  } catch {
    // the peer went away
  } finally {
    await writing;
    for (const f of inFds) closeFd(f);
    service.closed?.(info);
    stream.close();
  }
}

export interface RunningServer {
  /** Resolves when the server stops (listener closed, or the single activated connection ended). */
  done: Promise<void>;
  close(): void;
}

/** Serves on a unix socket path (an existing socket file there is replaced). */
export function serveUnix(path: string, service: VarlinkService): RunningServer {
  try {
    if (Deno.lstatSync(path).isSocket) Deno.removeSync(path);
  } catch { /* nothing there */ }
  const server = serveFd(listenUnix(path), "listening", service);
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
export function serveFd(fd: number, kind: "listening" | "connected", service: VarlinkService): RunningServer {
  if (kind === "connected") {
    const s = new FdStream(fd);
    return { done: serveConnection(s, service), close: () => s.close() };
  }
  const l = new FdListener(fd);
  const conns = new Set<Promise<void>>();
  const streams = new Set<FdStream>();
  const done = (async () => {
    for (;;) {
      const c = await l.accept();
      if (!c) break;
      streams.add(c);
      const p = serveConnection(c, service).finally(() => {
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
