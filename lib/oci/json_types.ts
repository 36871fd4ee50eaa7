// The OCI JSON documents the code reads — image manifest, image config, image index — typed with the
// fields it uses (docs/oci.md#identifiers). JSON parsed from disk or from the network is `unknown`
// until one of the `as…` checks below has looked at the fields the callers rely on; each caller
// says in its own words what is wrong when a check fails.

/** A content descriptor: what a manifest or an index says about a blob it points at. */
export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
  artifactType?: string;
  urls?: string[];
}

/** An image manifest (OCI or Docker schema 2): one config and the layers, in order. */
export interface OciManifest {
  schemaVersion?: number;
  mediaType?: string;
  artifactType?: string;
  config: OciDescriptor;
  /** Empty when the document has no `layers` array. */
  layers: OciDescriptor[];
  subject?: OciDescriptor;
  annotations?: Record<string, string>;
}

/** An image config: the platform, the creation time, the runtime config and the layers' diff_ids. */
export interface OciImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: { Labels?: Record<string, string>; [field: string]: unknown };
  rootfs?: { type?: string; diff_ids?: string[] };
  [field: string]: unknown;
}

/** An image index (or Docker manifest list): one descriptor per platform's manifest. */
export interface OciIndex {
  schemaVersion?: number;
  mediaType?: string;
  manifests: OciDescriptor[];
  annotations?: Record<string, string>;
}

export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * `doc` as a manifest, or undefined when it has no config descriptor with a string digest. A
 * missing `layers` array reads as no layers; each layer descriptor's fields are checked where they
 * are used (checkDescriptor on pull, layerDigests on a stored manifest).
 */
export function asManifest(doc: unknown): OciManifest | undefined {
  if (!isJsonObject(doc) || !isJsonObject(doc.config) || typeof doc.config.digest !== "string") {
    return undefined;
  }
  const layers = Array.isArray(doc.layers) ? doc.layers : [];
  return { ...doc, layers } as unknown as OciManifest;
}

/** `doc` as an image config: a document that is not a JSON object has none of the fields. */
export function asImageConfig(doc: unknown): OciImageConfig {
  return isJsonObject(doc) ? doc as OciImageConfig : {};
}

/** The config's `rootfs.diff_ids` when it is an array of strings, else undefined. */
export function configDiffIds(config: OciImageConfig): string[] | undefined {
  const ids: unknown = config.rootfs?.diff_ids;
  if (!Array.isArray(ids) || ids.some((d) => typeof d !== "string")) return undefined;
  return ids as string[];
}

/** Whether the config has a `rootfs.diff_ids` array at all (a container config without a media type). */
export function hasDiffIdArray(config: OciImageConfig): boolean {
  return Array.isArray(config.rootfs?.diff_ids);
}

/** `doc` as an index, or undefined when it has no `manifests` array. */
export function asIndex(doc: unknown): OciIndex | undefined {
  if (!isJsonObject(doc) || !Array.isArray(doc.manifests)) return undefined;
  return doc as unknown as OciIndex;
}
