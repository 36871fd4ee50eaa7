// Registry credentials from containers-auth.json(5) files and `--creds`. Secrets stay inside the
// returned object: nothing here puts a password into an error message.
import { FormatError, InvalidArgumentError } from "../../../errors.ts";
import { DOCKER_HUB } from "./docker_reference.ts";

export interface Credentials {
  username: string;
  password: string;
  /** Where they came from (a file path or "--creds"), for messages. */
  source: string;
}

export interface CredentialLookupOptions {
  /** `--authfile`: when set, the only file consulted. */
  authfile?: string;
  /** `--creds USER[:PASS]`. */
  creds?: string;
  /** Environment (default: Deno.env). */
  env?: (name: string) => string | undefined;
}

/** Parses `USER:PASS` (the password may contain ':'). */
export function parseCredsOption(s: string): Credentials {
  const i = s.indexOf(":");
  if (i <= 0) throw new InvalidArgumentError("--creds must be USERNAME:PASSWORD");
  return { username: s.slice(0, i), password: s.slice(i + 1), source: "--creds" };
}

/**
 * The auth files to consult, in order (containers-auth.json(5)): `--authfile` or `$REGISTRY_AUTH_FILE`
 * alone; otherwise `$XDG_RUNTIME_DIR/containers/auth.json` (`/run/containers/UID/auth.json` without
 * XDG_RUNTIME_DIR), `$XDG_CONFIG_HOME/containers/auth.json` (~/.config), and Docker's
 * `$DOCKER_CONFIG/config.json` (~/.docker/config.json).
 */
export function authFilePaths(opts: CredentialLookupOptions = {}): { paths: string[]; explicit: boolean } {
  const env = opts.env ?? ((n: string) => Deno.env.get(n));
  if (opts.authfile) return { paths: [opts.authfile], explicit: true };
  const fromEnv = env("REGISTRY_AUTH_FILE");
  if (fromEnv) return { paths: [fromEnv], explicit: true };
  const paths: string[] = [];
  const runtime = env("XDG_RUNTIME_DIR");
  if (runtime) paths.push(`${runtime}/containers/auth.json`);
  else paths.push(`/run/containers/${Deno.uid() ?? 0}/auth.json`);
  const home = env("HOME") ?? "/root";
  paths.push(`${env("XDG_CONFIG_HOME") || `${home}/.config`}/containers/auth.json`);
  const dockerConfig = env("DOCKER_CONFIG");
  paths.push(dockerConfig ? `${dockerConfig}/config.json` : `${home}/.docker/config.json`);
  return { paths, explicit: false };
}

/** Keys to look up for `registry/repository`, most specific first (host/ns/repo … host). */
export function authKeys(registry: string, repository: string): string[] {
  const keys: string[] = [];
  const parts = repository.split("/");
  for (let n = parts.length; n >= 1; n--) keys.push(`${registry}/${parts.slice(0, n).join("/")}`);
  keys.push(registry);
  return keys;
}

/** Docker's legacy keys (`https://index.docker.io/v1/`, `http://host:5000/path`) reduced to a host. */
function normaliseLegacyKey(key: string): string {
  let k = key.replace(/^https?:\/\//, "");
  k = k.split("/")[0];
  if (k === "index.docker.io" || k === "registry-1.docker.io") k = DOCKER_HUB;
  return k;
}

function decodeAuth(auth: string, where: string): { username: string; password: string } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(atob(auth.trim()), (c) => c.charCodeAt(0)),
    );
  } catch {
    throw new FormatError(`${where}: "auth" is not valid base64`);
  }
  const i = text.indexOf(":");
  if (i < 0) throw new FormatError(`${where}: "auth" does not decode to USERNAME:PASSWORD`);
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}

/** Looks `registry/repository` up in one parsed auth file; undefined when it has no entry. */
export function findInAuthFile(
  doc: any,
  registry: string,
  repository: string,
  where: string,
): Credentials | undefined {
  const auths = doc?.auths;
  if (auths === undefined || auths === null) return undefined;
  if (typeof auths !== "object") throw new FormatError(`${where}: "auths" is not an object`);
  const fromEntry = (key: string): Credentials | undefined => {
    const e = auths[key];
    if (!e || typeof e !== "object" || typeof e.auth !== "string" || e.auth === "") return undefined;
    return { ...decodeAuth(e.auth, `${where}: auths[${JSON.stringify(key)}]`), source: where };
  };
  for (const k of authKeys(registry, repository)) {
    const c = fromEntry(k);
    if (c) return c;
  }
  for (const k of Object.keys(auths)) {
    if (/^https?:\/\//.test(k) || k === "index.docker.io" || k.includes("/v1")) {
      if (normaliseLegacyKey(k) === registry) {
        const c = fromEntry(k);
        if (c) return c;
      }
    }
  }
  return undefined;
}

/**
 * Credentials for `registry/repository`: `--creds` first, then the first auth file with a matching
 * entry. An explicitly named file that is missing is an error; default files may be absent.
 */
export async function lookupCredentials(
  registry: string,
  repository: string,
  opts: CredentialLookupOptions = {},
): Promise<Credentials | undefined> {
  if (opts.creds) return parseCredsOption(opts.creds);
  const { paths, explicit } = authFilePaths(opts);
  for (const p of paths) {
    let text: string;
    try {
      text = await Deno.readTextFile(p);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound && !explicit) continue;
      if (e instanceof Deno.errors.NotFound) throw new InvalidArgumentError(`auth file ${p} does not exist`);
      throw new FormatError(`${p}: cannot read auth file: ${(e as Error).message}`);
    }
    let doc: any;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new FormatError(`${p}: auth file is not valid JSON`);
    }
    const c = findInAuthFile(doc, registry, repository, p);
    if (c) return c;
  }
  return undefined;
}
