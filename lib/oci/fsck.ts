// Per-tag OCI checks on top of the repository fsck (docs/oci.md#fsck). Each problem becomes one
// stable error string `fsck: <code>: <tag>: <detail>`; nothing is changed.
import { describeError } from "../errors.ts";
import { RepoPathError } from "../repository/repo_fs.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import { sha256Digest } from "./digest.ts";
import { readSingleObjectStream } from "./image_store.ts";
import { isImageConfigMediaType } from "./media_types.ts";
import { configStreamId, decodeTag, encodeTag, layerStreamId, manifestStreamId } from "./tags.ts";

export interface OciFsckReport {
  ok: boolean;
  imagesChecked: number;
  imagesCorrupted: number;
  errors: string[];
}

const SEAL_LABEL = "containers.composefs.fsverity";

/** Tag file names, read strictly below the repository (a symlinked refs dir is not followed). */
function tagNames(repo: Repository): string[] {
  try {
    return repo.fs.list("streams/refs/oci").map((e) => e.name);
  } catch (e) {
    if (e instanceof RepoPathError && e.code === "not-found") return [];
    throw e;
  }
}

async function readJsonStream(
  repo: Repository,
  contentId: string,
  verity: ObjectId | null | undefined,
  type: bigint,
): Promise<{ bytes: Uint8Array; refs: Map<string, ObjectId> }> {
  const reader = await repo.openStream(contentId, verity ?? undefined, type);
  return { bytes: await readSingleObjectStream(repo, reader, contentId), refs: reader.namedRefs };
}

/** Checks one tag; returns its error strings (empty = healthy). */
async function checkTag(repo: Repository, encoded: string): Promise<string[]> {
  const name = decodeTag(encoded);
  const errors: string[] = [];
  const err = (code: string, detail: string) => errors.push(`fsck: ${code}: ${name}: ${detail}`);
  if (name.startsWith("@")) {
    err("invalid-ref-name", "tag names may not start with '@'");
    return errors;
  }
  let manifestDigest: string;
  try {
    const target = repo.fs.readLink(`streams/refs/oci/${encoded}`);
    const base = target.slice(target.lastIndexOf("/") + 1);
    if (!base.startsWith("oci-manifest-")) throw new Error(`points at ${target}`);
    manifestDigest = base.slice("oci-manifest-".length);
    repo.fs.resolve(`streams/refs/oci/${encoded}`); // inside the repository, or an error
  } catch (e) {
    err("ref-resolve-failed", describeError(e));
    return errors;
  }
  let manifest: { bytes: Uint8Array; refs: Map<string, ObjectId> };
  try {
    manifest = await readJsonStream(
      repo,
      manifestStreamId(manifestDigest),
      undefined,
      CONTENT_TYPE.OCI_MANIFEST,
    );
  } catch (e) {
    err("manifest-read-failed", describeError(e));
    return errors;
  }
  const gotManifest = sha256Digest(manifest.bytes);
  if (gotManifest !== manifestDigest) {
    err("manifest-digest-mismatch", `expected ${manifestDigest}, content hashes to ${gotManifest}`);
    return errors;
  }
  let m: any;
  try {
    m = JSON.parse(new TextDecoder().decode(manifest.bytes));
    if (typeof m?.config?.digest !== "string") throw new Error("no config descriptor");
  } catch (e) {
    err("manifest-parse-failed", describeError(e));
    return errors;
  }
  const configDigest: string = m.config.digest;
  const configVerity = manifest.refs.get(`config:${configDigest}`);
  if (!configVerity) {
    err("config-ref-missing", `manifest has no named ref config:${configDigest}`);
    return errors;
  }
  let config: { bytes: Uint8Array; refs: Map<string, ObjectId> };
  try {
    config = await readJsonStream(repo, configStreamId(configDigest), configVerity, CONTENT_TYPE.OCI_CONFIG);
  } catch (e) {
    err("config-read-failed", describeError(e));
    return errors;
  }
  const gotConfig = sha256Digest(config.bytes);
  if (gotConfig !== configDigest) {
    err("config-digest-mismatch", `expected ${configDigest}, content hashes to ${gotConfig}`);
    return errors;
  }
  let c: any;
  try {
    c = JSON.parse(new TextDecoder().decode(config.bytes));
  } catch (e) {
    err("config-parse-failed", describeError(e));
    return errors;
  }
  const layers: any[] = Array.isArray(m.layers) ? m.layers : [];
  if (isImageConfigMediaType(m.config.mediaType) || Array.isArray(c?.rootfs?.diff_ids)) {
    for (const diffId of (c?.rootfs?.diff_ids ?? []) as string[]) {
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
    const seal = c?.config?.Labels?.[SEAL_LABEL];
    if (typeof seal === "string") {
      try {
        await repo.openImage(seal);
      } catch (e) {
        err("seal-image-missing", `${SEAL_LABEL}=${seal}: ${describeError(e)}`);
      }
    }
  } else {
    for (const l of layers) {
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
  return errors;
}

/** Checks every tag, or only `image` when given. */
export async function ociFsck(repo: Repository, image?: string): Promise<OciFsckReport> {
  const names = image !== undefined ? [encodeTag(image)] : tagNames(repo);
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
