// An OCI image stored in a composefs repository (docs/oci.md#identifiers, docs/oci.md#link): a tag
// names a manifest stream, the manifest stream names its config stream (`config:<digest>`), and the
// config stream names the layer streams (by diff_id) and the composefs EROFS images
// (`composefs.image*`). `OciImage` walks that chain once; every `oci` command, `oci fsck`, pull and
// the boot code open images through it instead of following the links by hand.
import { FormatError, IntegrityError, NotFoundError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { ErofsVersion } from "../repository/meta.ts";
import type { Repository } from "../repository/repository.ts";
import type { SplitStreamReader } from "../splitstream/mod.ts";
import type { Directory } from "../tree/tree.ts";
import { concatBytes } from "../util/bytes.ts";
import { parseJson } from "../util/json.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import { parseDigest, sha256Digest } from "./digest.ts";
import { buildImageTree } from "./image_tree.ts";
import {
  asImageConfig,
  asManifest,
  configDiffIds,
  hasDiffIdArray,
  type OciImageConfig,
  type OciManifest,
} from "./json_types.ts";
import { verifyLayerDiffId } from "./layer_split.ts";
import { isImageConfigMediaType } from "./media_types.ts";
import { configStreamId, layerStreamId, manifestStreamId, tagRefName } from "./tags.ts";

/** Named-ref keys on a config stream that point at EROFS images. */
export const IMAGE_REF_V2 = "composefs.image";
export const IMAGE_REF_V1 = "composefs.image.v1";
export const IMAGE_REF_BOOT_V2 = "composefs.image.boot";
export const IMAGE_REF_BOOT_V1 = "composefs.image.boot.v1";

/** The config-stream key for a format version: V0/V1 share the V1 slot (docs/oci.md#link). */
export function imageRefKey(version: ErofsVersion, boot = false): string {
  if (version === 2) return boot ? IMAGE_REF_BOOT_V2 : IMAGE_REF_V2;
  return boot ? IMAGE_REF_BOOT_V1 : IMAGE_REF_V1;
}

/** Whether a config-stream named ref points at an EROFS image rather than at a layer. */
export function isImageRefKey(key: string): boolean {
  return key.startsWith("composefs.image");
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

export interface StoredManifest {
  digest: string;
  verity: ObjectId;
  bytes: Uint8Array;
  json: OciManifest;
  refs: Map<string, ObjectId>;
  configDigest: string;
}

export interface StoredConfig {
  digest: string;
  verity: ObjectId;
  bytes: Uint8Array;
  json: OciImageConfig;
  /** Named refs of the config stream: diff_id → layer stream verity, composefs.image* → image id. */
  refs: Map<string, ObjectId>;
  isContainer: boolean;
  /** Layer keys in config order: diff_ids (containers) — for artifacts the manifest's layer digests. */
  diffIds: string[];
}

/** A stored manifest or config stream, read and its content checked against its digest. */
async function readStoredJson(
  repo: Repository,
  kind: "manifest" | "config",
  digest: string,
  verity: ObjectId | undefined,
): Promise<{ verity: ObjectId; bytes: Uint8Array; refs: Map<string, ObjectId>; doc: unknown }> {
  parseDigest(digest, `${kind} digest`);
  const id = kind === "manifest" ? manifestStreamId(digest) : configStreamId(digest);
  const v = verity ?? await repo.hasStream(id);
  if (!v) throw new NotFoundError(`no stored ${kind} ${digest}`);
  const type = kind === "manifest" ? CONTENT_TYPE.OCI_MANIFEST : CONTENT_TYPE.OCI_CONFIG;
  const reader = await repo.openStream(id, v, type);
  const bytes = await readSingleObjectStream(repo, reader, `${kind} ${digest}`);
  if (sha256Digest(bytes) !== digest) {
    throw new IntegrityError(`stored ${kind} ${digest}: content digest mismatch`);
  }
  return { verity: v, bytes, refs: reader.namedRefs, doc: parseJson(bytes, `${kind} ${digest}`) };
}

/** Opens a stored manifest by digest (verifying the JSON's sha256 against it). */
export async function openManifest(
  repo: Repository,
  digest: string,
  verity?: ObjectId,
): Promise<StoredManifest> {
  const s = await readStoredJson(repo, "manifest", digest, verity);
  const json = asManifest(s.doc);
  if (!json) throw new FormatError(`manifest ${digest}: no config descriptor`);
  return { digest, verity: s.verity, bytes: s.bytes, json, refs: s.refs, configDigest: json.config.digest };
}

/** The layer digests a stored manifest lists, each checked to be a string. */
function layerDigests(manifest: StoredManifest): string[] {
  return manifest.json.layers.map((l, i) => {
    const d: unknown = (l as unknown as Record<string, unknown> | null)?.digest;
    if (typeof d !== "string") throw new FormatError(`manifest ${manifest.digest}: layer ${i} has no digest`);
    return d;
  });
}

/**
 * Opens a stored config by digest. Whether it is a container image comes from the manifest's config
 * media type when the manifest is known, else from the config having `rootfs.diff_ids`.
 */
export async function openConfig(
  repo: Repository,
  digest: string,
  verity?: ObjectId,
  manifest?: StoredManifest,
): Promise<StoredConfig> {
  const s = await readStoredJson(repo, "config", digest, verity);
  const json = asImageConfig(s.doc);
  const mt = manifest?.json.config.mediaType;
  const isContainer = mt === undefined ? hasDiffIdArray(json) : isImageConfigMediaType(mt);
  let diffIds: string[];
  if (isContainer) {
    const ids = json.rootfs?.diff_ids == null ? [] : configDiffIds(json);
    if (!ids) throw new FormatError(`config ${digest}: rootfs.diff_ids missing or malformed`);
    diffIds = ids;
  } else diffIds = manifest ? layerDigests(manifest) : [];
  return { digest, verity: s.verity, bytes: s.bytes, json, refs: s.refs, isContainer, diffIds };
}

/** The manifest digest a tag link's target names (`…/oci-manifest-<digest>`), or undefined. */
export function manifestDigestOfLink(target: string): string | undefined {
  const base = target.slice(target.lastIndexOf("/") + 1);
  return base.startsWith("oci-manifest-") ? base.slice("oci-manifest-".length) : undefined;
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
  const digest = manifestDigestOfLink(target);
  if (digest === undefined) throw new FormatError(`tag ${image}: points at ${target}, not a manifest`);
  return parseDigest(digest, `tag ${image} target`).digest;
}

/**
 * An image (or artifact) in the repository: its manifest and config as stored, the layer streams
 * and the EROFS images its config stream links.
 *
 * Trust (docs/oci.md#verification): opened through a tag or a manifest, the config stream is the one
 * the manifest's named ref names, so its refs to the layer streams are as trustworthy as the chain
 * above them. Opened by a config digest without the config stream's verity, nothing vouches for those
 * refs: `layersVouched` is false and `tree()` re-hashes every layer against its diff_id first.
 */
export class OciImage {
  private constructor(
    readonly repo: Repository,
    /** Absent when the image was opened by its config digest. */
    readonly manifest: StoredManifest | undefined,
    readonly config: StoredConfig,
    /** Whether something other than the config's own digest vouches for its layer refs. */
    readonly layersVouched: boolean,
  ) {}

  /** NAME as `oci inspect` and `oci mount` take it: a tag, `@sha256:<manifest>` or `sha256:<manifest>`. */
  static async open(repo: Repository, image: string): Promise<OciImage> {
    return await OciImage.openManifest(repo, await resolveManifestDigest(repo, image));
  }

  /** By manifest digest; `verity` (the manifest stream's) skips the lookup of its stream by name. */
  static async openManifest(repo: Repository, digest: string, verity?: ObjectId): Promise<OciImage> {
    const m = await openManifest(repo, digest, verity);
    const c = await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m);
    return new OciImage(repo, m, c, true);
  }

  /** By config digest, optionally with the config stream's verity (which then vouches for its refs). */
  static async openConfig(repo: Repository, digest: string, verity?: ObjectId): Promise<OciImage> {
    return new OciImage(repo, undefined, await openConfig(repo, digest, verity), verity !== undefined);
  }

  get manifestDigest(): string | undefined {
    return this.manifest?.digest;
  }
  get configDigest(): string {
    return this.config.digest;
  }
  get isContainer(): boolean {
    return this.config.isContainer;
  }
  /** Layer keys in order: diff_ids for a container image, the manifest's layer digests for an artifact. */
  get diffIds(): string[] {
    return this.config.diffIds;
  }
  /** Layer key → layer stream verity: the config stream's refs (a container) or the manifest's (an artifact). */
  get layerRefs(): Map<string, ObjectId> {
    const refs = this.isContainer ? this.config.refs : (this.manifest?.refs ?? new Map());
    const out = new Map<string, ObjectId>();
    for (const key of this.diffIds) {
      const v = refs.get(key);
      if (v) out.set(key, v);
    }
    return out;
  }
  /** The EROFS image linked for a format version (and the boot variant), if any. */
  imageId(version: ErofsVersion, boot = false): ObjectId | undefined {
    return this.config.refs.get(imageRefKey(version, boot));
  }
  /** The EROFS image to mount for a format version; NotFoundError saying how to get one when none is linked. */
  requireImageId(version: ErofsVersion, boot = false): ObjectId {
    const id = this.imageId(version, boot);
    if (id) return id;
    throw new NotFoundError(
      boot
        ? "No boot EROFS image linked — try pulling with --bootable"
        : "No composefs EROFS image linked — try re-pulling the image",
    );
  }
  /** Every linked EROFS image, by config-stream key. */
  get imageIds(): Map<string, ObjectId> {
    return new Map([...this.config.refs].filter(([k]) => isImageRefKey(k)));
  }
  get architecture(): string {
    return this.isContainer ? String(this.config.json.architecture ?? "") : "";
  }
  get os(): string {
    return this.isContainer ? String(this.config.json.os ?? "") : "";
  }
  get created(): string | null {
    const c = this.config.json.created;
    return typeof c === "string" ? c : null;
  }
  /** The manifest's layer count (0 when opened by config digest). */
  get layerCount(): number {
    return this.manifest?.json.layers.length ?? 0;
  }

  /** Re-hashes every layer stream and throws IntegrityError when one does not hash to its diff_id. */
  async verifyLayers(): Promise<void> {
    if (!this.isContainer) return;
    const refs = this.layerRefs;
    for (const diffId of this.diffIds) {
      const id = layerStreamId(diffId);
      const verity = refs.get(diffId) ?? await this.repo.hasStream(id);
      if (!verity) throw new NotFoundError(`layer ${diffId} is not in the repository`);
      const reader = await this.repo.openStream(id, verity, CONTENT_TYPE.OCI_LAYER);
      await verifyLayerDiffId(reader, (o) => this.repo.openObjectStream(o), diffId);
    }
  }

  /**
   * The merged file tree of the layers (docs/oci.md#flatten), read from the streams the config links;
   * when nothing vouches for those links the layers are re-hashed first (see the class comment).
   */
  async tree(): Promise<Directory> {
    if (!this.layersVouched) await this.verifyLayers();
    return await buildImageTree(this.repo, this.diffIds, this.layerRefs);
  }
}

/**
 * NAME as `oci dump`, `oci compute-id` and the boot commands take it: a tag, or `@<config digest>`
 * with optionally the config stream's verity (docs/oci.md#verification).
 */
export async function openImageByNameOrConfig(
  repo: Repository,
  name: string,
  configVerity?: ObjectId,
): Promise<OciImage> {
  if (name.startsWith("@")) {
    return await OciImage.openConfig(repo, parseDigest(name.slice(1), "config digest").digest, configVerity);
  }
  return await OciImage.open(repo, name);
}
