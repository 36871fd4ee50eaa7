// From stored layer streams to the image's file tree and its committed EROFS images (docs/oci.md#flatten,
// #link).
import { FormatError, NotFoundError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import type { Directory } from "../tree/tree.ts";
import { zeroNanoseconds } from "../tree/transform.ts";
import { Flattener } from "./flatten.ts";
import { tarEntriesFromSplitstream } from "./layer_split.ts";
import type { SplitStreamChunk } from "../splitstream/chunk.ts";
import type { SplitStreamReader } from "../splitstream/reader.ts";
import { layerStreamId } from "./tags.ts";

/** Opens a stored layer stream (content type `ocilayer` unless told otherwise). */
export async function openLayerStream(
  repo: Repository,
  diffId: string,
  verity?: ObjectId,
  /** null: any content type (raw artifact blobs too). */
  contentType: bigint | null = CONTENT_TYPE.OCI_LAYER,
): Promise<SplitStreamReader> {
  const id = layerStreamId(diffId);
  const v = verity ?? await repo.hasStream(id);
  if (!v) throw new NotFoundError(`layer ${diffId} is not in the repository`);
  return await repo.openStream(id, v, contentType ?? undefined);
}

/** The chunks of a stored layer stream (opened on the first pull). */
export async function* layerChunks(
  repo: Repository,
  diffId: string,
  verity?: ObjectId,
  /** null: any content type (raw artifact blobs too). */
  contentType: bigint | null = CONTENT_TYPE.OCI_LAYER,
): AsyncGenerator<SplitStreamChunk> {
  yield* (await openLayerStream(repo, diffId, verity, contentType)).chunks();
}

/** Flattens the layers (config order) into one tree, with the OCI root transform applied. */
export async function buildImageTree(
  repo: Repository,
  diffIds: string[],
  verities?: Map<string, ObjectId>,
): Promise<Directory> {
  const f = new Flattener();
  for (const diffId of diffIds) {
    f.beginLayer();
    try {
      const layer = await openLayerStream(repo, diffId, verities?.get(diffId));
      for await (const e of tarEntriesFromSplitstream(layer)) {
        f.apply(e);
      }
    } catch (err) {
      if (err instanceof FormatError || err instanceof NotFoundError) err.within(`layer ${diffId}`);
      throw err;
    }
  }
  return f.finish();
}

/**
 * Makes `tree` say what an image of `version` stores, so that a dump of it agrees with the image
 * (docs/c-compatibility.md, "one truth"): the V2 format (composefs-rs) keeps no mtime nanoseconds,
 * so they become 0 (a PAX mtime of 100.5 is 100.0 in a V2 image); V0/V1 store everything. In place.
 */
export function treeAsStoredIn(tree: Directory, version: 0 | 1 | 2): Directory {
  if (version === 2) zeroNanoseconds(tree);
  return tree;
}

export { commitImages, computeImageId } from "../repository/commit_images.ts";
