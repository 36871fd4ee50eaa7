// Rebuilds the original byte stream from a splitstream's chunks (`cat`, `oci layer`, diff_id checks,
// fetch): inline data and the contents of the referenced objects, in order. The one reassembler.
import type { ObjectId } from "../fsverity/object_id.ts";
import type { ChunkSource } from "./chunk.ts";

const PIECE_MAX = 1 << 20;

export type ObjectOpener = (
  id: ObjectId,
) =>
  | AsyncIterable<Uint8Array>
  | ReadableStream<Uint8Array>
  | Promise<AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>>;

/** Yields the reassembled stream; object contents come in pieces of at most 1 MiB. */
export async function* reassemble(
  chunks: ChunkSource,
  openObject: ObjectOpener,
): AsyncGenerator<Uint8Array> {
  for await (const c of chunks) {
    if (c.kind === "inline") {
      if (c.data.length > 0) yield c.data;
      continue;
    }
    const src = await openObject(c.id);
    for await (const piece of src as AsyncIterable<Uint8Array>) {
      if (piece.length <= PIECE_MAX) yield piece;
      else for (let o = 0; o < piece.length; o += PIECE_MAX) yield piece.subarray(o, o + PIECE_MAX);
    }
  }
}

/** The same as a ReadableStream. */
export function reassembleStream(chunks: ChunkSource, openObject: ObjectOpener): ReadableStream<Uint8Array> {
  return ReadableStream.from(reassemble(chunks, openObject));
}
