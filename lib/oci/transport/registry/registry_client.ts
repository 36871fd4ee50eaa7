// HTTP for one repository on one registry endpoint (distribution API v2): finds the scheme with a
// /v2/ ping, authorizes requests, retries connection failures, 5xx and 429 with backoff, and follows
// redirects by hand so the registry's Authorization header never goes to another host.
import { CfsError, InternalError, NotFoundError, TransportError } from "../../../errors.ts";
import { RegistryAuth, safeUrl } from "./auth.ts";
import type { Credentials } from "./auth_file.ts";
import { apiHost } from "./docker_reference.ts";
import {
  FetchTransport,
  type HttpResponse,
  type HttpTransport,
  InsecureTlsTransport,
} from "./http_transport.ts";
import { backoffDelay, isRetryableStatus, parseRetryAfter, type RetryPolicy, sleep } from "./retry_policy.ts";
import type { TlsMaterial } from "./tls_config.ts";
import { declaredOver, kib, MAX_ERROR_BODY, readCapped } from "./bounded_read.ts";

export interface EndpointOptions {
  /** Registry name as in references (docker.io is mapped to its API host). */
  registry: string;
  repository: string;
  /** Skip certificate verification and allow plain HTTP. */
  insecure: boolean;
  tls: TlsMaterial;
  credentials: () => Promise<Credentials | undefined>;
  retry: RetryPolicy;
  /** Stall timeout for response headers and for every body read. */
  timeoutMs: number;
}

const MAX_REDIRECTS = 10;

function describeCause(e: unknown): string {
  if (e instanceof Error) {
    const c = (e as any).cause;
    return c instanceof Error && c.message && !e.message.includes(c.message)
      ? `${e.message}: ${c.message}`
      : e.message;
  }
  return String(e);
}

/**
 * The registry's error list (`{"errors":[{"code","message"}]}`) as one short line, read from at most
 * MAX_ERROR_BODY bytes; a larger or stalled body is said to be so instead.
 */
async function registryErrorText(res: HttpResponse): Promise<string> {
  if (!res.body) return "";
  if (declaredOver(res.headers, MAX_ERROR_BODY)) {
    await res.body.cancel().catch(() => {});
    return `error body of ${res.headers.get("content-length")} bytes not read: over the ${
      kib(MAX_ERROR_BODY)
    } limit`;
  }
  let text: string;
  try {
    const { bytes, over } = await readCapped(res.body, MAX_ERROR_BODY);
    if (over) return `error body not read past the ${kib(MAX_ERROR_BODY)} limit`;
    text = new TextDecoder().decode(bytes);
  } catch (e) {
    return `error body unreadable: ${e instanceof Error ? e.message : String(e)}`;
  }
  try {
    const doc = JSON.parse(text);
    if (Array.isArray(doc?.errors) && doc.errors.length > 0) {
      return doc.errors.map((e: any) => [e.code, e.message].filter(Boolean).join(": ")).join("; ");
    }
    return "";
  } catch {
    return "";
  }
}

export class RegistryClient {
  readonly auth: RegistryAuth;
  readonly host: string;
  #transport: HttpTransport;
  #base?: URL;

