// Splitstream (docs/splitstream.md): a zstd-compressed stream of inline data and references to stored
// objects.
export { contentTypeFromAscii, contentTypeName } from "./format.ts";
export { SplitStreamWriter } from "./writer.ts";
export type { ChunkSource, ExternalChunk, InlineChunk, SplitStreamChunk } from "./chunk.ts";
export { SplitStreamReader } from "./reader.ts";
export { type ObjectOpener, reassemble, reassembleStream } from "./reassemble.ts";
