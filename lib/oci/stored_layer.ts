// One stored layer stream, as `oci layer` shows it and `oci import-layer` writes it
// (docs/oci.md#identifiers): its summary, its tar entries as dumpfile lines, its original bytes.
import { NotFoundError } from "../errors.ts";
import { entryLine, hardlinkLine } from "../dumpfile/write.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { reassembleStream, SplitStreamWriter } from "../splitstream/mod.ts";
import { type LeafContent, newDirectory, newLeaf } from "../tree/tree.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import { statOf } from "./flatten.ts";
import { layerChunks } from "./image_tree.ts";
import { type SplitTarEntry, splitTarInto, tarEntriesFromSplitstream } from "./layer_split.ts";
import { layerStreamId } from "./tags.ts";

/** The verity of the stream stored for a diff_id (or an artifact layer digest); NotFoundError if none. */
export async function storedLayerVerity(repo: Repository, diffId: string): Promise<ObjectId> {
  const verity = await repo.hasStream(layerStreamId(diffId));
  if (!verity) throw new NotFoundError(`layer ${diffId} is not in the repository`);
  return verity;
}

export interface LayerSummary {
  diffId: string;
  verity: ObjectId;
  /** The layer's uncompressed size: inline bytes plus every referenced object's size. */
  size: number;
  entryCount: number;
  externalObjects: number;
  externalSize: number;
  inlineSize: number;
}

/** Sizes and entry count of a stored tar layer (each distinct object's size is counted per reference). */
export async function layerSummary(
  repo: Repository,
  diffId: string,
  verity: ObjectId,
): Promise<LayerSummary> {
  const reader = await repo.openStream(layerStreamId(diffId), verity);
  let externalSize = 0;
  let inlineSize = 0;
  const sizes = new Map<string, number>();
  for await (const c of reader.chunks()) {
    if (c.kind === "inline") inlineSize += c.data.length;
    else {
      const hex = c.id.hex();
      if (!sizes.has(hex)) sizes.set(hex, (await Deno.stat(repo.objectPath(c.id))).size);
      externalSize += sizes.get(hex)!;
    }
  }
  let entryCount = 0;
  for await (const _ of tarEntriesFromSplitstream(layerChunks(repo, diffId, verity))) entryCount++;
  return {
    diffId,
    verity,
    size: inlineSize + externalSize,
    entryCount,
    externalObjects: reader.objectRefs.length,
    externalSize,
    inlineSize,
  };
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

/** The layer's tar entries as dumpfile lines (without the newline), in archive order. */
export async function* layerDumpLines(
  repo: Repository,
  diffId: string,
  verity: ObjectId,
): AsyncGenerator<string> {
  for await (const e of tarEntriesFromSplitstream(layerChunks(repo, diffId, verity))) {
    yield tarEntryDumpLine(e);
  }
}

/** The layer's original bytes: a tar layer's archive, or an artifact layer's raw blob. */
export function layerBytes(repo: Repository, diffId: string, verity: ObjectId): ReadableStream<Uint8Array> {
  // Any content type: tar layers and raw artifact blobs come back the same way.
  return reassembleStream(layerChunks(repo, diffId, verity, null), (id) => repo.openObjectStream(id));
}

/**
 * Imports an uncompressed tar whose sha256 must equal `diffId` as the layer stream for it (and names
 * the stream `streams/refs/NAME` when given); returns the stream's verity.
 */
export async function importTarLayer(
  repo: Repository,
  diffId: string,
  tar: ReadableStream<Uint8Array>,
  name?: string,
): Promise<ObjectId> {
  await repo.checkWritable();
  const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_LAYER);
  await splitTarInto(tar, repo, w, { expectedDiffId: diffId });
  return await repo.writeStream(layerStreamId(diffId), w, name);
}
