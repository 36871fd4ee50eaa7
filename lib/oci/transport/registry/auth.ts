// Authorization for one registry repository: anonymous, Basic, or Bearer tokens from the token
// server a challenge names (realm/service/scope, `token` or `access_token`, cached until expiry and
// refreshed on 401). Credentials are only ever put into Authorization headers.
import { TransportError } from "../../../errors.ts";
import type { Credentials } from "./auth_file.ts";
import type { HttpResponse } from "./http_transport.ts";
import { type Challenge, parseWwwAuthenticate } from "./www_authenticate.ts";
import { declaredOver, kib, MAX_TOKEN_BODY, readCapped } from "./bounded_read.ts";

export type TokenFetcher = (url: URL, headers: Headers) => Promise<HttpResponse>;

/** How the registry itself is reached: a plain-HTTP token realm is only allowed for insecure ones. */
export type RegistrySecurity = () => { registryHttps: boolean; insecure: boolean };

interface CachedToken {
  token: string;
  expiresAt: number;
}

function basicHeader(c: Credentials): string {
  const bytes = new TextEncoder().encode(`${c.username}:${c.password}`);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return `Basic ${btoa(bin)}`;
}

/** A URL for messages: no query string (pre-signed URLs carry secrets there), no user info. */
export function safeUrl(u: URL | string): string {
  const url = new URL(u.toString());
  return `${url.protocol}//${url.host}${url.pathname}`;
}

export class RegistryAuth {
  #challenge: Challenge | undefined;
  #tokens = new Map<string, CachedToken>();
  #creds: Credentials | undefined;
  #credsLoaded = false;

  constructor(
    readonly registry: string,
    readonly repository: string,
    private lookup: () => Promise<Credentials | undefined>,
    private fetchToken: TokenFetcher,
    private security: RegistrySecurity = () => ({ registryHttps: false, insecure: true }),
  ) {}

  get pullScope(): string {
    return `repository:${this.repository}:pull`;
  }

  async credentials(): Promise<Credentials | undefined> {
    if (!this.#credsLoaded) {
      this.#creds = await this.lookup();
      this.#credsLoaded = true;
    }
    return this.#creds;
  }

  /** Where the credentials come from, for messages (never the secret itself). */
  async credentialSource(): Promise<string | undefined> {
    return (await this.credentials())?.source;
  }

  /** Records the challenge of a 401 (from the /v2/ ping or any request). Returns false when it has none. */
  setChallenge(res: HttpResponse): boolean {
    const header = res.headers.get("www-authenticate");
    if (!header) return false;
    const challenges = parseWwwAuthenticate(header);
    const chosen = challenges.find((c) => c.scheme === "bearer") ??
      challenges.find((c) => c.scheme === "basic");
    if (!chosen) return false;
    this.#challenge = chosen;
    return true;
  }

  /** The Authorization header value for the next request (undefined: go anonymous). */
  async authorization(scope = this.pullScope): Promise<string | undefined> {
    const ch = this.#challenge;
    if (!ch) return undefined;
    if (ch.scheme === "basic") {
      const c = await this.credentials();
      return c ? basicHeader(c) : undefined;
    }
    const cached = this.#tokens.get(scope);
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    const token = await this.#requestToken(ch, scope);
    return `Bearer ${token}`;
  }

  /**
   * After a 401: takes the new challenge, forgets cached tokens. True when a new attempt can succeed
   * (a challenge we can answer); the caller retries once.
   */
  onUnauthorized(res: HttpResponse): boolean {
    this.#tokens.clear();
    return this.setChallenge(res);
  }

  async #requestToken(ch: Challenge, scope: string): Promise<string> {
    const url = this.#tokenUrl(ch, scope);
    const headers = new Headers({ "accept": "application/json" });
    const c = await this.credentials();
    if (c) {
      url.searchParams.set("account", c.username);
      headers.set("authorization", basicHeader(c));
    }
    const res = await this.fetchToken(url, headers);
    const where = `token server ${safeUrl(url)}`;
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel().catch(() => {});
      throw new TransportError(
        c
          ? `${this.registry}: authentication failed: ${where} rejected the credentials from ${c.source} (HTTP ${res.status})`
          : `${this.registry}: authentication required: ${where} refused anonymous access (HTTP ${res.status}); ` +
            `give credentials with --creds or an auth file`,
      );
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      throw new TransportError(`${this.registry}: ${where} answered HTTP ${res.status}`);
    }
    const text = await this.#readTokenReply(res, where);
    let doc: any;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new TransportError(`${this.registry}: ${where} sent a reply that is not JSON`);
    }
    const token = typeof doc?.token === "string" && doc.token
      ? doc.token
      : typeof doc?.access_token === "string" && doc.access_token
      ? doc.access_token
      : undefined;
    if (!token) throw new TransportError(`${this.registry}: ${where} sent no token`);
    // Tokens live 60 s unless the server says otherwise; refresh a little early.
    const lifetime = typeof doc.expires_in === "number" && doc.expires_in > 0 ? doc.expires_in : 60;
    this.#tokens.set(scope, { token, expiresAt: Date.now() + Math.max(1, lifetime - 5) * 1000 });
    return token;
  }

  /** The token server's URL for `scope`, from the Bearer challenge; refuses a realm that is not safe to use. */
  #tokenUrl(ch: Challenge, scope: string): URL {
    const realm = ch.params.realm;
    if (!realm) throw new TransportError(`${this.registry}: Bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new TransportError(`${this.registry}: Bearer challenge has an invalid realm`);
    }
    const sec = this.security();
    if (url.protocol === "http:" && sec.registryHttps && !sec.insecure) {
      // The registry is TLS-protected; its token server on plain HTTP would get the Basic credentials
      // (and hand out the token) in cleartext.
      throw new TransportError(
        `${this.registry}: refusing the token realm ${safeUrl(url)}: it is plain HTTP while the registry ` +
          `is served over HTTPS, so credentials and tokens would travel unencrypted ` +
          `(use --tls-verify=false or mark the registry insecure in registries.conf to allow it)`,
      );
    }
    if (ch.params.service) url.searchParams.set("service", ch.params.service);
    for (const s of (ch.params.scope ?? scope).split(" ")) if (s) url.searchParams.append("scope", s);
    if (!url.searchParams.has("scope")) url.searchParams.append("scope", scope);
    return url;
  }

  /** A 200 token reply's text, read within MAX_TOKEN_BODY. */
  async #readTokenReply(res: HttpResponse, where: string): Promise<string> {
    const tooLarge = () =>
      new TransportError(
        `${this.registry}: ${where} sent a reply larger than ${
          kib(MAX_TOKEN_BODY)
        } (the limit for a token reply)`,
      );
    if (declaredOver(res.headers, MAX_TOKEN_BODY)) {
      await res.body?.cancel().catch(() => {});
      throw tooLarge();
    }
    try {
      const { bytes, over } = await readCapped(res.body ?? new Blob([]).stream(), MAX_TOKEN_BODY);
      if (over) throw tooLarge();
      return new TextDecoder().decode(bytes);
    } catch (e) {
      if (e instanceof TransportError) throw e;
      throw new TransportError(
        `${this.registry}: reading the reply of ${where} failed: ${
          e instanceof Error ? e.message : String(e)
        }`,
      );
    }
  }
}
