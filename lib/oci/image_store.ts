// OCI images inside a composefs repository (docs/oci.md#identifiers): manifests and configs stored as
// splitstreams holding the raw JSON as one object, with named refs to layer streams and to the
// composefs EROFS images; tags as symlinks under streams/refs/oci/.
import { describeError, FormatError, IntegrityError, NotFoundError } from "../errors.ts";
import { repoFs, RepoPathError } from "../repository/repo_fs.ts";
import { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { SplitStreamWriter } from "../splitstream/mod.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import type { SplitStreamReader } from "../splitstream/mod.ts";
import { parseDigest, sha256Digest } from "./digest.ts";
import { isImageConfigMediaType } from "./media_types.ts";
import { configStreamId, decodeTag, encodeTag, manifestStreamId, tagRefName } from "./tags.ts";
import { parseJson } from "../util/json.ts";
import { concatBytes } from "../util/bytes.ts";

/** Named-ref keys on a config stream that point at EROFS images. */
export const IMAGE_REF_V2 = "composefs.image";
export const IMAGE_REF_V1 = "composefs.image.v1";
export const IMAGE_REF_BOOT_V2 = "composefs.image.boot";
export const IMAGE_REF_BOOT_V1 = "composefs.image.boot.v1";

/** The config-stream key for a format version: V0/V1 share the V1 slot (docs/oci.md#link). */
export function imageRefKey(version: 0 | 1 | 2, boot = false): string {
  if (version === 2) return boot ? IMAGE_REF_BOOT_V2 : IMAGE_REF_V2;
  return boot ? IMAGE_REF_BOOT_V1 : IMAGE_REF_V1;
}

/** Reads a stream whose payload is one external object (config/manifest JSON, blobs). */
export async function readSingleObjectStream(
  repo: Repository,
  reader: SplitStreamReader,
  what: string,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of reader.chunks()) {
    if (chunk.kind === "inline") parts.push(chunk.data);
    else parts.push(await repo.readObject(chunk.id));
  }
  if (parts.length === 1) return parts[0];
  const out = concatBytes(parts);
  if (out.length > 64 * 1024 * 1024) {
    throw new FormatError(`${what}: unexpectedly large (${out.length} bytes)`);
  }
  return out;
}

export interface StoredConfig {
  digest: string;
  verity: ObjectId;
  bytes: Uint8Array;
  json: any;
  /** Named refs of the config stream: diff_id → layer stream verity, composefs.image* → image id. */
  refs: Map<string, ObjectId>;
  isContainer: boolean;
  /** Layer keys in config order: diff_ids (containers) — for artifacts the manifest's layer digests. */
  diffIds: string[];
}

export interface StoredManifest {
  digest: string;
  verity: ObjectId;
  bytes: Uint8Array;
  json: any;
  refs: Map<string, ObjectId>;
  configDigest: string;
}

/** Opens a stored manifest by digest (verifying the JSON's sha256 against it). */
export async function openManifest(
  repo: Repository,
  digest: string,
  verity?: ObjectId,
): Promise<StoredManifest> {
  parseDigest(digest, "manifest digest");
  const id = manifestStreamId(digest);
  const v = verity ?? await repo.hasStream(id);
  if (!v) throw new NotFoundError(`no stored manifest ${digest}`);
  const reader = await repo.openStream(id, v, CONTENT_TYPE.OCI_MANIFEST);
  const bytes = await readSingleObjectStream(repo, reader, `manifest ${digest}`);
  if (sha256Digest(bytes) !== digest) {
    throw new IntegrityError(`stored manifest ${digest}: content digest mismatch`);
  }
  const json = parseJson(bytes, `manifest ${digest}`);
  const configDigest = json?.config?.digest;
  if (typeof configDigest !== "string") throw new FormatError(`manifest ${digest}: no config descriptor`);
  return { digest, verity: v, bytes, json, refs: reader.namedRefs, configDigest };
}

/** Opens a stored config by digest. */
export async function openConfig(
  repo: Repository,
  digest: string,
  verity?: ObjectId,
  manifest?: StoredManifest,
): Promise<StoredConfig> {
  parseDigest(digest, "config digest");
  const id = configStreamId(digest);
  const v = verity ?? await repo.hasStream(id);
  if (!v) throw new NotFoundError(`no stored config ${digest}`);
  const reader = await repo.openStream(id, v, CONTENT_TYPE.OCI_CONFIG);
  const bytes = await readSingleObjectStream(repo, reader, `config ${digest}`);
  if (sha256Digest(bytes) !== digest) {
    throw new IntegrityError(`stored config ${digest}: content digest mismatch`);
  }
  const json = parseJson(bytes, `config ${digest}`);
  const mt = manifest?.json?.config?.mediaType;
  const isContainer = mt === undefined ? Array.isArray(json?.rootfs?.diff_ids) : isImageConfigMediaType(mt);
  const diffIds: string[] = isContainer
    ? (json?.rootfs?.diff_ids ?? [])
    : (manifest?.json?.layers ?? []).map((l: any) => l.digest);
  return { digest, verity: v, bytes, json, refs: reader.namedRefs, isContainer, diffIds };
}

/** Stores config JSON with its named refs; returns the stream's verity. */
export async function writeConfigStream(
  repo: Repository,
  digest: string,
  bytes: Uint8Array,
  layerRefs: [string, ObjectId][],
  imageRefs: [string, ObjectId][] = [],
): Promise<ObjectId> {
  const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_CONFIG);
  w.writeExternal(await repo.ensureObject(bytes), bytes.length);
  for (const [k, v] of layerRefs) w.addNamedRef(k, v);
  for (const [k, v] of imageRefs) w.addNamedRef(k, v);
  return await repo.writeStream(configStreamId(digest), w);
}

