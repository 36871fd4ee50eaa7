// Starts Debian's `docker-registry` (distribution 2.8) on loopback for tests: plain HTTP, TLS with a
// test CA and a CA-signed leaf (made with the openssl CLI), htpasswd Basic auth, or token auth.
// Images are pushed with skopeo from OCI layouts.

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  /** Server leaf for 127.0.0.1/localhost, signed by the CA. */
  leafCert: string;
  leafKey: string;
  /** Client certificate signed by the CA (for mutual TLS). */
  clientCert: string;
  clientKey: string;
}

async function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", ...opts }).output();
  if (o.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${o.code}): ${new TextDecoder().decode(o.stderr)}`);
  }
  return new TextDecoder().decode(o.stdout);
}

/** A test CA, a server leaf for 127.0.0.1 and a client certificate, all in `dir`. */
export async function makePki(dir: string): Promise<Pki> {
  await Deno.mkdir(dir, { recursive: true });
  const p = (n: string) => `${dir}/${n}`;
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.crt"),
    "-days",
    "2",
    "-subj",
    "/CN=cfsctl test CA",
  ]);
  await Deno.writeTextFile(
    p("leaf.ext"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await Deno.writeTextFile(p("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  for (
    const [name, subj, ext] of [["leaf", "/CN=127.0.0.1", "leaf.ext"], ["client", "/CN=client", "client.ext"]]
  ) {
    await run("openssl", [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.csr`),
      "-subj",
      subj,
    ]);
    await run("openssl", [
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p("ca.crt"),
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-out",
      p(`${name}.crt`),
      "-days",
      "2",
      "-extfile",
      p(ext),
    ]);
  }
  return {
    dir,
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    leafCert: p("leaf.crt"),
    leafKey: p("leaf.key"),
    clientCert: p("client.crt"),
    clientKey: p("client.key"),
  };
}

/** A free loopback TCP port (bound and released; good enough for tests). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export interface RegistryOptions {
  tls?: { cert: string; key: string; clientCas?: string[] };
  /** An htpasswd file (bcrypt, from `htpasswd -Bbn`). */
  htpasswd?: string;
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
}

export interface RegistryServer {
  /** `127.0.0.1:PORT`, as used in docker:// references. */
  host: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function htpasswdFile(path: string, user: string, pass: string): Promise<string> {
  await Deno.writeTextFile(path, await run("htpasswd", ["-Bbn", user, pass]));
  return path;
}

export async function startRegistry(dir: string, opts: RegistryOptions = {}): Promise<RegistryServer> {
  await Deno.mkdir(`${dir}/data`, { recursive: true });
  const port = freePort();
  const lines = [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${dir}/data`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "  secret: cfsctl-test-secret",
  ];
  if (opts.tls) {
    lines.push("  tls:", `    certificate: ${opts.tls.cert}`, `    key: ${opts.tls.key}`);
    if (opts.tls.clientCas) lines.push("    clientcas:", ...opts.tls.clientCas.map((c) => `      - ${c}`));
  }
  if (opts.htpasswd) {
    lines.push("auth:", "  htpasswd:", "    realm: cfsctl-test", `    path: ${opts.htpasswd}`);
  } else if (opts.token) {
    lines.push(
      "auth:",
      "  token:",
      `    realm: ${opts.token.realm}`,
      `    service: ${opts.token.service}`,
      `    issuer: ${opts.token.issuer}`,
      `    rootcertbundle: ${opts.token.rootCertBundle}`,
    );
  }
  await Deno.writeTextFile(`${dir}/config.yml`, lines.join("\n") + "\n");
  const log = await Deno.open(`${dir}/registry.log`, { write: true, create: true, truncate: true });
  const child = new Deno.Command("docker-registry", {
    args: ["serve", `${dir}/config.yml`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Keep the pipes drained into a log file (the registry blocks when they fill).
  const drain = Promise.all([
    child.stdout.pipeTo(log.writable, { preventClose: true }).catch(() => {}),
    child.stderr.pipeTo(new WritableStream({ write: (c) => void log.write(c).catch(() => {}) })).catch(
      () => {},
    ),
  ]);
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`docker-registry did not start: ${await Deno.readTextFile(`${dir}/registry.log`)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await drain;
    log.close();
  };
  return { host: `127.0.0.1:${port}`, port, dir, stop, [Symbol.asyncDispose]: stop };
}

/** `skopeo copy` from an OCI layout (or any skopeo source) into the registry, TLS unchecked. */
export async function pushImage(
  source: string,
  dest: string,
  opts: { creds?: string; all?: boolean } = {},
): Promise<void> {
  // --preserve-digests: skopeo would otherwise compress uncompressed layers (new manifest digest).
  const args = ["copy", "-q", "--dest-tls-verify=false", "--preserve-digests"];
  if (opts.creds) args.push("--dest-creds", opts.creds);
  if (opts.all) args.push("--all");
  args.push(source, dest);
  await run("skopeo", args);
}
