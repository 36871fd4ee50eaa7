// Splitting an uncompressed tar layer into a splitstream and reading it back
// (docs/splitstream.md#tar-layers). Headers, padding, small files (≤ 64 bytes) and everything after the end
// blocks stay inline; larger regular files become objects. The sha256 of the whole stream (the diff_id) is
// computed on the way and checked before anything is handed back, so a wrong layer is never registered.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { FormatError, IntegrityError } from "../errors.ts";
import { parseDigest } from "./digest.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { ObjectStore } from "../objects/store.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import { type ObjectOpener, reassemble } from "../splitstream/reassemble.ts";
import type { SplitStreamChunk, SplitStreamReader } from "../splitstream/reader.ts";
import { SplitStreamWriter } from "../splitstream/writer.ts";
import { ByteSource, type SourcePart } from "./tar/byte_source.ts";
import type { TarEntry } from "./tar/entry.ts";
import { TarReader, type TarReaderOptions } from "./tar/reader.ts";
import { inPlaceChunks } from "../compress/decompress.ts";

/** Regular files up to this size stay inline (composefs-rs INLINE_CONTENT_MAX_V0). */
export const INLINE_CONTENT_MAX = 64;
/** Files up to this size are gathered in memory and stored with one ensureObject() call. */
const SMALL_OBJECT_MAX = 1024 * 1024;
/** Small objects being stored concurrently while parsing goes on (stores without a synchronous path). */
const MAX_IN_FLIGHT = 8;
const DRAIN_EVERY = 256 * 1024;
/** Inline bytes that may wait (copied) behind small objects still being stored. */
const MAX_QUEUED_INLINE = 4 * 1024 * 1024;
/** Non-zero bytes allowed after a tar's end-of-archive blocks (counted per chunk that holds any). */
export const MAX_TRAILER_DATA = 16 * 1024 * 1024;

