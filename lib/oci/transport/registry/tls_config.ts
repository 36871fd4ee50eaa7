// Per-registry TLS material the containers tools way (containers-certs.d(5)): `*.crt` files are extra
// CA certificates, `NAME.cert` + `NAME.key` a client certificate, found in `--cert-dir` or in the
// first existing `ROOT/HOST:PORT/` of the certs.d roots.
import { FormatError } from "../../../errors.ts";

export interface TlsMaterial {
  /** Extra trusted CAs (PEM), on top of the system store. */
  caCerts: string[];
  /** Client certificate chain and key (PEM), when the directory has a pair. */
  cert?: string;
  key?: string;
  /** The directory the material came from, for messages. */
  dir?: string;
}

export const DEFAULT_CERTS_D_ROOTS = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/** System CA bundles (Debian/Ubuntu, Fedora/RHEL, SUSE/Alpine-style), the first one present is used. */
const SYSTEM_BUNDLES = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/ca-bundle.pem",
  "/etc/ssl/cert.pem",
];

let systemBundle: string | null | undefined;

/**
 * The system trust store as one PEM bundle (Deno's own default is the Mozilla list compiled in, so the
 * administrator's additions would otherwise be ignored); null when none is found.
 */
export function systemCaBundle(): string | null {
  if (systemBundle !== undefined) return systemBundle;
  systemBundle = null;
  for (const p of SYSTEM_BUNDLES) {
    try {
      systemBundle = Deno.readTextFileSync(p);
      break;
    } catch { /* try the next */ }
  }
  return systemBundle;
}

/** certs.d roots: `$CFSCTL_CERTS_D` (colon-separated, for tests and unusual hosts) or the defaults. */
export function certsDRoots(env: (n: string) => string | undefined = (n) => Deno.env.get(n)): string[] {
  const v = env("CFSCTL_CERTS_D");
  return v ? v.split(":").filter((s) => s !== "") : DEFAULT_CERTS_D_ROOTS;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isDirectory;
  } catch {
    return false;
  }
}

/** Reads the TLS material of one directory. */
export async function readCertDir(dir: string): Promise<TlsMaterial> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile || e.isSymlink) names.push(e.name);
  } catch (e) {
    throw new FormatError(`cannot read certificate directory ${dir}: ${(e as Error).message}`);
  }
  names.sort();
  const out: TlsMaterial = { caCerts: [], dir };
  for (const n of names) {
    if (n.endsWith(".crt")) out.caCerts.push(await Deno.readTextFile(`${dir}/${n}`));
  }
  for (const n of names) {
    if (n.endsWith(".cert")) {
      const keyName = n.slice(0, -".cert".length) + ".key";
      if (!names.includes(keyName)) throw new FormatError(`${dir}/${n}: missing client key ${keyName}`);
      if (out.cert) continue; // one client identity per registry
      out.cert = await Deno.readTextFile(`${dir}/${n}`);
      out.key = await Deno.readTextFile(`${dir}/${keyName}`);
    } else if (n.endsWith(".key")) {
      const certName = n.slice(0, -".key".length) + ".cert";
      if (!names.includes(certName)) {
        throw new FormatError(`${dir}/${n}: missing client certificate ${certName}`);
      }
    }
  }
  return out;
}

/** TLS material for `hostPort`: `certDir` alone when given, else the first certs.d root that has it. */
export async function tlsMaterialFor(
  hostPort: string,
  opts: { certDir?: string; roots?: string[] } = {},
): Promise<TlsMaterial> {
  if (opts.certDir) return await readCertDir(opts.certDir);
  for (const root of opts.roots ?? certsDRoots()) {
    const d = `${root}/${hostPort}`;
    if (await isDir(d)) return await readCertDir(d);
  }
  return { caCerts: [] };
}
