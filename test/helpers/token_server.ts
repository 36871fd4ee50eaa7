// A small Docker token server (distribution token auth) for tests: checks Basic credentials, issues
// RS256 JWTs whose x5c header carries a self-signed certificate that the registry trusts through its
// `rootcertbundle`, and records what each request asked for. Faults for tests of the client's limits:
// a reply that stalls after its first bytes, or a huge one (streamed, never buffered).
import { createPrivateKey, sign } from "node:crypto";

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** The certificate (PEM file) the registry must trust. */
  rootCertBundle: string;
  /** Requests seen: scope, account, whether Basic credentials were sent and accepted. */
  requests: { scope: string[]; account?: string; hadCredentials: boolean; accepted: boolean }[];
  /** Body bytes handed out by faulty replies (how much of a huge one the client pulled). */
  faultBytesSent: number;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface TokenServerOptions {
  /** user → password; a request without credentials is anonymous. */
  users: Record<string, string>;
  /** Give anonymous clients a token (with no access) instead of 401. */
  allowAnonymous?: boolean;
  /** Reply field for the token: `token` (default) or `access_token`. */
  field?: "token" | "access_token";
  expiresIn?: number;
  /** Instead of the token: a reply that stalls after a few bytes, or one of `huge` bytes. */
  fault?: "stall" | { huge: number };
}

function b64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function pemToDer(pem: string): Uint8Array {
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

export async function startTokenServer(dir: string, opts: TokenServerOptions): Promise<TokenServer> {
  await Deno.mkdir(dir, { recursive: true });
  const keyFile = `${dir}/token.key`;
  const certFile = `${dir}/token.crt`;
  const o = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "2",
      "-subj",
      "/CN=cfsctl test token issuer",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (o.code !== 0) throw new Error(`openssl: ${new TextDecoder().decode(o.stderr)}`);
  const key = createPrivateKey(await Deno.readTextFile(keyFile));
  const x5c = btoa(String.fromCharCode(...pemToDer(await Deno.readTextFile(certFile))));
  const service = "cfsctl-test-registry";
  const issuer = "cfsctl-test-issuer";
  const requests: TokenServer["requests"] = [];

  const stalled = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const state = { faultBytesSent: 0 };
  const faultReply = (fault: "stall" | { huge: number }): Response => {
    let left = fault === "stall" ? 0 : fault.huge;
    const chunk = new Uint8Array(65536).fill(0x20);
    const body = new ReadableStream<Uint8Array>({
      start(ctl) {
        const first = new TextEncoder().encode('{"token":"');
        ctl.enqueue(first);
        state.faultBytesSent += first.length;
        if (fault === "stall") stalled.add(ctl);
      },
      pull(ctl) {
        if (fault === "stall") return;
        if (left <= 0) return ctl.close();
        const n = Math.min(left, chunk.length);
        left -= n;
        state.faultBytesSent += n;
        ctl.enqueue(chunk.slice(0, n));
      },
      cancel() {},
    }, { highWaterMark: 0 });
    return new Response(body, { headers: { "content-type": "application/json" } });
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    const scope = url.searchParams.getAll("scope");
    const auth = req.headers.get("authorization");
    let user: string | undefined;
    let accepted = false;
    if (auth?.startsWith("Basic ")) {
      const text = atob(auth.slice(6));
      const i = text.indexOf(":");
      const u = text.slice(0, i);
      if (i > 0 && opts.users[u] !== undefined && opts.users[u] === text.slice(i + 1)) {
        user = u;
        accepted = true;
      }
    }
    requests.push({
      scope,
      account: url.searchParams.get("account") ?? undefined,
      hadCredentials: !!auth,
      accepted,
    });
    if (opts.fault) return faultReply(opts.fault);
    if (auth && !accepted) return new Response('{"details":"invalid credentials"}', { status: 401 });
    if (!auth && !opts.allowAnonymous) {
      return new Response('{"details":"authentication required"}', { status: 401 });
    }
    // Grant pull (and push, for setting up tests) on every requested repository to known users.
    const access = user
      ? scope.map((s) => {
        const [type, name, actions] = s.split(":");
        return { type, name, actions: actions.split(",").filter((a) => a === "pull" || a === "push") };
      })
      : [];
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: "JWT", alg: "RS256", x5c: [x5c] }));
    const claims = b64url(JSON.stringify({
      iss: issuer,
      sub: user ?? "",
      aud: service,
      exp: now + (opts.expiresIn ?? 300),
      nbf: now - 10,
      iat: now,
      jti: crypto.randomUUID(),
      access,
    }));
    const sig = b64url(sign("RSA-SHA256", new TextEncoder().encode(`${header}.${claims}`), key));
    const token = `${header}.${claims}.${sig}`;
    return Response.json({ [opts.field ?? "token"]: token, expires_in: opts.expiresIn ?? 300 });
  });
  const port = server.addr.port;
  const stop = async () => {
    for (const c of stalled) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await server.shutdown();
  };
  return {
    get faultBytesSent() {
      return state.faultBytesSent;
    },
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    rootCertBundle: certFile,
    requests,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
