// meta.json: the repository's format version, digest algorithm, feature flags and EROFS formats
// (docs/repository.md#meta-json). Serialised byte-exactly like the reference tool (pretty JSON, 2-space
// indent, fixed field order, trailing newline) so that repositories are interchangeable.
import { FormatError, RepositoryError } from "../errors.ts";
import type { HashAlgorithm } from "../fsverity/object_id.ts";

export const META_FILENAME = "meta.json";
export const REPO_FORMAT_VERSION = 1;

export type ErofsVersion = 0 | 1 | 2;

/** Read-only-compatible feature recorded when the default EROFS format is V1. */
export const FEATURE_V1_EROFS = "v1_erofs";

const KNOWN_INCOMPAT: readonly string[] = [];
const KNOWN_RO_COMPAT: readonly string[] = [FEATURE_V1_EROFS];

export interface FeatureFlags {
  compatible: string[];
  readOnlyCompatible: string[];
  incompatible: string[];
}

export interface ErofsFormats {
  default: ErofsVersion;
  /** Additional formats committed beside the default one (sorted, unique, never the default). */
  extra: ErofsVersion[];
}

export interface RepoMeta {
  version: number;
  /** e.g. `fsverity-sha512-12` */
  algorithm: string;
  features: FeatureFlags;
  /** Absent in files written before EROFS formats were recorded; see `effectiveErofsFormats`. */
  erofsFormats?: ErofsFormats;
}

export type RepoAlgorithmName = "fsverity-sha256-12" | "fsverity-sha512-12";

/** Parses `fsverity-<sha256|sha512>-<lg>`; only lg 12 (4 KiB blocks) is supported. */
export function parseAlgorithm(s: string): HashAlgorithm {
  const m = /^fsverity-(sha256|sha512)-(\d+)$/.exec(s);
  if (!m) {
    throw new FormatError(
      `invalid algorithm ${JSON.stringify(s)} (expected fsverity-sha256-12 or fsverity-sha512-12)`,
    );
  }
  if (m[2] !== "12") {
    throw new FormatError(`unsupported fs-verity block size 2^${m[2]} in ${JSON.stringify(s)} (only 12)`);
  }
  return m[1] as HashAlgorithm;
}

export function algorithmName(alg: HashAlgorithm): RepoAlgorithmName {
  return `fsverity-${alg}-12`;
}

/** Metadata for a new repository. */
export function newMeta(alg: HashAlgorithm, erofsDefault: ErofsVersion = 2): RepoMeta {
  return {
    version: REPO_FORMAT_VERSION,
    algorithm: algorithmName(alg),
    features: {
      compatible: [],
      readOnlyCompatible: erofsDefault === 1 ? [FEATURE_V1_EROFS] : [],
      incompatible: [],
    },
    erofsFormats: { default: erofsDefault, extra: [] },
  };
}

/** The exact bytes written to meta.json. */
export function serializeMeta(meta: RepoMeta): Uint8Array {
  // Key insertion order is the serialisation order.
  const obj: Record<string, unknown> = {
    version: meta.version,
    algorithm: meta.algorithm,
    features: {
      compatible: meta.features.compatible,
      "read-only-compatible": meta.features.readOnlyCompatible,
      incompatible: meta.features.incompatible,
    },
  };
  if (meta.erofsFormats) {
    const f: Record<string, unknown> = { default: meta.erofsFormats.default };
    if (meta.erofsFormats.extra.length > 0) f.extra = [...new Set(meta.erofsFormats.extra)].sort();
    obj.erofs_formats = f;
  }
  return new TextEncoder().encode(JSON.stringify(obj, null, 2) + "\n");
}

function stringArray(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
    throw new FormatError(`${what} must be an array of strings`);
  }
  return v as string[];
}

function erofsVersion(v: unknown, what: string): ErofsVersion {
  if (v === 0 || v === 1 || v === 2) return v;
  throw new FormatError(`${what}: unknown EROFS format version ${JSON.stringify(v)}`);
}

