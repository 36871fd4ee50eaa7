// What `cfsctl oci …` actions run (see cmd_oci*.ts): the OCI, EROFS and repository code, imported
// when an action starts rather than at start-up. Nothing but re-exports, and the mapping of a
// malformed digest on the command line to a usage error.
import { FormatError, UsageError } from "../errors.ts";
import { parseDigest as parseDigestData } from "../oci/digest.ts";
import { type OciImage, openImageByNameOrConfig } from "../oci/oci_image.ts";
import type { Repository } from "../repository/repository.ts";

export { listImages, tagImage, untagImage } from "../oci/image_store.ts";
export { imageListFields, inspectFields } from "../oci/image_json.ts";
export { OciImage, openImageByNameOrConfig } from "../oci/oci_image.ts";
export { computeImageId, treeAsStoredIn } from "../oci/image_tree.ts";
export { formatStats, pullImage } from "../oci/pull.ts";
export { formatLocalFetchStats } from "../oci/transport/containers_storage/layer_import.ts";
export { parsePlatform } from "../oci/platform.ts";
export { parseImageReference } from "../oci/reference.ts";
export { openImageSource } from "../oci/transport/open_source.ts";
export { remoteSourceFactory } from "../oci/transport/registry/open_remote.ts";
export { writeDumpfile } from "../dumpfile/write.ts";
export { ociFsck } from "../oci/fsck.ts";
export {
  importTarLayer,
  layerBytes,
  layerDumpLines,
  layerSummary,
  storedLayerVerity,
} from "../oci/stored_layer.ts";
export { mountRepositoryImage } from "../mount/repository_image.ts";
export { mountTweaksFromEnv } from "../mount/composefs.ts";
export { layerStreamId } from "../oci/tags.ts";
export { bstrToBytes } from "../util/bytes.ts";

/** A digest given on the command line: a malformed one is a usage error (exit code 2). */
export function parseDigest(s: string, what: string): ReturnType<typeof parseDigestData> {
  try {
    return parseDigestData(s, what);
  } catch (e) {
    if (e instanceof FormatError) throw new UsageError(`${e.message} (expected e.g. sha256:<64 hex digits>)`);
    throw e;
  }
}

/**
 * NAME as `oci dump`, `compute-id` and the boot commands take it: a tag, or `@<config digest>` with
 * optionally CONFIG_VERITY (ignored for a tag, as it always was). `@` + a malformed digest: a usage error.
 */
export async function openNamedImage(
  repo: Repository,
  name: string,
  configVerity?: string,
): Promise<OciImage> {
  if (!name.startsWith("@")) return await openImageByNameOrConfig(repo, name);
  parseDigest(name.slice(1), "config digest");
  return await openImageByNameOrConfig(
    repo,
    name,
    configVerity ? repo.parseObjectId(configVerity) : undefined,
  );
}
