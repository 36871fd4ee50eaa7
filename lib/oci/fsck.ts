// Per-tag OCI checks on top of the repository fsck (docs/oci.md#fsck). Each problem becomes one
// stable error string `fsck: <code>: <tag>: <detail>`; nothing is changed.
import { describeError, FormatError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import { tagFileNames } from "./image_store.ts";
import { sha256Digest } from "./digest.ts";
import {
  asImageConfig,
  asManifest,
  hasDiffIdArray,
  type OciImageConfig,
  type OciManifest,
} from "./json_types.ts";
import { isImageConfigMediaType } from "./media_types.ts";
import { manifestDigestOfLink, readSingleObjectStream } from "./oci_image.ts";
import { parseJson } from "../util/json.ts";
import { configStreamId, decodeTag, encodeTag, layerStreamId, manifestStreamId } from "./tags.ts";

export interface OciFsckReport {
  ok: boolean;
  imagesChecked: number;
  imagesCorrupted: number;
  errors: string[];
}

const SEAL_LABEL = "containers.composefs.fsverity";

/** Records one problem of the tag being checked. */
type Report = (code: string, detail: string) => void;

interface CheckedStream {
  bytes: Uint8Array;
  refs: Map<string, ObjectId>;
  json: unknown;
}

/**
 * Reads a manifest or config stream, checks its content against `digest` and parses it; reports
 * `<kind>-read-failed`, `<kind>-digest-mismatch` or `<kind>-parse-failed` and returns undefined.
 */
async function readChecked(
  repo: Repository,
  kind: "manifest" | "config",
  digest: string,
  verity: ObjectId | undefined,
  err: Report,
): Promise<CheckedStream | undefined> {
  const contentId = kind === "manifest" ? manifestStreamId(digest) : configStreamId(digest);
  const type = kind === "manifest" ? CONTENT_TYPE.OCI_MANIFEST : CONTENT_TYPE.OCI_CONFIG;
  let bytes: Uint8Array, refs: Map<string, ObjectId>;
  try {
    const reader = await repo.openStream(contentId, verity, type);
    bytes = await readSingleObjectStream(repo, reader, contentId);
    refs = reader.namedRefs;
  } catch (e) {
    err(`${kind}-read-failed`, describeError(e));
    return undefined;
  }
  const got = sha256Digest(bytes);
  if (got !== digest) {
    err(`${kind}-digest-mismatch`, `expected ${digest}, content hashes to ${got}`);
    return undefined;
  }
  try {
    return { bytes, refs, json: parseJson(bytes, contentId) };
  } catch (e) {
    err(`${kind}-parse-failed`, describeError(e));
    return undefined;
  }
}

/** The manifest digest the tag names, checked to resolve inside the repository. */
function tagTarget(repo: Repository, encoded: string, err: Report): string | undefined {
  try {
    const target = repo.fs.readLink(`streams/refs/oci/${encoded}`);
    const digest = manifestDigestOfLink(target);
    if (digest === undefined) throw new FormatError(`points at ${target}`);
    repo.fs.resolve(`streams/refs/oci/${encoded}`); // inside the repository, or an error
    return digest;
  } catch (e) {
    err("ref-resolve-failed", describeError(e));
    return undefined;
  }
}

/** A container image: every diff_id has a named ref, a layer stream and its object; the seal image exists. */
async function checkContainerLayers(
  repo: Repository,
  config: CheckedStream,
  json: OciImageConfig,
  err: Report,
): Promise<void> {
  for (const diffId of (json.rootfs?.diff_ids ?? []) as string[]) {
    const ref = config.refs.get(diffId);
    if (!ref) {
      err("layer-ref-missing", `config has no named ref for ${diffId}`);
      continue;
    }
    const stream = await repo.hasStream(layerStreamId(diffId)).catch(() => null);
    if (!stream) {
      err("layer-stream-missing", `no streams/${layerStreamId(diffId)}`);
      continue;
    }
    if (!(await repo.hasObject(ref))) {
      err("layer-check-failed", `layer ${diffId}: object ${ref.hex()} missing`);
    }
  }
  const seal = json.config?.Labels?.[SEAL_LABEL];
  if (typeof seal === "string") {
    try {
      await repo.openImage(seal);
    } catch (e) {
      err("seal-image-missing", `${SEAL_LABEL}=${seal}: ${describeError(e)}`);
    }
  }
}

/** An artifact: every layer digest has a named ref on the manifest and its object. */
async function checkArtifactLayers(
  repo: Repository,
  manifest: CheckedStream,
  json: OciManifest,
  err: Report,
): Promise<void> {
  for (const l of json.layers) {
    const ref = manifest.refs.get(l.digest);
    if (!ref) {
      err("artifact-layer-ref-missing", `manifest has no named ref for ${l.digest}`);
      continue;
    }
    if (!(await repo.hasObject(ref))) {
      err("artifact-layer-object-missing", `${l.digest}: object ${ref.hex()} missing`);
    }
  }
}

/**
 * Checks one tag; returns its error strings (empty = healthy). It follows the chain OciImage opens
 * (tag → manifest → config → layers) one link at a time, so that each broken link gets its own code.
 */
async function checkTag(repo: Repository, encoded: string): Promise<string[]> {
  const name = decodeTag(encoded);
  const errors: string[] = [];
  const err: Report = (code, detail) => errors.push(`fsck: ${code}: ${name}: ${detail}`);
  if (name.startsWith("@")) {
    err("invalid-ref-name", "tag names may not start with '@'");
    return errors;
  }
  const manifestDigest = tagTarget(repo, encoded, err);
  if (manifestDigest === undefined) return errors;
  const manifest = await readChecked(repo, "manifest", manifestDigest, undefined, err);
  if (!manifest) return errors;
  const m = asManifest(manifest.json);
  if (!m) {
    err("manifest-parse-failed", "no config descriptor");
    return errors;
  }
  const configDigest = m.config.digest;
  const configVerity = manifest.refs.get(`config:${configDigest}`);
  if (!configVerity) {
    err("config-ref-missing", `manifest has no named ref config:${configDigest}`);
    return errors;
  }
  const config = await readChecked(repo, "config", configDigest, configVerity, err);
  if (!config) return errors;
  const c = asImageConfig(config.json);
  if (isImageConfigMediaType(m.config.mediaType) || hasDiffIdArray(c)) {
    await checkContainerLayers(repo, config, c, err);
  } else await checkArtifactLayers(repo, manifest, m, err);
  return errors;
}

/** Checks every tag, or only `image` when given. */
export async function ociFsck(repo: Repository, image?: string): Promise<OciFsckReport> {
  const names = image !== undefined ? [encodeTag(image)] : tagFileNames(repo);
  const r: OciFsckReport = { ok: true, imagesChecked: 0, imagesCorrupted: 0, errors: [] };
  for (const enc of names) {
    r.imagesChecked++;
    const errs = await checkTag(repo, enc);
    if (errs.length) {
      r.imagesCorrupted++;
      r.errors.push(...errs);
    }
  }
  r.ok = r.errors.length === 0;
  return r;
}