/** Stores manifest JSON with `config:<digest>` and layer named refs; returns the stream's verity. */
export async function writeManifestStream(
  repo: Repository,
  digest: string,
  bytes: Uint8Array,
  configDigest: string,
  configVerity: ObjectId,
  layerRefs: [string, ObjectId][],
): Promise<ObjectId> {
  const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_MANIFEST);
  w.writeExternal(await repo.ensureObject(bytes), bytes.length);
  w.addNamedRef(`config:${configDigest}`, configVerity);
  for (const [k, v] of layerRefs) w.addNamedRef(k, v);
  return await repo.writeStream(manifestStreamId(digest), w);
}

export async function tagImage(repo: Repository, manifestDigest: string, name: string): Promise<void> {
  parseDigest(manifestDigest, "manifest digest");
  if (!(await repo.hasStream(manifestStreamId(manifestDigest)))) {
    throw new NotFoundError(`no stored manifest ${manifestDigest}`);
  }
  await repo.nameStream(manifestStreamId(manifestDigest), tagRefName(name));
}

export async function untagImage(repo: Repository, name: string): Promise<void> {
  const path = `${repo.path}/streams/refs/${tagRefName(name)}`;
  try {
    await Deno.lstat(path);
  } catch {
    throw new NotFoundError(`no image tagged ${JSON.stringify(name)}`);
  }
  await Deno.remove(path);
}

/** Tag → manifest digest, or `@sha256:…` / `sha256:…` manifest digests as they are. */
export async function resolveManifestDigest(repo: Repository, image: string): Promise<string> {
  if (image.startsWith("@")) return parseDigest(image.slice(1), "manifest digest").digest;
  const path = `${repo.path}/streams/refs/${tagRefName(image)}`;
  let target: string;
  try {
    target = await Deno.readLink(path);
  } catch {
    if (/^sha256:[0-9a-f]{64}$/.test(image)) return image;
    throw new NotFoundError(`no image named ${JSON.stringify(image)}`);
  }
  const base = target.slice(target.lastIndexOf("/") + 1);
  if (!base.startsWith("oci-manifest-")) {
    throw new FormatError(`tag ${image}: points at ${target}, not a manifest`);
  }
  return parseDigest(base.slice("oci-manifest-".length), `tag ${image} target`).digest;
}

export interface ImageListEntry {
  name: string;
  manifestDigest: string;
  isContainer: boolean;
  architecture: string;
  os: string;
  created: string | null;
  layerCount: number;
  referrerCount: number;
  /** Set when the tag cannot be read (dangling, looping, outward, damaged): the other fields are empty. */
  error?: string;
}

/**
 * Every tag with what `oci images` shows, sorted by name. A tag that cannot be read does not hide
 * the others: it is listed with `error` set (docs/repository-safety.md).
 */
export async function listImages(repo: Repository): Promise<ImageListEntry[]> {
  const fs = repoFs(repo);
  let names: string[];
  try {
    names = fs.list("streams/refs/oci").map((e) => e.name);
  } catch (e) {
    if (e instanceof RepoPathError && e.code === "not-found") return [];
    throw e;
  }
  const out: ImageListEntry[] = [];
  for (const enc of names) {
    const name = decodeTag(enc);
    try {
      out.push(await describeTag(repo, enc, name));
    } catch (e) {
      out.push({
        name,
        manifestDigest: "",
        isContainer: false,
        architecture: "",
        os: "",
        created: null,
        layerCount: 0,
        referrerCount: 0,
        error: describeError(e),
      });
    }
  }
  return out;
}

async function describeTag(repo: Repository, enc: string, name: string): Promise<ImageListEntry> {
  // The tag must resolve, inside the repository, to a manifest stream's object.
  const rel = `streams/refs/oci/${enc}`;
  const fs = repoFs(repo);
  const target = fs.readLink(rel);
  const base = target.slice(target.lastIndexOf("/") + 1);
  if (!base.startsWith("oci-manifest-")) {
    throw new FormatError(`tag ${name}: points at ${target}, not a manifest`);
  }
  const real = fs.resolve(rel);
  if (!/^objects\/[0-9a-f]{2}\/[0-9a-f]+$/.test(real)) {
    throw new FormatError(`tag ${name}: leads to ${real}, not a stored manifest`);
  }
  const manifestDigest = parseDigest(base.slice("oci-manifest-".length), `tag ${name} target`).digest;
  const m = await openManifest(repo, manifestDigest);
  const c = await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m);
  return {
    name,
    manifestDigest,
    isContainer: c.isContainer,
    architecture: c.isContainer ? String(c.json?.architecture ?? "") : "",
    os: c.isContainer ? String(c.json?.os ?? "") : "",
    created: typeof c.json?.created === "string" ? c.json.created : null,
    layerCount: Array.isArray(m.json?.layers) ? m.json.layers.length : 0,
    referrerCount: await countReferrers(repo, manifestDigest),
  };
}

async function countReferrers(repo: Repository, subject: string): Promise<number> {
  let n = 0;
  try {
    for await (const _ of Deno.readDir(`${repo.path}/streams/refs/oci-referrers/${encodeTag(subject)}`)) n++;
  } catch { /* none */ }
  return n;
}

export { ObjectId };
