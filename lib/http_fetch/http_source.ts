// The web server side of `cfsctl fetch` (docs/fetch.md): GETs of `streams/NAME` and
// `objects/XX/REST` below a base URL, through the registry client's transports (same TLS material,
// `--tls-verify=false` semantics and retry policy), with interrupted bodies resumed by HTTP Range.
import { InvalidArgumentError, TransportError } from "../errors.ts";
import {
  FetchTransport,
  type HttpResponse,
  type HttpTransport,
  InsecureTlsTransport,
} from "../oci/transport/registry/http_transport.ts";
import { type OpenedBody, resumableBody } from "../oci/transport/registry/resumable_body.ts";
import {
  backoffDelay,
  isRetryableStatus,
  parseRetryAfter,
  type RetryPolicy,
  retryPolicy,
  sleep,
} from "../oci/transport/registry/retry_policy.ts";
import { tlsMaterialFor } from "../oci/transport/registry/tls_config.ts";
import { DEFAULT_TIMEOUT_MS } from "../oci/transport/registry/bounded_read.ts";
import { concatBytes } from "../util/bytes.ts";

export interface HttpSourceOptions {
  /** `--cert-dir`: TLS material instead of certs.d (`<root>/<host:port>/`). */
  certDir?: string;
  /** false: accept unverified certificates (plain http is always allowed: the digests are checked). */
  tlsVerify?: boolean;
  /** `--creds USER:PASS`: HTTP basic authentication. */
  creds?: string;
  /** Retries after the first attempt, for each request and each resume. */
  retries?: number;
  retryDelayMs?: number;
  /** certs.d roots (tests). */
  certsDRoots?: string[];
  /** Extra request headers (tests). */
  headers?: Record<string, string>;
  /** Stall timeout for every response (headers and each body read), as for registries (`--timeout`). */
  timeoutMs?: number;
}

/** A body being received: the stream (resumed transparently) and the size the server announced. */
export interface FetchedBody {
  body: ReadableStream<Uint8Array>;
  size?: number;
  /** `Content-Type` of the first response (a server may mark symlinks as text/x-symlink-target). */
  contentType: string | null;
}

/** A fetch failure's message with its cause (Deno says only "fetch failed"; the cause says why). */
function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = e.cause instanceof Error ? e.cause.message : e.cause !== undefined ? String(e.cause) : "";
  return cause && !e.message.includes(cause) ? `${e.message}: ${cause}` : e.message;
}

