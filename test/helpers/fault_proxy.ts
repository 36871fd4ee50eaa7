// An HTTP/1.1 proxy in front of a test registry that injects faults on matching requests: a cut
// connection after N body bytes (Content-Length promised in full), a body that stalls after N bytes
// (the connection held open), an error status (with Retry-After, and a body that stalls or is huge),
// a corrupted byte, an overstated Content-Length, an HTML page instead of the content, or a redirect
// to a second "CDN" listener on another port. It answers one request per connection
// (Connection: close) and records every request it saw, with the body bytes it managed to send.

/** An error body: the registry's JSON (default), one that stalls after its first bytes, or `bytes` long. */
export type ErrorBody = "json" | "stall" | { huge: number; declareLength: boolean };

export type Fault =
  | { kind: "cut"; afterBytes: number }
  | { kind: "stall"; afterBytes: number }
  | { kind: "status"; status: number; retryAfter?: string; body?: ErrorBody }
  | { kind: "corrupt"; offset: number }
  | { kind: "overstate"; extra: number; hold: boolean }
  | { kind: "html" }
  | { kind: "redirect" };

export interface FaultRule {
  /** Matched against the request path (`/v2/NAME/blobs/sha256:…`). */
  path: RegExp;
  fault: Fault;
  /** How many matching requests get the fault (default 1); later ones pass through. */
  times?: number;
  /** Only requests with (true) or without (false) a Range header match. */
  ranged?: boolean;
}

