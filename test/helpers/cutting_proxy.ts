// A small HTTP/1.x forwarding proxy for fetch tests: logs every request (path and Range header) and
// can cut the connection after N response bytes for chosen paths, to exercise resumption.
export interface LoggedRequest {
  path: string;
  range: string | null;
  /** Status code of the upstream response (0 until its status line arrived). */
  status: number;
}

export interface CuttingProxy {
  url: string;
  requests: LoggedRequest[];
  /** Cut the response of the next `times` requests whose path satisfies `match` after `afterBytes`. */
  cut(match: (path: string) => boolean, afterBytes: number, times?: number): void;
  close(): Promise<void>;
}

const dec = new TextDecoder();

async function readHead(conn: Deno.Conn): Promise<Uint8Array | null> {
  const buf = new Uint8Array(64 * 1024);
  let n = 0;
  for (;;) {
    const r = await conn.read(buf.subarray(n));
    if (r === null) return null;
    n += r;
    if (dec.decode(buf.subarray(0, n)).includes("\r\n\r\n")) return buf.slice(0, n);
    if (n === buf.length) return buf.slice(0, n);
  }
}

export function startCuttingProxy(upstreamPort: number): CuttingProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: LoggedRequest[] = [];
  const cuts: { match: (p: string) => boolean; after: number; left: number }[] = [];
  const open = new Set<Deno.Conn>();

  const serve = async (client: Deno.Conn) => {
    open.add(client);
    let upstream: Deno.Conn | undefined;
    try {
      const head = await readHead(client);
      if (!head) return;
      const text = dec.decode(head);
      const path = text.split(" ")[1] ?? "";
      const range = /\r\nrange:\s*([^\r]*)/i.exec(text)?.[1] ?? null;
      const logged: LoggedRequest = { path, range, status: 0 };
      requests.push(logged);
      const cut = cuts.find((c) => c.left > 0 && c.match(path));
      if (cut) cut.left--;
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: upstreamPort });
      open.add(upstream);
      // Ask for a connection per request so each logged request is one exchange.
      const forwarded = text.replace(/\r\nconnection:[^\r]*/i, "").replace(
        "\r\n",
        "\r\nConnection: close\r\n",
      );
      await upstream.write(new TextEncoder().encode(forwarded));
      const buf = new Uint8Array(64 * 1024);
      let sent = 0;
      for (;;) {
        const r = await upstream.read(buf);
        if (r === null) break;
        let chunk = buf.subarray(0, r);
        if (sent === 0) {
          logged.status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(dec.decode(chunk.subarray(0, 16)))?.[1] ?? 0);
        }
        if (cut && sent + chunk.length > cut.after) chunk = chunk.subarray(0, Math.max(0, cut.after - sent));
        let o = 0;
        while (o < chunk.length) o += await client.write(chunk.subarray(o));
        sent += chunk.length;
        if (cut && sent >= cut.after) break;
      }
    } catch {
      // a peer went away: nothing to do
    } finally {
      for (const c of [client, upstream]) {
        if (!c) continue;
        open.delete(c);
        try {
          c.close();
        } catch { /* closed */ }
      }
    }
  };

  const loop = (async () => {
    try {
      for await (const c of listener) serve(c);
    } catch { /* listener closed */ }
  })();

  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`,
    requests,
    cut(match, afterBytes, times = 1) {
      cuts.push({ match, after: afterBytes, left: times });
    },
    async close() {
      listener.close();
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
    },
  };
}
