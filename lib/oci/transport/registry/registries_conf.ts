// containers-registries.conf(5), the parts that change where a pull goes: [[registry]] entries with
// prefix/location rewriting, insecure, blocked, mirrors (with mirror-by-digest-only/pull-from-mirror),
// and the v1 [registries.insecure]/[registries.block] lists. Search registries and short-name aliases
// do not apply: docker:// references are always fully qualified.
import { FormatError, PermissionError } from "../../../errors.ts";
import { DOCKER_HUB, type DockerReference } from "./docker_reference.ts";
import { parseTomlSubset, type TomlTable, type TomlValue } from "./toml_subset.ts";

export interface MirrorEntry {
  location: string;
  insecure: boolean;
  pullFromMirror: "all" | "digest-only" | "tag-only";
}

export interface RegistryEntry {
  prefix: string;
  location: string;
  insecure: boolean;
  blocked: boolean;
  mirrorByDigestOnly: boolean;
  mirrors: MirrorEntry[];
}

export interface RegistriesConf {
  registries: RegistryEntry[];
  /** The files read, for messages. */
  files: string[];
}

/** One place to try pulling from, in order. */
export interface PullEndpoint {
  /** Registry name (host[:port]) to connect to. */
  registry: string;
  repository: string;
  insecure: boolean;
  mirror: boolean;
}

export const SYSTEM_REGISTRIES_CONF = "/etc/containers/registries.conf";

function str(v: TomlValue | undefined, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new FormatError(`${what} must be a string`);
  return v;
}
function bool(v: TomlValue | undefined, what: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== "boolean") throw new FormatError(`${what} must be true or false`);
  return v;
}
function strList(v: TomlValue | undefined, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
    throw new FormatError(`${what} must be an array of strings`);
  }
  return v as string[];
}