  constructor(readonly opts: EndpointOptions) {
    this.host = apiHost(opts.registry);
    this.#transport = opts.insecure
      ? new InsecureTlsTransport(opts.tls, opts.timeoutMs)
      : new FetchTransport(opts.tls, opts.timeoutMs);
    this.auth = new RegistryAuth(
      opts.registry,
      opts.repository,
      opts.credentials,
      (url, headers) => this.#withRetries(url, headers, false),
      () => ({ registryHttps: this.#base?.protocol === "https:", insecure: opts.insecure }),
    );
  }

  get where(): string {
    return `${this.opts.registry}/${this.opts.repository}`;
  }

  close(): void {
    this.#transport.close();
  }

  /** GET /v2/: picks https (or http when insecure and https fails) and learns the auth challenge. */
  async ping(): Promise<void> {
    if (this.#base) return;
    const schemes = this.opts.insecure ? ["https", "http"] : ["https"];
    let lastErr: unknown;
    for (let attempt = 1; attempt <= this.opts.retry.tries; attempt++) {
      let retryAfter: number | undefined;
      for (const scheme of schemes) {
        const url = new URL(`${scheme}://${this.host}/v2/`);
        let res: HttpResponse;
        try {
          res = await this.#transport.send(url, { method: "GET", headers: new Headers() });
        } catch (e) {
          lastErr = new TransportError(
            `cannot reach registry ${this.host} (${safeUrl(url)}): ${describeCause(e)}`,
          );
          continue;
        }
        await res.body?.cancel().catch(() => {});
        if (isRetryableStatus(res.status)) {
          lastErr = new TransportError(`registry ${this.host}: ${safeUrl(url)} answered HTTP ${res.status}`);
          retryAfter = parseRetryAfter(res.headers.get("retry-after"));
          break;
        }
        if (res.status === 401) this.auth.setChallenge(res);
        else if (res.status !== 200 && res.status !== 404) {
          // Not a v2 registry here; a 404 still lets requests go on (some registries only route names).
          lastErr = new TransportError(`registry ${this.host}: ${safeUrl(url)} answered HTTP ${res.status}`);
          continue;
        }
        this.#base = new URL(`${scheme}://${this.host}/`);
        return;
      }
      if (attempt < this.opts.retry.tries) await sleep(backoffDelay(this.opts.retry, attempt, retryAfter));
    }
    const why = lastErr instanceof Error ? lastErr.message : `cannot reach registry ${this.host}`;
    throw new TransportError(`${why} (gave up after ${this.opts.retry.tries} tries)`);
  }

  url(path: string): URL {
    if (!this.#base) throw new InternalError("RegistryClient.url() before ping()");
    return new URL(`/v2/${this.opts.repository}/${path}`, this.#base);
  }

  /** One request with redirects followed; Authorization only on the registry's own origin. */
  async #once(url: URL, headers: Headers, authorize: boolean): Promise<HttpResponse> {
    let current = url;
    const origin = url.origin;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const h = new Headers(headers);
      if (authorize && current.origin === origin) {
        const a = await this.auth.authorization();
        if (a) h.set("authorization", a);
      } else if (current.origin !== origin) {
        h.delete("authorization");
      }
      const res = await this.#transport.send(current, { method: "GET", headers: h });
      if (res.status >= 300 && res.status < 400 && res.status !== 304) {
        const loc = res.headers.get("location");
        await res.body?.cancel().catch(() => {});
        if (!loc) {
          throw new TransportError(`${safeUrl(current)}: HTTP ${res.status} redirect without Location`);
        }
        current = new URL(loc, current);
        if (current.protocol !== "https:" && current.protocol !== "http:") {
          throw new TransportError(`${safeUrl(url)}: redirect to unsupported scheme ${current.protocol}`);
        }
        continue;
      }
      return res;
    }
    throw new TransportError(`${safeUrl(url)}: more than ${MAX_REDIRECTS} redirects`);
  }

  /**
   * GET with retries: connection errors, 5xx and 429 are retried (Retry-After honoured); one 401 is
   * answered by re-authenticating. Any other status is returned for the caller to interpret.
   */
  async #withRetries(url: URL, headers: Headers, authorize: boolean): Promise<HttpResponse> {
    const policy = this.opts.retry;
    let reauthenticated = false;
    let lastProblem = "";
    for (let attempt = 1;; attempt++) {
      let res: HttpResponse | undefined;
      let retryAfter: number | undefined;
      try {
        res = await this.#once(url, headers, authorize);
      } catch (e) {
        // Our own errors are verdicts (a bad auth file, a refused token realm): retrying cannot help.
        if (e instanceof CfsError) throw e;
        lastProblem = describeCause(e);
      }
      if (res) {
        if (res.status === 401 && authorize && !reauthenticated && this.auth.onUnauthorized(res)) {
          reauthenticated = true;
          await res.body?.cancel().catch(() => {});
          attempt--;
          continue;
        }
        if (!isRetryableStatus(res.status)) return res;
        retryAfter = parseRetryAfter(res.headers.get("retry-after"));
        const detail = attempt >= policy.tries ? await registryErrorText(res) : "";
        await res.body?.cancel().catch(() => {});
        lastProblem = `HTTP ${res.status}${detail ? ` (${detail})` : ""}`;
      }
      if (attempt >= policy.tries) {
        throw new TransportError(`GET ${safeUrl(url)} failed after ${policy.tries} tries: ${lastProblem}`);
      }
      await sleep(backoffDelay(policy, attempt, retryAfter));
    }
  }

  /** GET `/v2/NAME/PATH`, after a ping; the response may have any status. */
  async get(path: string, headers: Headers = new Headers()): Promise<HttpResponse> {
    await this.ping();
    return await this.#withRetries(this.url(path), headers, true);
  }

  /** Turns a non-success response into a clear error naming the URL (never credentials). */
  async fail(res: HttpResponse, path: string, what: string): Promise<never> {
    const url = safeUrl(this.url(path));
    const detail = await registryErrorText(res);
    const suffix = detail ? ` (${detail})` : "";
    if (res.status === 401 || res.status === 403) {
      const source = await this.auth.credentialSource();
      const why = source
        ? `the credentials from ${source} were rejected`
        : `no credentials found for ${this.opts.registry} (use --creds, --authfile or an auth file)`;
      throw new TransportError(`${what}: access denied by ${url}: HTTP ${res.status}: ${why}${suffix}`);
    }
    if (res.status === 404) throw new NotFoundError(`${what}: not found at ${url} (HTTP 404)${suffix}`);
    throw new TransportError(`${what}: ${url} answered HTTP ${res.status}${suffix}`);
  }
}
