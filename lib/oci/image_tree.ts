// From stored layer streams to the image's file tree and its committed EROFS images (docs/oci.md#flatten,
// #link).
import { FormatError, NotFoundError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import type { Directory } from "../tree/tree.ts";
import { zeroNanoseconds } from "../tree/transform.ts";
import { writeErofsTo } from "../erofs/writer.ts";
import { Flattener } from "./flatten.ts";
import { type SplitChunk, tarEntriesFromSplitstream } from "./layer_split.ts";
import { layerStreamId } from "./tags.ts";

/** The chunks of a stored layer stream in the shape the tar code reads. */
export async function* layerChunks(
  repo: Repository,
  diffId: string,
  verity?: ObjectId,
  /** null: any content type (raw artifact blobs too). */
  contentType: bigint | null = CONTENT_TYPE.OCI_LAYER,
): AsyncGenerator<SplitChunk> {
  const id = layerStreamId(diffId);
  const v = verity ?? await repo.hasStream(id);
  if (!v) throw new NotFoundError(`layer ${diffId} is not in the repository`);
  const reader = await repo.openStream(id, v, contentType ?? undefined);
  for await (const c of reader.chunks()) yield c.kind === "inline" ? { inline: c.data } : { external: c.id };
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
      for await (const e of tarEntriesFromSplitstream(layerChunks(repo, diffId, verities?.get(diffId)))) {
        f.apply({ entry: e, content: e.content });
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

/** Writes one EROFS image per configured format; returns [version, image id] pairs, default first. */
export async function commitImages(repo: Repository, tree: Directory): Promise<[0 | 1 | 2, ObjectId][]> {
  const out: [0 | 1 | 2, ObjectId][] = [];
  for (const version of repo.erofsVersions()) {
    // In 1 MiB pieces: the image of a big tree need not sit in memory beside the tree.
    out.push([version, await repo.writeImageFrom((sink) => writeErofsTo(tree, { version }, sink))]);
  }
  return out;
}
