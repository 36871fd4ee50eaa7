// One HTTP exchange, no redirects followed, no retries: either Deno's fetch with a client carrying the
// registry's TLS material (certificates always verified), or — for `--tls-verify=false` on an https
// URL — node:https with `rejectUnauthorized: false`, because Deno's fetch cannot skip verification for
// one client (only process-wide with --unsafely-ignore-certificate-errors).
import https from "node:https";
import type { IncomingMessage } from "node:http";
import type { TlsMaterial } from "./tls_config.ts";
import { systemCaBundle } from "./tls_config.ts";
import { seconds, stallGuard } from "./bounded_read.ts";

export interface HttpResponse {
  status: number;
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
}

export interface HttpRequest {
  method: "GET" | "HEAD";
  headers: Headers;
}

export interface HttpTransport {
  send(url: URL, req: HttpRequest): Promise<HttpResponse>;
  close(): void;
}

/** fetch() through a Deno.HttpClient: system + extra CAs, optional client certificate. */
export class FetchTransport implements HttpTransport {
  #client: Deno.HttpClient;
  /**
   * `timeoutMs` bounds the wait for the headers (connect + TLS + server think time) and, through
   * stallGuard, every read of the body.
   */
  constructor(tls: TlsMaterial, private timeoutMs: number) {
    const system = systemCaBundle();
    const caCerts = [...(system ? [system] : []), ...tls.caCerts];
    const opts: Deno.CreateHttpClientOptions = { caCerts };
    if (tls.cert && tls.key) {
      (opts as any).cert = tls.cert;
      (opts as any).key = tls.key;
    }
    this.#client = Deno.createHttpClient(opts);
  }
  async send(url: URL, req: HttpRequest): Promise<HttpResponse> {
    const ctl = new AbortController();
    const timer = setTimeout(
      () => ctl.abort(new Error(`no response within ${seconds(this.timeoutMs)}`)),
      this.timeoutMs,
    );
    const init: RequestInit & { client: Deno.HttpClient } = {
      method: req.method,
      headers: req.headers,
      redirect: "manual",
      client: this.#client,
      signal: ctl.signal,
    };
    try {
      const r = await fetch(url, init);
      return { status: r.status, headers: r.headers, body: r.body && stallGuard(r.body, this.timeoutMs) };
    } finally {
      clearTimeout(timer);
    }
  }
  close(): void {
    this.#client.close();
  }
}

/** Adapts a node response to a web stream with backpressure (the socket pauses while the queue is full). */
function webBody(res: IncomingMessage): ReadableStream<Uint8Array> {
  let done = false;
  return new ReadableStream<Uint8Array>({
    start(ctl) {
      res.on("data", (c: Uint8Array) => {
        if (done) return;
        ctl.enqueue(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
        if ((ctl.desiredSize ?? 0) <= 0) res.pause();
      });
      res.on("end", () => {
        if (done) return;
        done = true;
        // A body shorter than its Content-Length is a cut connection, not an end.
        const len = res.headers["content-length"];
        if (len !== undefined && !res.complete) {
          ctl.error(new Error("connection closed before the end of the body"));
        } else ctl.close();
      });
      const fail = (e: Error) => {
        if (done) return;
        done = true;
        ctl.error(e);
      };
      res.on("error", fail);
      res.on("aborted", () => fail(new Error("connection aborted")));
      res.on("close", () => {
        if (!res.complete) fail(new Error("connection closed before the end of the body"));
      });
    },
    pull() {
      res.resume();
    },
    cancel() {
      done = true;
      res.destroy();
    },
  }, { highWaterMark: 16 });
}

/** node:https without certificate verification (still TLS; client certificate when given). */
export class InsecureTlsTransport implements HttpTransport {
  #agent: https.Agent;
  #fallback: FetchTransport;
  constructor(tls: TlsMaterial, private timeoutMs: number) {
    this.#agent = new https.Agent({
      keepAlive: true,
      rejectUnauthorized: false,
      cert: tls.cert,
      key: tls.key,
    });
    this.#fallback = new FetchTransport({ caCerts: [] }, timeoutMs);
  }
  send(url: URL, req: HttpRequest): Promise<HttpResponse> {
    if (url.protocol !== "https:") return this.#fallback.send(url, req);
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => (headers[k] = v));
      const r = https.request(url, { method: req.method, headers, agent: this.#agent }, (res) => {
        // Headers are in: from here stallGuard times the body's reads (an idle socket timer would also
        // fire while the consumer applies backpressure).
        r.setTimeout(0);
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (Array.isArray(v)) { for (const x of v) h.append(k, x); }
          else if (v !== undefined) h.set(k, String(v));
        }
        const noBody = req.method === "HEAD" || res.statusCode === 204 || res.statusCode === 304;
        resolve({
          status: res.statusCode ?? 0,
          headers: h,
          body: noBody ? null : stallGuard(webBody(res), this.timeoutMs),
        });
      });
      // Socket idle timeout: covers the wait for headers; the body's reads have stallGuard.
      r.setTimeout(
        this.timeoutMs,
        () => r.destroy(new Error(`no response within ${seconds(this.timeoutMs)}`)),
      );
      r.on("error", reject);
      r.end();
    });
  }
  close(): void {
    this.#agent.destroy();
    this.#fallback.close();
  }
}
