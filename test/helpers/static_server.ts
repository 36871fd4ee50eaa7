// `python3 -m http.server` over a directory on 127.0.0.1 (an ephemeral port): the "any static web
// server" of docs/fetch.md, for fetch tests and the fetch benchmark.
export interface StaticServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

// Python 3.11's http.server has no TLS option: the same handler behind an ssl-wrapped socket.
const TLS_SERVER = `
import functools, http.server, ssl, sys
d, cert, key = sys.argv[1:4]
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
    functools.partial(http.server.SimpleHTTPRequestHandler, directory=d))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("Serving HTTPS on 127.0.0.1 port %d" % s.server_address[1], flush=True)
s.serve_forever()
`;

/** `tls`: serve https with this certificate and key (PEM files). */
export async function startStaticServer(
  dir: string,
  opts: { tls?: { cert: string; key: string } } = {},
): Promise<StaticServer> {
  const args = opts.tls
    ? ["-u", "-c", TLS_SERVER, dir, opts.tls.cert, opts.tls.key]
    : ["-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "0"];
  const child = new Deno.Command("python3", {
    args,
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  let port = 0;
  const deadline = Date.now() + 15_000;
  while (!port) {
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`python3 -m http.server did not report its port: ${text}`);
    }
    const { done, value } = await reader.read();
    if (done) throw new Error(`python3 -m http.server exited: ${text}`);
    text += new TextDecoder().decode(value);
    const m = /port (\d+)/.exec(text);
    if (m) port = Number(m[1]);
  }
  // Keep draining stdout so the server never blocks on a full pipe.
  const drain = (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* closed */ }
  })();
  return {
    port,
    url: `${opts.tls ? "https" : "http"}://127.0.0.1:${port}/`,
    async close() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await drain;
    },
  };
}

/** `busybox httpd` over a directory (C, sendfile, honours Range) on a free loopback port. */
export async function startBusyboxServer(dir: string): Promise<StaticServer> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const child = new Deno.Command("busybox", {
    args: ["httpd", "-f", "-p", `127.0.0.1:${port}`, "-h", dir],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0;; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch (e) {
      if (i >= 200) {
        child.kill();
        throw new Error(`busybox httpd did not listen on port ${port}: ${e}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return {
    port,
    url: `http://127.0.0.1:${port}/`,
    async close() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}
