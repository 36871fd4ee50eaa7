// The one shape of a splitstream chunk (docs/splitstream.md#chunks), as the reader hands chunks out and
// everything that walks them (tar read-back, flattening, reassembly, fsck, fetch) takes them in.
import type { ObjectId } from "../fsverity/object_id.ts";

/** Bytes stored in the stream itself (a record may come as several consecutive inline chunks). */
export interface InlineChunk {
  kind: "inline";
  data: Uint8Array;
}

/** A reference to a stored object whose whole content stands at this place in the stream. */
export interface ExternalChunk {
  kind: "external";
  id: ObjectId;
}

export type SplitStreamChunk = InlineChunk | ExternalChunk;

/**
 * A sequence of chunks: a SplitStreamReader (it iterates its chunks) or any generator of them
 * (e.g. a stored layer's chunks, lib/oci/image_tree.ts).
 */
export type ChunkSource = AsyncIterable<SplitStreamChunk>;