export interface SeenRequest {
  listener: "main" | "cdn";
  path: string;
  range?: string;
  authorization: boolean;
  status: number;
  /** Body bytes written to the client. */
  sent: number;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT`: use as the registry host. */
  host: string;
  rules: FaultRule[];
  seen: SeenRequest[];
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const enc = new TextEncoder();

async function readHead(conn: Deno.Conn): Promise<{ method: string; path: string; headers: Headers } | null> {
  const buf = new Uint8Array(65536);
  let len = 0;
  for (;;) {
    const n = await conn.read(buf.subarray(len));
    if (n === null) return null;
    len += n;
    // A TLS ClientHello (an https attempt) is not HTTP: hang up, as a plain-HTTP server would fail it.
    if (!/^[A-Z]/.test(String.fromCharCode(buf[0]))) return null;
    const text = new TextDecoder("latin1").decode(buf.subarray(0, len));
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) {
      if (len === buf.length) return null;
      continue;
    }
    const [line, ...rest] = text.slice(0, end).split("\r\n");
    const [method, path] = line.split(" ");
    const headers = new Headers();
    for (const h of rest) {
      const i = h.indexOf(":");
      if (i > 0) headers.append(h.slice(0, i).trim(), h.slice(i + 1).trim());
    }
    return { method, path, headers };
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** A response head; `length` null sends no Content-Length (the body ends when the connection closes). */
function head(status: number, headers: [string, string][], length: number | null): Uint8Array {
  const lines = [`HTTP/1.1 ${status} X`, ...headers.map(([k, v]) => `${k}: ${v}`)];
  if (length !== null) lines.push(`Content-Length: ${length}`);
  lines.push("Connection: close", "", "");
  return enc.encode(lines.join("\r\n"));
}

/** Waits until the client hangs up (or the proxy stops and closes the connection). */
async function holdOpen(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(1024);
  try {
    while ((await conn.read(buf)) !== null) { /* ignore */ }
  } catch { /* closed */ }
}

const HOP = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "host"]);

export function startFaultProxy(upstream: string, rules: FaultRule[] = []): FaultProxy {
  const main = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const cdn = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const cdnPort = (cdn.addr as Deno.NetAddr).port;
  const seen: SeenRequest[] = [];
  const used = new Map<FaultRule, number>();
  // Authorization captured from the redirected request, standing in for a pre-signed URL's signature.
  const presigned = new Map<string, string | null>();
  const open = new Set<Deno.Conn>();

  async function forward(method: string, path: string, headers: Headers, auth: string | null) {
    const h = new Headers();
    headers.forEach((v, k) => {
      if (!HOP.has(k) && k !== "authorization") h.set(k, v);
    });
    if (auth) h.set("authorization", auth);
    const r = await fetch(`http://${upstream}${path}`, { method, headers: h, redirect: "manual" });
    const body = new Uint8Array(await r.arrayBuffer());
    const out: [string, string][] = [];
    r.headers.forEach((v, k) => {
      if (!HOP.has(k)) out.push([k, v]);
    });
    return { status: r.status, headers: out, body };
  }

  async function serve(conn: Deno.Conn, listener: "main" | "cdn") {
    open.add(conn);
    let entry: SeenRequest | undefined;
    const send = async (data: Uint8Array) => {
      await writeAll(conn, data);
      if (entry) entry.sent += data.length;
    };
    try {
      const req = await readHead(conn);
      if (!req) return;
      const record = (status: number) => {
        entry = {
          listener,
          path: req.path,
          range: req.headers.get("range") ?? undefined,
          authorization: req.headers.has("authorization"),
          status,
          sent: 0,
        };
        seen.push(entry);
      };
      if (listener === "cdn") {
        const auth = presigned.get(req.path) ?? null;
        const r = await forward(req.method, req.path.replace(/^\/cdn/, ""), req.headers, auth);
        record(r.status);
        await writeAll(conn, head(r.status, r.headers, r.body.length));
        if (req.method !== "HEAD") await send(r.body);
        return;
      }
      const rule = rules.find((ru) =>
        ru.path.test(req.path) && (used.get(ru) ?? 0) < (ru.times ?? 1) &&
        (ru.ranged === undefined || ru.ranged === req.headers.has("range"))
      );
      if (rule) used.set(rule, (used.get(rule) ?? 0) + 1);
      const f = rule?.fault;
      if (f?.kind === "status") {
        record(f.status);
        const body = enc.encode(
          JSON.stringify({ errors: [{ code: "INJECTED", message: "injected fault" }] }),
        );
        const hs: [string, string][] = [["Content-Type", "application/json"]];
        if (f.retryAfter !== undefined) hs.push(["Retry-After", f.retryAfter]);
        const b = f.body ?? "json";
        if (b === "json") {
          await writeAll(conn, head(f.status, hs, body.length));
          await send(body);
        } else if (b === "stall") {
          await writeAll(conn, head(f.status, hs, body.length));
          await send(body.subarray(0, 10));
          await holdOpen(conn);
        } else {
          // `{"errors":[` and then spaces, in 64 KiB writes, until the size or a hang-up.
          await writeAll(conn, head(f.status, hs, b.declareLength ? b.huge : null));
          const chunk = new Uint8Array(65536).fill(0x20);
          await send(enc.encode('{"errors":['));
          let left = b.huge - 11;
          while (left > 0) {
            const n = Math.min(left, chunk.length);
            await send(chunk.subarray(0, n));
            left -= n;
          }
        }
        return;
      }
      if (f?.kind === "html") {
        record(200);
        const page = enc.encode("<html><body><h1>Please log in</h1></body></html>\n");
        await writeAll(conn, head(200, [["Content-Type", "text/html; charset=utf-8"]], page.length));
        await send(page);
        return;
      }
      if (f?.kind === "redirect") {
        const target = `/cdn${req.path}`;
        presigned.set(target, req.headers.get("authorization"));
        record(307);
        await writeAll(conn, head(307, [["Location", `http://127.0.0.1:${cdnPort}${target}`]], 0));
        return;
      }
      const r = await forward(req.method, req.path, req.headers, req.headers.get("authorization"));
      record(r.status);
      let body = r.body;
      if (f?.kind === "corrupt" && body.length > f.offset) {
        body = body.slice();
        body[f.offset] ^= 0xff;
      }
      const overstated = f?.kind === "overstate" && r.status === 200;
      await writeAll(conn, head(r.status, r.headers, body.length + (overstated ? f.extra : 0)));
      if (req.method === "HEAD") return;
      if (f?.kind === "cut") {
        await send(body.subarray(0, Math.min(f.afterBytes, body.length)));
        return; // closing now leaves the promised Content-Length unmet
      }
      if (f?.kind === "stall") {
        await send(body.subarray(0, Math.min(f.afterBytes, body.length)));
        await holdOpen(conn);
        return;
      }
      await send(body);
      if (overstated && f.hold) await holdOpen(conn);
    } catch {
      // a client that went away
    } finally {
      open.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }

  const loops = [main, cdn].map(async (l, i) => {
    for await (const conn of l) serve(conn, i === 0 ? "main" : "cdn");
  });
  const stop = async () => {
    try {
      main.close();
      cdn.close();
    } catch { /* closed */ }
    for (const c of open) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await Promise.allSettled(loops);
  };
  return {
    host: `127.0.0.1:${(main.addr as Deno.NetAddr).port}`,
    rules,
    seen,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
