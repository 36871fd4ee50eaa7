// /usr/lib/composefs/setup-root-conf.toml (docs/boot.md "setup-root configuration"): which of the
// image's /etc and /var get the deployment's state, and whether the root itself is transient. Only
// this small TOML subset is read (tables, `key = true|false|"string"`, comments); unknown tables and
// keys are ignored, a malformed line or an unknown mount type is an error naming the line.
import { FormatError } from "../errors.ts";

export type MountType = "none" | "bind" | "overlay" | "transient";

export interface SubdirConfig {
  mount?: MountType;
  transient: boolean;
}

export interface SetupRootConfig {
  root: { transient: boolean };
  etc: SubdirConfig;
  var: SubdirConfig;
}

export function defaultConfig(): SetupRootConfig {
  return { root: { transient: false }, etc: { transient: false }, var: { transient: false } };
}

const MOUNT_TYPES: MountType[] = ["none", "bind", "overlay", "transient"];

function parseValue(raw: string, where: string): string | boolean {
  if (raw === "true") return true;
  if (raw === "false") return false;
  const m = /^"([^"\\]*)"$/.exec(raw) ?? /^'([^']*)'$/.exec(raw);
  if (m) return m[1];
  throw new FormatError(`${where}: expected true, false or a quoted string, got ${raw}`);
}

export function parseSetupRootConfig(text: string, file: string): SetupRootConfig {
  const cfg = defaultConfig();
  let table = "";
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const where = `${file}:${n + 1}`;
    // A '#' outside quotes starts a comment.
    const line = lines[n].replace(/^((?:[^#"']|"[^"]*"|'[^']*')*)#.*$/, "$1").trim();
    if (line === "") continue;
    const t = /^\[\s*([A-Za-z0-9_.-]+)\s*\]$/.exec(line);
    if (t) {
      table = t[1];
      continue;
    }
    const kv = /^([A-Za-z0-9_-]+)\s*=\s*(.+)$/.exec(line);
    if (!kv) throw new FormatError(`${where}: not a TOML table header or key = value line: ${line}`);
    const key = kv[1];
    const value = parseValue(kv[2].trim(), where);
    if (table === "root" && key === "transient") {
      if (typeof value !== "boolean") {
        throw new FormatError(`${where}: [root] transient must be true or false`);
      }
      cfg.root.transient = value;
    } else if ((table === "etc" || table === "var") && (key === "mount" || key === "transient")) {
      const sub = cfg[table];
      if (key === "transient") {
        if (typeof value !== "boolean") {
          throw new FormatError(`${where}: [${table}] transient must be true or false`);
        }
        sub.transient = value;
      } else {
        if (typeof value !== "string" || !MOUNT_TYPES.includes(value as MountType)) {
          throw new FormatError(
            `${where}: [${table}] mount must be one of ${MOUNT_TYPES.map((m) => `"${m}"`).join(", ")}`,
          );
        }
        sub.mount = value as MountType;
      }
    }
  }
  return cfg;
}

/** The mount type in effect for /etc or /var: `mount` if set, else transient, else the default. */
export function effectiveMount(sub: SubdirConfig, fallback: MountType): MountType {
  return sub.mount ?? (sub.transient ? "transient" : fallback);
}