function contentLength(h: Headers): number | undefined {
  const v = h.get("content-length");
  if (v === null || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/** Start offset of a 206 response's `Content-Range: bytes START-END/TOTAL`. */
function rangeStart(h: Headers): number | undefined {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(h.get("content-range") ?? "");
  return m ? Number(m[1]) : undefined;
}

export class HttpRepositorySource {
  readonly base: URL;
  #transport: HttpTransport;
  #policy: RetryPolicy;
  #auth?: string;
  #headers: Record<string, string>;

  private constructor(base: URL, transport: HttpTransport, policy: RetryPolicy, opts: HttpSourceOptions) {
    this.base = base;
    this.#transport = transport;
    this.#policy = policy;
    this.#headers = opts.headers ?? {};
    if (opts.creds !== undefined) {
      if (!opts.creds.includes(":")) throw new InvalidArgumentError("--creds takes USER:PASSWORD");
      this.#auth = "Basic " + btoa(opts.creds);
    }
  }

  static async open(url: string, opts: HttpSourceOptions = {}): Promise<HttpRepositorySource> {
    let base: URL;
    try {
      base = new URL(url.endsWith("/") ? url : url + "/");
    } catch {
      throw new InvalidArgumentError(`not a URL: ${JSON.stringify(url)}`);
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new InvalidArgumentError(`fetch needs an http:// or https:// URL, not ${base.protocol}`);
    }
    const tls = await tlsMaterialFor(base.host, { certDir: opts.certDir, roots: opts.certsDRoots });
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const transport = opts.tlsVerify === false
      ? new InsecureTlsTransport(tls, timeoutMs)
      : new FetchTransport(tls, timeoutMs);
    return new HttpRepositorySource(base, transport, retryPolicy(opts.retries, opts.retryDelayMs), opts);
  }

  close(): void {
    this.#transport.close();
  }

  /** URL of `rel` (e.g. `objects/ab/cdef…`) below the base; path components are percent-encoded. */
  urlOf(rel: string): URL {
    return new URL(rel.split("/").map(encodeURIComponent).join("/"), this.base);
  }

  /** One GET with retries on connection errors, 5xx and 429; 404 → null. */
  async #get(url: URL, offset: number): Promise<HttpResponse | null> {
    const headers = new Headers(this.#headers);
    if (this.#auth) headers.set("authorization", this.#auth);
    if (offset > 0) headers.set("range", `bytes=${offset}-`);
    for (let attempt = 1;; attempt++) {
      let problem: string;
      let retryAfter: number | undefined;
      try {
        const r = await this.#transport.send(url, { method: "GET", headers });
        if (r.status === 200 || r.status === 206) return r;
        await r.body?.cancel().catch(() => {});
        if (r.status === 404) return null;
        problem = `HTTP ${r.status}`;
        if (!isRetryableStatus(r.status)) throw new TransportError(`GET ${url}: ${problem}`);
        retryAfter = parseRetryAfter(r.headers.get("retry-after"));
      } catch (e) {
        if (e instanceof TransportError) throw e;
        problem = errorText(e);
      }
      if (attempt >= this.#policy.tries) {
        throw new TransportError(`GET ${url}: ${problem} (gave up after ${attempt} tries)`);
      }
      await sleep(backoffDelay(this.#policy, attempt, retryAfter));
    }
  }

  /** Streams `rel`; a cut connection is resumed from the byte reached. null when the server has no such file. */
  async get(rel: string): Promise<FetchedBody | null> {
    const url = this.urlOf(rel);
    const first = await this.#get(url, 0);
    if (!first) return null;
    const size = contentLength(first.headers);
    let pending: OpenedBody | undefined = { body: first.body ?? new Blob([]).stream(), offset: 0 };
    const open = async (offset: number): Promise<OpenedBody> => {
      if (pending) {
        const p = pending;
        pending = undefined;
        return p;
      }
      const r = await this.#get(url, offset);
      if (!r) throw new TransportError(`GET ${url}: vanished from the server (HTTP 404) while resuming`);
      const start = r.status === 206 ? rangeStart(r.headers) : 0;
      if (start === undefined) {
        await r.body?.cancel().catch(() => {});
        throw new TransportError(`GET ${url}: 206 response without a usable Content-Range`);
      }
      return { body: r.body ?? new Blob([]).stream(), offset: start };
    };
    return {
      body: resumableBody(open, size, this.#policy, `GET ${url}`),
      size,
      contentType: first.headers.get("content-type"),
    };
  }

  /** The whole of `rel` in memory, refusing more than `limit` bytes. null on 404. */
  async getBytes(
    rel: string,
    limit: number,
  ): Promise<{ data: Uint8Array; contentType: string | null } | null> {
    const got = await this.get(rel);
    if (!got) return null;
    if (got.size !== undefined && got.size > limit) {
      await got.body.cancel().catch(() => {});
      throw new TransportError(`GET ${this.urlOf(rel)}: ${got.size} bytes, more than the ${limit} allowed`);
    }
    const parts: Uint8Array[] = [];
    let n = 0;
    for await (const c of got.body) {
      n += c.length;
      if (n > limit) throw new TransportError(`GET ${this.urlOf(rel)}: more than the ${limit} bytes allowed`);
      parts.push(c);
    }
    return { data: concatBytes(parts), contentType: got.contentType };
  }
}
