// Shared by the local transports: index/manifest walking over a blob lookup function.
import { FormatError, NotFoundError } from "../../errors.ts";
import { parseJson } from "../../util/json.ts";
import { verifyDigest } from "../digest.ts";
import { asIndex, isJsonObject } from "../json_types.ts";
import { isIndexMediaType, isManifestMediaType, MT } from "../media_types.ts";
import { type Platform, selectPlatformEntry } from "../platform.ts";
import type { Descriptor, ResolvedManifest } from "./source.ts";
import { checkDescriptor, checkDescriptorSize, MAX_JSON_BLOB } from "./source.ts";

/** The media type of a manifest/index document (field, else guessed from its shape). */
export function documentMediaType(doc: unknown, fallback?: string): string {
  const d = isJsonObject(doc) ? doc : {};
  if (typeof d.mediaType === "string") return d.mediaType;
  if (fallback) return fallback;
  if (Array.isArray(d.manifests)) return MT.OCI_INDEX;
  if (d.schemaVersion === 1) return MT.DOCKER_SCHEMA1;
  return MT.OCI_MANIFEST;
}

/**
 * Follows a descriptor (possibly an index, possibly nested indexes) down to one image manifest for
 * `platform`. `readBlob` returns the raw bytes of a blob; every blob read here is digest-checked.
 */
export async function resolveToManifest(
  desc: Descriptor,
  platform: Platform,
  readBlob: (d: Descriptor) => Promise<Uint8Array>,
  where: string,
  depth = 0,
): Promise<ResolvedManifest> {
  if (depth > 8) throw new FormatError(`${where}: image indexes nested more than 8 deep`);
  checkDescriptor(desc, `${where}: manifest`, MAX_JSON_BLOB);
  const bytes = await readBlob(desc);
  verifyDigest(bytes, desc.digest, `${where}: manifest ${desc.digest}`);
  checkDescriptorSize(bytes, desc, `${where}: manifest`);
  const doc = parseJson(bytes, `${where}: manifest ${desc.digest}`);
  const mediaType = documentMediaType(doc, desc.mediaType);
  if (isIndexMediaType(mediaType)) {
    const entries: Descriptor[] = asIndex(doc)?.manifests ?? [];
    if (entries.length === 0) throw new NotFoundError(`${where}: index ${desc.digest} lists no manifests`);
    entries.forEach((m, i) =>
      checkDescriptor(m, `${where}: index ${desc.digest} manifests[${i}]`, MAX_JSON_BLOB)
    );
    const chosen = selectPlatformEntry(entries, platform, `${where} index ${desc.digest}`);
    return await resolveToManifest(chosen, platform, readBlob, where, depth + 1);
  }
  if (mediaType === MT.DOCKER_SCHEMA1 || mediaType === MT.DOCKER_SCHEMA1_SIGNED) {
    throw new FormatError(
      `${where}: Docker schema 1 manifests are not supported (convert the image to schema 2 or OCI)`,
    );
  }
  if (!isManifestMediaType(mediaType)) {
    throw new FormatError(`${where}: unsupported manifest media type ${mediaType}`);
  }
  return { bytes, digest: desc.digest, mediaType };
}
