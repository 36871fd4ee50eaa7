// Where the containers/storage store is, the way containers/storage itself decides it: which
// storage.conf applies (root, rootless user, or under `podman unshare`), the graphroot it names or
// the defaults, the driver, and the additional read-only image stores. Rules and sources:
// docs/containers-storage.md ("Which store").
import { FormatError } from "../../../errors.ts";
import { parseTomlSubset, type TomlTable } from "../registry/toml_subset.ts";

export interface StorageLocation {
  root: string;
  /** The driver named in storage.conf, $STORAGE_DRIVER or the reference; else detected from the layout. */
  driver: string;
  /** Where the root came from (for messages). */
  from: string;
  /** `additionalimagestores` (storage.conf) or `imagestore=` items of $STORAGE_OPTS, in order. */
  additionalImageStores: string[];
  /** Whether containers/storage would use the per-user (rootless) store for this caller. */
  perUser: boolean;
}

const SYSTEM_CONFS = ["/etc/containers/storage.conf", "/usr/share/containers/storage.conf"];

interface Conf {
  /** `[storage]` of the file. */
  table: TomlTable;
  path: string;
}

async function readConf(path: string): Promise<Conf | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const s = parseTomlSubset(text, path).storage;
  return { table: s && typeof s === "object" && !Array.isArray(s) ? s as TomlTable : {}, path };
}

/** The uid containers/storage calls "rootless": the outer uid under `podman unshare`, else ours. */
export function rootlessUid(): number {
  const env = Deno.env.get("_CONTAINERS_ROOTLESS_UID");
  const n = env ? Number(env) : NaN;
  return Number.isInteger(n) && n >= 0 ? n : Deno.uid() ?? 0;
}

/** Whether we run inside the user namespace `podman unshare` (or a rootless podman) set up. */
export function inPodmanUserNamespace(): boolean {
  return !!Deno.env.get("_CONTAINERS_USERNS_CONFIGURED");
}

/** containers/storage's expandEnvPath: `$UID`, then `$VAR` / `${VAR}` from the environment. */
export function expandStoragePath(path: string, uid: number): string {
  return path.replaceAll("$UID", String(uid)).replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_, a, b) => Deno.env.get(a ?? b) ?? "",
  );
}

function strKey(conf: Conf | null, key: string): string | undefined {
  const v = conf?.table[key];
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** `[storage.options] additionalimagestores`, or the image stores named in $STORAGE_OPTS (which replaces them). */
function additionalStores(conf: Conf | null): string[] {
  const opts = Deno.env.get("STORAGE_OPTS");
  if (opts !== undefined) {
    const out: string[] = [];
    for (const item of opts.split(",")) {
      const m = /^\s*(?:overlay2?\.|\.)?(?:additional)?imagestore\s*=\s*(.*?)\s*$/i.exec(item);
      if (m && m[1]) out.push(m[1]);
    }
    return out;
  }
  const o = conf?.table.options;
  const list = o && typeof o === "object" && !Array.isArray(o)
    ? (o as TomlTable).additionalimagestores
    : undefined;
  if (list === undefined) return [];
  if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) {
    throw new FormatError(`${conf!.path}: storage.options.additionalimagestores is not a list of paths`);
  }
  return (list as string[]).filter((s) => s !== "");
}

function dataHome(): string {
  return Deno.env.get("XDG_DATA_HOME") || `${Deno.env.get("HOME") ?? ""}/.local/share`;
}

/** The storage.conf that applies: $CONTAINERS_STORAGE_CONF, else the user's (rootless), else the system's. */
async function confFor(perUser: boolean): Promise<{ system: Conf | null; conf: Conf | null }> {
  const env = Deno.env.get("CONTAINERS_STORAGE_CONF");
  let system: Conf | null = null;
  for (const p of env ? [env] : SYSTEM_CONFS) {
    system = await readConf(p);
    if (system) break;
  }
  if (env || !perUser) return { system, conf: system };
  const cfgHome = Deno.env.get("XDG_CONFIG_HOME") || `${Deno.env.get("HOME") ?? ""}/.config`;
  return { system, conf: await readConf(`${cfgHome}/containers/storage.conf`) };
}

/** The graphroot containers/storage would use when none is given explicitly. */
function defaultRoot(
  perUser: boolean,
  uid: number,
  system: Conf | null,
  conf: Conf | null,
): { root: string; from: string } {
  if (!perUser) {
    const g = strKey(conf, "graphroot");
    if (g) return { root: expandStoragePath(g, uid), from: `${conf!.path} graphroot` };
    return { root: "/var/lib/containers/storage", from: "default" };
  }
  // Rootless: the user's file's graphroot, else its rootless_storage_path, else the system file's
  // rootless_storage_path, else $XDG_DATA_HOME/containers/storage.
  for (
    const [c, key] of [[conf, "graphroot"], [conf, "rootless_storage_path"], [
      system,
      "rootless_storage_path",
    ]] as const
  ) {
    const v = strKey(c, key);
    if (v) return { root: expandStoragePath(v, uid), from: `${c!.path} ${key}` };
  }
  return { root: `${dataHome()}/containers/storage`, from: "default (rootless)" };
}

/**
 * The store to read: `explicitRoot` (--storage-root or the reference's `[driver@root]`), else
 * $CONTAINERS_GRAPHROOT inside `podman unshare`, else what storage.conf and the containers/storage
 * defaults give for this caller (root or rootless).
 */
export async function locateStorage(
  explicitRoot?: string,
  explicitDriver?: string,
): Promise<StorageLocation> {
  const uid = rootlessUid();
  const perUser = uid !== 0;
  const { system, conf } = await confFor(perUser);
  let root = explicitRoot;
  let from = "--storage-root";
  const unshareRoot = inPodmanUserNamespace() ? Deno.env.get("CONTAINERS_GRAPHROOT") : undefined;
  if (!root && unshareRoot) {
    root = unshareRoot;
    from = "podman unshare ($CONTAINERS_GRAPHROOT)";
  } else if (!root) {
    ({ root, from } = defaultRoot(perUser, uid, system, conf));
  }
  let driver = explicitDriver ?? (Deno.env.get("STORAGE_DRIVER") || strKey(conf, "driver") ||
    (perUser ? strKey(system, "driver") : undefined));
  if (driver === "overlay2") driver = "overlay";
  if (!driver) driver = await detectDriver(root);
  return { root, driver, from, additionalImageStores: additionalStores(conf), perUser };
}

/** containers/storage's own detection order for an existing store: the first `<driver>-layers` found. */
async function detectDriver(root: string): Promise<string> {
  for (const d of ["overlay", "btrfs", "zfs", "vfs", "devmapper", "aufs"]) {
    try {
      if ((await Deno.stat(`${root}/${d}-layers`)).isDirectory) return d;
    } catch { /* next */ }
  }
  return "overlay";
}
