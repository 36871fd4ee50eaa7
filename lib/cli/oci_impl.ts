// What `cfsctl oci …` actions run (see cmd_oci.ts): the OCI, EROFS and repository code, imported
// when an action starts rather than at start-up.
import { createHash } from "node:crypto";
import { FormatError, IntegrityError, UsageError } from "../errors.ts";
import { parseDigest as parseDigestData } from "../oci/digest.ts";
import { openConfig, openManifest, resolveManifestDigest } from "../oci/image_store.ts";
import { layerChunks } from "../oci/image_tree.ts";
import { statOf } from "../oci/flatten.ts";
import { reassembleSplitstream, type SplitTarEntry } from "../oci/layer_split.ts";
import { entryLine, hardlinkLine } from "../dumpfile/write.ts";
import { type LeafContent, newDirectory, newLeaf } from "../tree/tree.ts";
import type { Repository } from "../repository/repository.ts";

export { fsverityDigest } from "../fsverity/hasher.ts";
export { writeErofs } from "../erofs/writer.ts";
export {
  imageRefKey,
  listImages,
  openConfig,
  openManifest,
  resolveManifestDigest,
  tagImage,
  untagImage,
} from "../oci/image_store.ts";
export { buildImageTree, layerChunks, treeAsStoredIn } from "../oci/image_tree.ts";
export { formatStats, pullImage } from "../oci/pull.ts";
export { formatLocalFetchStats } from "../oci/transport/containers_storage/layer_import.ts";
export { parsePlatform } from "../oci/platform.ts";
export { parseImageReference } from "../oci/reference.ts";
export { openImageSource } from "../oci/transport/open_source.ts";
export { remoteSourceFactory } from "../oci/transport/registry/open_remote.ts";
export { writeDumpfile } from "../dumpfile/write.ts";
export { layerStreamId } from "../oci/tags.ts";
export { ociFsck } from "../oci/fsck.ts";
export { reassembleSplitstream, splitTarInto, tarEntriesFromSplitstream } from "../oci/layer_split.ts";
export { SplitStreamWriter } from "../splitstream/mod.ts";
export { CONTENT_TYPE } from "../oci/content_types.ts";
export { mountRepositoryImage } from "../mount/repository_image.ts";
export { mountTweaksFromEnv } from "../mount/composefs.ts";
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
 * NAME (a tag) or `@sha256:…` (a config digest, whose layers are re-verified by hashing) → the
 * config digest and the layer diff_ids, for dump and compute-id (docs/oci.md#link).
 */
export async function resolveConfig(repo: Repository, name: string, configVerity?: string) {
  if (name.startsWith("@")) {
    const digest = parseDigest(name.slice(1), "config digest").digest;
    const cfg = await openConfig(repo, digest, configVerity ? repo.parseObjectId(configVerity) : undefined);
    if (!configVerity) {
      for (const diffId of cfg.diffIds) {
        const h = createHash("sha256");
        for await (
          const c of reassembleSplitstream(layerChunks(repo, diffId), (id) => repo.openObjectStream(id))
        ) {
          h.update(c);
        }
        const got = "sha256:" + h.digest("hex");
        if (got !== diffId) throw new IntegrityError(`layer ${diffId}: stored stream hashes to ${got}`);
      }
    }
    return cfg;
  }
  const manifestDigest = await resolveManifestDigest(repo, name);
  const m = await openManifest(repo, manifestDigest);
  return await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m);
}

/** One dumpfile line for a tar entry as `oci layer --dumpfile` prints it (nlink always 1). */
export function tarEntryDumpLine(e: SplitTarEntry): string {
  if (e.kind === "hardlink") return hardlinkLine(e.path, e.linkTarget);
  const stat = statOf(e);
  if (e.kind === "dir") return entryLine(e.path, newDirectory(stat), 1);
  const content: LeafContent = e.kind === "file"
    ? (e.content ?? { type: "inline", data: new Uint8Array() })
    : e.kind === "symlink"
    ? { type: "symlink", target: e.linkTarget }
    : e.kind === "chardev"
    ? { type: "chardev", rdev: e.rdev }
    : e.kind === "blockdev"
    ? { type: "blockdev", rdev: e.rdev }
    : { type: "fifo" };
  return entryLine(e.path, newLeaf(stat, content), 1);
}