/** Strips a scheme and trailing slashes people put in location fields. */
function cleanLocation(s: string): string {
  return s.replace(/^https?:\/\//, "").replace(/\/+$/, "");
}

function parseEntries(doc: TomlTable, where: string): RegistryEntry[] {
  const out: RegistryEntry[] = [];
  const regs = doc.registry;
  if (regs !== undefined) {
    if (!Array.isArray(regs)) throw new FormatError(`${where}: registry must be [[registry]] tables`);
    for (const [i, r] of regs.entries()) {
      const w = `${where}: [[registry]] #${i + 1}`;
      if (typeof r !== "object" || Array.isArray(r)) throw new FormatError(`${w}: not a table`);
      const location = cleanLocation(str(r.location, `${w} location`) ?? "");
      const prefix = cleanLocation(str(r.prefix, `${w} prefix`) ?? location);
      if (!prefix) throw new FormatError(`${w}: needs a location or a prefix`);
      const mirrors: MirrorEntry[] = [];
      const ms = r.mirror ?? [];
      if (!Array.isArray(ms)) throw new FormatError(`${w}: mirror must be [[registry.mirror]] tables`);
      for (const m of ms) {
        if (typeof m !== "object" || Array.isArray(m)) throw new FormatError(`${w}: mirror: not a table`);
        const pfm = str(m["pull-from-mirror"], `${w} pull-from-mirror`) ?? "all";
        if (pfm !== "all" && pfm !== "digest-only" && pfm !== "tag-only") {
          throw new FormatError(`${w}: pull-from-mirror must be all, digest-only or tag-only`);
        }
        mirrors.push({
          location: cleanLocation(str(m.location, `${w} mirror location`) ?? ""),
          insecure: bool(m.insecure, `${w} mirror insecure`),
          pullFromMirror: pfm,
        });
      }
      out.push({
        prefix,
        location: location || prefix,
        insecure: bool(r.insecure, `${w} insecure`),
        blocked: bool(r.blocked, `${w} blocked`),
        mirrorByDigestOnly: bool(r["mirror-by-digest-only"], `${w} mirror-by-digest-only`),
        mirrors,
      });
    }
  }
  // Version 1 format: plain lists of registry hosts.
  const v1 = doc.registries;
  if (v1 !== undefined && typeof v1 === "object" && !Array.isArray(v1)) {
    const get = (k: string) => {
      const t = v1[k];
      return typeof t === "object" && !Array.isArray(t)
        ? strList(t.registries, `${where}: registries.${k}`)
        : [];
    };
    const byHost = (h: string) => {
      let e = out.find((x) => x.prefix === h);
      if (!e) {
        e = {
          prefix: h,
          location: h,
          insecure: false,
          blocked: false,
          mirrorByDigestOnly: false,
          mirrors: [],
        };
        out.push(e);
      }
      return e;
    };
    for (const h of get("insecure")) byHost(cleanLocation(h)).insecure = true;
    for (const h of get("block")) byHost(cleanLocation(h)).blocked = true;
  }
  return out;
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Loads registries.conf: `path` when given (only that file), else `$CONTAINERS_REGISTRIES_CONF`, else
 * the system file plus its `registries.conf.d/*.conf` drop-ins (a later entry with the same prefix
 * replaces an earlier one). A missing file means no configuration.
 */
export async function loadRegistriesConf(path?: string): Promise<RegistriesConf> {
  const files: string[] = [];
  const explicit = path ?? Deno.env.get("CONTAINERS_REGISTRIES_CONF");
  const main = explicit ?? SYSTEM_REGISTRIES_CONF;
  const list = [main];
  if (explicit === undefined) {
    try {
      const names: string[] = [];
      for await (const e of Deno.readDir(`${SYSTEM_REGISTRIES_CONF}.d`)) {
        if (e.name.endsWith(".conf")) names.push(e.name);
      }
      names.sort();
      list.push(...names.map((n) => `${SYSTEM_REGISTRIES_CONF}.d/${n}`));
    } catch { /* no drop-in directory */ }
  }
  let registries: RegistryEntry[] = [];
  for (const f of list) {
    const text = await readIfExists(f);
    if (text === undefined) {
      if (f === explicit && path !== undefined) throw new FormatError(`${f}: no such registries.conf file`);
      continue;
    }
    files.push(f);
    for (const e of parseEntries(parseTomlSubset(text, f), f)) {
      registries = registries.filter((x) => x.prefix !== e.prefix);
      registries.push(e);
    }
  }
  return { registries, files };
}

/** True when `prefix` covers `name` (`host/path`): equal, or followed by `/`; `*.domain` matches subdomains. */
function prefixMatches(prefix: string, name: string): boolean {
  if (prefix.startsWith("*.")) {
    const host = name.split("/")[0].split(":")[0];
    return host.endsWith(prefix.slice(1));
  }
  return name === prefix || name.startsWith(prefix + "/");
}

export function findRegistryEntry(conf: RegistriesConf, ref: DockerReference): RegistryEntry | undefined {
  const name = `${ref.registry}/${ref.repository}`;
  let best: RegistryEntry | undefined;
  for (const e of conf.registries) {
    if (!prefixMatches(e.prefix, name)) continue;
    if (!best || e.prefix.length > best.prefix.length) best = e;
  }
  return best;
}

function rewrite(
  location: string,
  prefix: string,
  ref: DockerReference,
): { registry: string; repository: string } {
  const name = `${ref.registry}/${ref.repository}`;
  const rest = prefix.startsWith("*.") ? name.slice(name.indexOf("/")) : name.slice(prefix.length);
  const full = prefix.startsWith("*.") ? ref.registry + rest : location + rest;
  const i = full.indexOf("/");
  if (i < 0) throw new FormatError(`registries.conf: rewriting ${name} with ${location} gives no repository`);
  let repository = full.slice(i + 1);
  const registry = full.slice(0, i);
  if (registry === DOCKER_HUB && !repository.includes("/")) repository = `library/${repository}`;
  return { registry, repository };
}

/** Where to pull `ref` from, mirrors first; throws PermissionError when the registry is blocked. */
export function pullEndpoints(conf: RegistriesConf, ref: DockerReference): PullEndpoint[] {
  const e = findRegistryEntry(conf, ref);
  if (!e) return [{ registry: ref.registry, repository: ref.repository, insecure: false, mirror: false }];
  if (e.blocked) {
    throw new PermissionError(
      `registry ${ref.registry}/${ref.repository} is blocked in ${
        conf.files.join(", ") || "registries.conf"
      }`,
    );
  }
  const out: PullEndpoint[] = [];
  for (const m of e.mirrors) {
    const byDigest = ref.digest !== undefined;
    if ((e.mirrorByDigestOnly || m.pullFromMirror === "digest-only") && !byDigest) continue;
    if (m.pullFromMirror === "tag-only" && byDigest) continue;
    out.push({ ...rewrite(m.location, e.prefix, ref), insecure: m.insecure, mirror: true });
  }
  out.push({ ...rewrite(e.location, e.prefix, ref), insecure: e.insecure, mirror: false });
  return out;
}
