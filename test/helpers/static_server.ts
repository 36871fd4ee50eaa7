// `python3 -m http.server` over a directory on 127.0.0.1 (an ephemeral port): the "any static web
// server" of docs/fetch.md, for fetch tests and the fetch benchmark.
export interface StaticServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startStaticServer(dir: string): Promise<StaticServer> {
  const child = new Deno.Command("python3", {
    args: ["-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "0"],
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
    url: `http://127.0.0.1:${port}/`,
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