const ZEROS = new Uint8Array(64 * 1024);
/** True when every byte is 0 (memcmp against a zero block, not a byte loop). */
function isAllZero(b: Uint8Array): boolean {
  for (let o = 0; o < b.length; o += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - o);
    if (Buffer.compare(b.subarray(o, o + n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/** Where the split goes: a splitstream writer (lib/splitstream) or anything shaped like one. */
export interface SplitSink {
  /** Must copy what it keeps: `data` may be a view into a buffer that is reused afterwards. */
  writeInline(data: Uint8Array): unknown;
  writeExternal(id: ObjectId, size: number): unknown;
  /** Lets a compressing sink catch up (bounds its memory); called every 256 KiB of inline data. */
  drain?(): Promise<void>;
}

export interface SplitTarOptions extends TarReaderOptions {
  /**
   * `sha256:<hex>` (or sha384/sha512) the uncompressed stream must hash to; IntegrityError
   * otherwise. Its algorithm is also the one `diffId` is computed with.
   */
  expectedDiffId?: string;
  /** Called with the number of uncompressed bytes consumed so far (at most about once per MiB). */
  onProgress?: (bytes: number) => void;
}

export interface SplitTarStats {
  /** `sha256:<hex>` of the uncompressed tar stream (the expected diff_id's algorithm if one was given). */
  diffId: string;
  /** Bytes of the uncompressed tar stream. */
  size: number;
  entries: number;
  /** External references written (one per large regular file). */
  objects: number;
  externalSize: number;
  inlineSize: number;
}

type Pending = { kind: "inline"; data: Uint8Array } | {
  kind: "external";
  id: Promise<ObjectId>;
  size: number;
};

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === "function";
}

/**
 * Splits `tar` into `sink`, storing file contents in `store`. Memory stays bounded: file contents
 * are streamed (files > 1 MiB through an ObjectWriter; smaller ones are gathered and stored with
 * one call each, written to the sink in order as their ids arrive).
 *
 * A stream from decompressLayer() is read in place (its chunks are the decoder's reused buffers):
 * inline bytes are copied by the sink, a small file lying within one chunk is hashed and written
 * from there (stores with ensureObjectBorrowed), others are gathered in one reused buffer.
 *
 * On any failure (malformed tar, truncated input, diff_id mismatch) the in-progress object writer
 * is aborted and the promise rejects; objects already completed stay in the store unreferenced
 * (garbage for gc). The caller must then discard the sink: it holds a partial stream.
 */
export async function splitTarInto(
  tar: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  store: ObjectStore,
  sink: SplitSink,
  opts: SplitTarOptions = {},
): Promise<SplitTarStats> {
  const expected = opts.expectedDiffId;
  const alg = expected === undefined ? "sha256" : parseDigest(expected, "diff_id").alg;
  const sha = createHash(alg);
  const source = inPlaceChunks(tar) ?? tar;
  const src = new ByteSource<never>(source as AsyncIterable<SourcePart<never>>, (c) => sha.update(c));
  const reader = new TarReader(src, opts);
  const stats = { entries: 0, objects: 0, externalSize: 0, inlineSize: 0 };
  const storeBorrowed = store.ensureObjectBorrowed
    ? (d: Uint8Array) => store.ensureObjectBorrowed!(d)
    : (d: Uint8Array) => store.ensureObject(d.slice());

  // Ordered queue of sink writes waiting for an external id; empty while ids come back at once.
  const queue: Pending[] = [];
  let inFlight = 0;
  let sinceDrain = 0;
  const writeInline = async (data: Uint8Array) => {
    const r = sink.writeInline(data);
    if (isPromise(r)) await r;
    sinceDrain += data.length;
    if (sinceDrain >= DRAIN_EVERY && sink.drain) {
      sinceDrain = 0;
      await sink.drain();
    }
  };
  let queuedInline = 0; // bytes of inline copies waiting in the queue
  const flush = async (all: boolean) => {
    while (queue.length) {
      const p = queue[0];
      if (p.kind === "external") {
        // Waiting is deferred while few stores are in flight, but not while inline copies pile
        // up behind them (a long run of headers, or data after the end of the archive).
        if (!all && inFlight < MAX_IN_FLIGHT && queuedInline < MAX_QUEUED_INLINE) return;
        const id = await p.id;
        inFlight--;
        const r = sink.writeExternal(id, p.size);
        if (isPromise(r)) await r;
      } else {
        queuedInline -= p.data.length;
        await writeInline(p.data);
      }
      queue.shift();
    }
  };
  // `data` is borrowed: written through at once when nothing waits before it, else copied.
  const inline = async (data: Uint8Array) => {
    if (data.length === 0) return;
    stats.inlineSize += data.length;
    if (queue.length === 0) await writeInline(data);
    else {
      queue.push({ kind: "inline", data: data.slice() });
      queuedInline += data.length;
    }
  };
  const external = async (id: ObjectId | Promise<ObjectId>, size: number) => {
    if (!isPromise(id) && queue.length === 0) {
      const r = sink.writeExternal(id, size);
      if (isPromise(r)) await r;
      return;
    }
    const p = Promise.resolve(id);
    p.catch(() => {}); // observed later, in order
    inFlight++;
    queue.push({ kind: "external", id: p, size });
  };

  let lastProgress = 0;
  let gather = new Uint8Array(0); // reused for small files that straddle source chunks
  let writer: ReturnType<ObjectStore["createObjectWriter"]> | undefined;
  try {
    for (;;) {
      const h = await reader.next();
      if (!h) break;
      stats.entries++;
      await inline(h.header);
      const { entry } = h;
      if (entry.kind === "file" && entry.size > INLINE_CONTENT_MAX) {
        stats.objects++;
        stats.externalSize += entry.size;
        if (entry.size <= SMALL_OBJECT_MAX) {
          let data: Uint8Array | undefined;
          let o = 0;
          for await (const c of reader.content()) {
            if (o === 0 && c.length === entry.size) {
              data = c; // the whole file in one source chunk: no copy
              o = c.length;
              continue;
            }
            if (gather.length < entry.size) gather = new Uint8Array(Math.max(entry.size, 64 * 1024));
            gather.set(c, o);
            o += c.length;
          }
          await external(storeBorrowed(data ?? gather.subarray(0, o)), entry.size);
        } else {
          await flush(true);
          writer = store.createObjectWriter();
          for await (const c of reader.content()) await writer.write(c);
          const done = await writer.finish();
          writer = undefined;
          if (done.size !== entry.size) {
            throw new FormatError(
              `object for ${JSON.stringify(entry.path)} has ${done.size} bytes, not ${entry.size}`,
            );
          }
          await external(done.id, entry.size);
        }
      } else {
        for await (const c of reader.content()) await inline(c);
      }
      await inline(await reader.padding());
      await flush(false);
      if (opts.onProgress && reader.offset - lastProgress >= 1 << 20) {
        lastProgress = reader.offset;
        opts.onProgress(lastProgress);
      }
    }
    // Everything after the end-of-archive blocks stays inline (the diff_id covers it). It streams
    // through (the splitstream writer cuts long inline runs); zeros (record padding) compress to
    // nearly nothing, other bytes would be held compressed in memory, so they are limited.
    let trailerData = 0;
    for await (const c of reader.trailer()) {
      if (!isAllZero(c)) {
        trailerData += c.length;
        if (trailerData > MAX_TRAILER_DATA) {
          throw new FormatError(
            `layer has more than ${MAX_TRAILER_DATA} bytes of non-zero data after the end-of-archive blocks`,
          );
        }
      }
      await inline(c);
      await flush(false);
    }
    await flush(true);
    await store.settle?.();
  } catch (e) {
    await writer?.abort().catch(() => {});
    await Promise.allSettled(queue.map((p) => p.kind === "external" ? p.id : undefined));
    throw e;
  }
  const diffId = `${alg}:${sha.digest("hex")}`;
  if (expected !== undefined && diffId !== expected) {
    throw new IntegrityError(`layer diff_id mismatch: expected ${expected}, got ${diffId}`);
  }
  opts.onProgress?.(src.consumed);
  return { diffId, size: src.consumed, ...stats };
}

/** The result of splitting a layer: the splitstream file bytes (content type `ocilayer`) and stats. */
export interface SplitLayerResult extends SplitTarStats {
  splitstream: Uint8Array;
}

/**
 * Splits an uncompressed tar layer into a new splitstream (content type `ocilayer`, the store's
 * algorithm). The caller stores `splitstream` as `oci-layer-<diffId>`; on rejection nothing is
 * to be registered (see splitTarInto for what may remain in the store).
 */
export async function splitTarLayer(
  tar: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  store: ObjectStore,
  opts: SplitTarOptions = {},
): Promise<SplitLayerResult> {
  const writer = new SplitStreamWriter(store.alg, CONTENT_TYPE.OCI_LAYER);
  let stats;
  try {
    stats = await splitTarInto(tar, store, writer, opts);
  } catch (e) {
    writer.discard();
    throw e;
  }
  if (writer.streamSize !== stats.size) {
    throw new Error(`internal: splitstream holds ${writer.streamSize} bytes, the tar had ${stats.size}`);
  }
  return { ...stats, splitstream: await writer.finish() };
}

// ---------------------------------------------------------------------------------------------
// Reading back (docs/splitstream.md#tar-layers)

/** A tar entry read back from a splitstream; regular files carry their content or object id. */
export interface SplitTarEntry extends TarEntry {
  /** Regular files only: ≤ 64 bytes stored inline, or an object of `size` bytes. */
  content?: { type: "inline"; data: Uint8Array } | { type: "external"; id: ObjectId; size: number };
}

/**
 * Parses the entries of a split tar layer without opening any object. Extension headers must be
 * inline; a regular file's content is either inline (≤ 64 bytes) or exactly one external chunk
 * (> 64 bytes). Stops at the end-of-archive marker (trailing bytes are not read).
 */
export async function* tarEntriesFromSplitstream(
  source: SplitStreamReader | AsyncIterable<SplitChunk>,
  opts: TarReaderOptions = {},
): AsyncGenerator<SplitTarEntry> {
  async function* parts(): AsyncGenerator<SourcePart<ObjectId>> {
    for await (const c of chunksOf(source)) yield "inline" in c ? c.inline : { external: c.external };
  }
  const src = new ByteSource<ObjectId>(parts());
  const reader = new TarReader(src, opts);
  // However the caller stops (error, break), the splitstream reader behind is closed at once.
  try {
    yield* entriesOf(reader);
  } finally {
    await src.close().catch(() => {});
  }
}

async function* entriesOf(reader: TarReader<ObjectId>): AsyncGenerator<SplitTarEntry> {
  for (;;) {
    const h = await reader.next();
    if (!h) return;
    const e: SplitTarEntry = h.entry;
    const ext = await reader.takeExternalContent();
    if (ext) {
      if (e.kind !== "file") {
        throw new FormatError(`split tar: external content for non-regular entry ${JSON.stringify(e.path)}`);
      }
      if (e.size <= INLINE_CONTENT_MAX) {
        throw new FormatError(
          `split tar: external content for ${e.size}-byte file ${JSON.stringify(e.path)}`,
        );
      }
      e.content = { type: "external", id: ext.external, size: e.size };
    } else if (e.kind === "file") {
      if (e.size > INLINE_CONTENT_MAX) {
        throw new FormatError(`split tar: ${e.size}-byte file ${JSON.stringify(e.path)} stored inline`);
      }
      const data = new Uint8Array(e.size);
      let o = 0;
      for await (const c of reader.content()) {
        data.set(c, o);
        o += c.length;
      }
      e.content = { type: "inline", data };
    }
    yield e;
  }
}

/** Reassembles the original tar bytes (inline data and object contents, in order). */
export function reassembleTar(
  reader: SplitStreamReader,
  openObject: ObjectOpener,
): ReadableStream<Uint8Array> {
  return ReadableStream.from(reassemble(reader, openObject));
}

/** The same from a chunk sequence (e.g. a stored layer's chunks, as lib/oci/image_tree.ts yields them). */
export function reassembleSplitstream(
  source: SplitStreamReader | AsyncIterable<SplitChunk>,
  openObject: ObjectOpener,
): ReadableStream<Uint8Array> {
  async function* gen(): AsyncGenerator<Uint8Array> {
    for await (const c of chunksOf(source)) {
      if ("inline" in c) {
        if (c.inline.length) yield c.inline;
        continue;
      }
      for await (const piece of (await openObject(c.external)) as AsyncIterable<Uint8Array>) yield piece;
    }
  }
  return ReadableStream.from(gen());
}

/** A splitstream chunk in either shape: the splitstream reader's, or `{inline}` / `{external}`. */
export type SplitChunk = SplitStreamChunk | { inline: Uint8Array } | { external: ObjectId };

async function* chunksOf(
  source: SplitStreamReader | AsyncIterable<SplitChunk>,
): AsyncGenerator<{ inline: Uint8Array } | { external: ObjectId }> {
  const it = Symbol.asyncIterator in source ? source : source.chunks();
  for await (const c of it) {
    if ("kind" in c) yield c.kind === "inline" ? { inline: c.data } : { external: c.id };
    else yield c;
  }
}

/**
 * Re-hashes the reassembled tar and throws IntegrityError unless its sha256 is `diffId` (used when
 * a layer stream is not trusted, e.g. `oci compute-id` on a config given by digest).
 */
export async function verifyLayerDiffId(
  reader: SplitStreamReader,
  openObject: ObjectOpener,
  diffId: string,
): Promise<void> {
  const alg = parseDigest(diffId, "diff_id").alg;
  const sha = createHash(alg);
  let size = 0;
  for await (const c of reassemble(reader, openObject)) {
    sha.update(c);
    size += c.length;
  }
  const got = `${alg}:${sha.digest("hex")}`;
  if (got !== diffId) {
    throw new IntegrityError(
      `layer diff_id mismatch: expected ${diffId}, reassembled ${size} bytes hash to ${got}`,
    );
  }
}