/** Parses meta.json bytes (structure only; `checkMeta` validates compatibility). */
export function parseMeta(data: Uint8Array): RepoMeta {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (e) {
    throw new FormatError(`invalid JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new FormatError("expected a JSON object");
  }
  const o = raw as Record<string, unknown>;
  if (
    typeof o.version !== "number" || !Number.isInteger(o.version) || o.version < 0 || o.version > 0xffffffff
  ) {
    throw new FormatError("missing or invalid field `version`");
  }
  if (typeof o.algorithm !== "string") throw new FormatError("missing or invalid field `algorithm`");
  parseAlgorithm(o.algorithm); // an unknown algorithm is a parse error, as for the reference tool
  const feats = (o.features ?? {}) as Record<string, unknown>;
  if (typeof feats !== "object" || Array.isArray(feats)) {
    throw new FormatError("`features` must be an object");
  }
  const meta: RepoMeta = {
    version: o.version,
    algorithm: o.algorithm,
    features: {
      compatible: stringArray(feats.compatible, "features.compatible"),
      readOnlyCompatible: stringArray(feats["read-only-compatible"], "features.read-only-compatible"),
      incompatible: stringArray(feats.incompatible, "features.incompatible"),
    },
  };
  if (o.erofs_formats !== undefined && o.erofs_formats !== null) {
    const f = o.erofs_formats as Record<string, unknown>;
    if (typeof f !== "object" || Array.isArray(f)) throw new FormatError("`erofs_formats` must be an object");
    const extra = f.extra === undefined || f.extra === null ? [] : f.extra;
    if (!Array.isArray(extra)) throw new FormatError("`erofs_formats.extra` must be an array");
    meta.erofsFormats = {
      default: erofsVersion(f.default, "erofs_formats.default"),
      extra: [...new Set(extra.map((x) => erofsVersion(x, "erofs_formats.extra")))].sort(),
    };
  }
  return meta;
}

/** The EROFS formats the repository commits: absent → V2; legacy `{default:2}` + `v1_erofs` → V1. */
export function effectiveErofsFormats(meta: RepoMeta): ErofsFormats {
  const f = meta.erofsFormats ?? { default: 2 as ErofsVersion, extra: [] };
  if (
    f.default === 2 && f.extra.length === 0 && meta.features.readOnlyCompatible.includes(FEATURE_V1_EROFS)
  ) {
    return { default: 1, extra: [] };
  }
  return { default: f.default, extra: f.extra.filter((v) => v !== f.default) };
}

export interface MetaCheck {
  alg: HashAlgorithm;
  /** Unknown read-only-compatible features (reported, not enforced, like the reference tool). */
  readOnlyReasons: string[];
}

/** Validates version, algorithm and features (refusing what this tool cannot handle). */
export function checkMeta(meta: RepoMeta, expected?: HashAlgorithm): MetaCheck {
  if (meta.version > REPO_FORMAT_VERSION) {
    throw new RepositoryError(
      `unsupported repository format version ${meta.version} (this tool supports up to ${REPO_FORMAT_VERSION})`,
    );
  }
  const alg = parseAlgorithm(meta.algorithm);
  if (expected && expected !== alg) {
    throw new RepositoryError(
      `repository algorithm ${meta.algorithm} does not match expected ${algorithmName(expected)}`,
    );
  }
  const unknownIncompat = meta.features.incompatible.filter((f) => !KNOWN_INCOMPAT.includes(f));
  if (unknownIncompat.length > 0) {
    throw new RepositoryError(
      `repository requires unknown incompatible features: ${JSON.stringify(unknownIncompat)}`,
    );
  }
  return {
    alg,
    readOnlyReasons: meta.features.readOnlyCompatible.filter((f) => !KNOWN_RO_COMPAT.includes(f)),
  };
}

/** Structural equality after normalisation (used for idempotent `init`). */
export function sameMeta(a: RepoMeta, b: RepoMeta): boolean {
  const norm = (m: RepoMeta) => {
    const f = effectiveErofsFormats(m);
    return JSON.stringify({
      v: m.version,
      a: m.algorithm,
      c: m.features.compatible,
      r: m.features.readOnlyCompatible.filter((x) => x !== FEATURE_V1_EROFS),
      i: m.features.incompatible,
      d: f.default,
      e: f.extra,
    });
  };
  return norm(a) === norm(b);
}

/** One-line summary for error messages: `fsverity-sha512-12, EROFS V2`. */
export function describeMeta(m: RepoMeta): string {
  const f = effectiveErofsFormats(m);
  const extra = f.extra.length ? ` (+${f.extra.map((v) => `V${v}`).join(", ")})` : "";
  return `${m.algorithm}, EROFS V${f.default}${extra}`;
}
