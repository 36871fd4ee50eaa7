// Splitting an uncompressed tar layer into a splitstream and reading it back
// (docs/splitstream.md#tar-layers). Headers, padding, small files (≤ 64 bytes) and everything after the end
// blocks stay inline; larger regular files become objects. The sha256 of the whole stream (the diff_id) is
// computed on the way and checked before anything is handed back, so a wrong layer is never registered.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { FormatError, IntegrityError, InternalError } from "../errors.ts";
import { parseDigest } from "./digest.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { ObjectStore, ObjectWriter } from "../objects/store.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import { type ObjectOpener, reassemble } from "../splitstream/reassemble.ts";
import type { ChunkSource, InlineChunk } from "../splitstream/chunk.ts";
import { SplitStreamWriter } from "../splitstream/writer.ts";
import { ByteSource } from "./tar/byte_source.ts";
import type { TarEntry } from "./tar/entry.ts";
import type { LeafContent } from "../tree/tree.ts";
import { TarReader, type TarReaderOptions } from "./tar/reader.ts";
import { type InPlaceDecoding, inPlaceDecoding } from "../compress/decompress.ts";

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
  /**
   * Called for every entry, in order, as it is split (docs/oci.md#flatten: the first layer is
   * flattened while it arrives): a regular file's content comes along as its bytes (≤ 64, a copy)
   * or its object id (a promise while its store is in flight).
   */
  onEntry?: (entry: TarEntry, content?: EntryContent) => void;
}

/** A split entry's content as onEntry sees it: inline bytes, or the object's id. */
export type EntryContent = Uint8Array | ObjectId | Promise<ObjectId>;

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

/** A sink write waiting in order: an inline chunk (copied), or an external one whose id is still coming. */
type Pending = InlineChunk | {
  kind: "external";
  id: Promise<ObjectId>;
  size: number;
};

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === "function";
}

/**
 * The sink writes of a split, in stream order. A small file's id may still be coming (its store is
 * in flight): writes behind it wait in a queue, inline bytes copied; while nothing waits, writes go
 * straight through and inline bytes stay borrowed.
 */
class OrderedSink {
  readonly #sink: SplitSink;
  /** Ordered queue of sink writes waiting for an external id; empty while ids come back at once. */
  readonly #queue: Pending[] = [];
  #inFlight = 0;
  #sinceDrain = 0;
  /** Bytes of inline copies waiting in the queue. */
  #queuedInline = 0;
  inlineSize = 0;

  constructor(sink: SplitSink) {
    this.#sink = sink;
  }

  async #writeInline(data: Uint8Array): Promise<void> {
    const r = this.#sink.writeInline(data);
    if (isPromise(r)) await r;
    this.#sinceDrain += data.length;
    if (this.#sinceDrain >= DRAIN_EVERY && this.#sink.drain) {
      this.#sinceDrain = 0;
      await this.#sink.drain();
    }
  }

  /** Writes what waits in order; without `all`, stops at an id still coming unless too much piles up. */
  async flush(all: boolean): Promise<void> {
    const queue = this.#queue;
    while (queue.length) {
      const p = queue[0];
      if (p.kind === "external") {
        // Waiting is deferred while few stores are in flight, but not while inline copies pile
        // up behind them (a long run of headers, or data after the end of the archive).
        if (!all && this.#inFlight < MAX_IN_FLIGHT && this.#queuedInline < MAX_QUEUED_INLINE) return;
        const id = await p.id;
        this.#inFlight--;
        const r = this.#sink.writeExternal(id, p.size);
        if (isPromise(r)) await r;
      } else {
        this.#queuedInline -= p.data.length;
        await this.#writeInline(p.data);
      }
      queue.shift();
    }
  }

  /** `data` is borrowed: written through at once when nothing waits before it, else copied. */
  async inline(data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    this.inlineSize += data.length;
    if (this.#queue.length === 0) await this.#writeInline(data);
    else {
      this.#queue.push({ kind: "inline", data: data.slice() });
      this.#queuedInline += data.length;
    }
  }

  async external(id: ObjectId | Promise<ObjectId>, size: number): Promise<void> {
    if (!isPromise(id) && this.#queue.length === 0) {
      const r = this.#sink.writeExternal(id, size);
      if (isPromise(r)) await r;
      return;
    }
    const p = Promise.resolve(id);
    p.catch(() => {}); // observed later, in order
    this.#inFlight++;
    this.#queue.push({ kind: "external", id: p, size });
  }

  /** After a failure: waits until every store still in flight has ended. */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.#queue.map((p) => p.kind === "external" ? p.id : undefined));
  }
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
  // A native decoder's output is read in place and hashed on the decoding thread; anything else here.
  const dec = inPlaceDecoding(tar);
  dec?.hashOutput(alg);
  const sha = dec ? null : createHash(alg);
  const src = dec ? new ByteSource(dec.chunks) : new ByteSource(tar, (c) => sha!.update(c));
  const reader = new TarReader(src, opts);
  const out = new OrderedSink(sink);
  const files = new FileStorer(store, reader, out);
  let entries = 0;
  let lastProgress = 0;
  try {
    for (;;) {
      const h = await reader.next();
      if (!h) break;
      entries++;
      await out.inline(h.header);
      const { entry } = h;
      if (entry.kind === "file" && entry.size > INLINE_CONTENT_MAX) {
        const { id } = await files.add(entry);
        opts.onEntry?.(entry, id);
      } else if (opts.onEntry) opts.onEntry(entry, await inlineContent(reader, out, entry));
      else for await (const c of reader.content()) await out.inline(c);
      await out.inline(await reader.padding());
      await out.flush(false);
      if (opts.onProgress && reader.offset - lastProgress >= 1 << 20) {
        lastProgress = reader.offset;
        opts.onProgress(lastProgress);
      }
    }
    await splitTrailer(reader, out);
    await out.flush(true);
    await store.settle?.();
  } catch (e) {
    await files.abort();
    await out.abandon();
    throw e;
  }
  const diffId = `${alg}:${sha ? sha.digest("hex") : decodedDigest(dec!, src.consumed)}`;
  if (expected !== undefined && diffId !== expected) {
    throw new IntegrityError(`layer diff_id mismatch: expected ${expected}, got ${diffId}`);
  }
  opts.onProgress?.(src.consumed);
  const { objects, externalSize } = files;
  return { diffId, size: src.consumed, entries, objects, externalSize, inlineSize: out.inlineSize };
}

/** An entry's inline content written through, and a copy of it for a regular file (onEntry). */
async function inlineContent(
  reader: TarReader,
  out: OrderedSink,
  entry: TarEntry,
): Promise<Uint8Array | undefined> {
  const data = entry.kind === "file" ? new Uint8Array(entry.size) : undefined;
  let o = 0;
  for await (const c of reader.content()) {
    data?.set(c, o); // copied before the next read: `c` is borrowed
    o += c.length;
    await out.inline(c);
  }
  return data;
}

/** The digest the decoding thread computed; it must cover exactly the bytes that were split. */
function decodedDigest(dec: InPlaceDecoding, consumed: number): string {
  const d = dec.outputDigest();
  if (!d || d.size !== consumed) {
    throw new InternalError(`decoder hashed ${d?.size} bytes, the split read ${consumed}`);
  }
  return d.hex;
}

/** Stores the contents of regular files > 64 bytes as objects and writes their references. */
class FileStorer {
  objects = 0;
  externalSize = 0;
  /** Reused for small files that straddle source chunks. */
  #gather = new Uint8Array(0);
  #writer: ObjectWriter | undefined;
  readonly #storeBorrowed: (d: Uint8Array) => ObjectId | Promise<ObjectId>;

  readonly #store: ObjectStore;
  readonly #reader: TarReader;
  readonly #out: OrderedSink;

  constructor(store: ObjectStore, reader: TarReader, out: OrderedSink) {
    this.#store = store;
    this.#reader = reader;
    this.#out = out;
    this.#storeBorrowed = store.ensureObjectBorrowed
      ? (d: Uint8Array) => store.ensureObjectBorrowed!(d)
      : (d: Uint8Array) => store.ensureObject(d.slice());
  }

  /**
   * Reads the current entry's content (a regular file > 64 bytes) into an object; writes its
   * reference. Returns the id (a promise while the store is in flight: boxed, so that awaiting
   * add() does not wait for it).
   */
  async add(entry: TarEntry): Promise<{ id: ObjectId | Promise<ObjectId> }> {
    this.objects++;
    this.externalSize += entry.size;
    if (entry.size <= SMALL_OBJECT_MAX) {
      let data: Uint8Array | undefined;
      let o = 0;
      for await (const c of this.#reader.content()) {
        if (o === 0 && c.length === entry.size) {
          data = c; // the whole file in one source chunk: no copy
          o = c.length;
          continue;
        }
        if (this.#gather.length < entry.size) this.#gather = new Uint8Array(Math.max(entry.size, 64 * 1024));
        this.#gather.set(c, o);
        o += c.length;
      }
      const id = this.#storeBorrowed(data ?? this.#gather.subarray(0, o));
      await this.#out.external(id, entry.size);
      return { id };
    }
    await this.#out.flush(true);
    this.#writer = this.#store.createObjectWriter();
    for await (const c of this.#reader.content()) await this.#writer.write(c);
    const done = await this.#writer.finish();
    this.#writer = undefined;
    if (done.size !== entry.size) {
      throw new FormatError(
        `object for ${JSON.stringify(entry.path)} has ${done.size} bytes, not ${entry.size}`,
      );
    }
    await this.#out.external(done.id, entry.size);
    return { id: done.id };
  }

  /** After a failure: the object being written is abandoned. */
  async abort(): Promise<void> {
    await this.#writer?.abort().catch(() => {});
  }
}

/**
 * Everything after the end-of-archive blocks stays inline (the diff_id covers it). It streams
 * through (the splitstream writer cuts long inline runs); zeros (record padding) compress to
 * nearly nothing, other bytes would be held compressed in memory, so they are limited.
 */
async function splitTrailer(reader: TarReader, out: OrderedSink): Promise<void> {
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
    await out.inline(c);
    await out.flush(false);
  }
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
    throw new InternalError(`splitstream holds ${writer.streamSize} bytes, the tar had ${stats.size}`);
  }
  return { ...stats, splitstream: await writer.finish() };
}

// ---------------------------------------------------------------------------------------------
// Reading back (docs/splitstream.md#tar-layers)

/** A tar entry read back from a splitstream; regular files carry their content or object id. */
export interface SplitTarEntry extends TarEntry {
  /**
   * Regular files only: ≤ 64 bytes stored inline, or an object of `size` bytes. Already in the
   * file tree's shape (lib/tree/tree.ts), so flattening takes it as it is.
   */
  content?: Extract<LeafContent, { type: "inline" | "external" }>;
}

/**
 * Parses the entries of a split tar layer without opening any object. Extension headers must be
 * inline; a regular file's content is either inline (≤ 64 bytes) or exactly one external chunk
 * (> 64 bytes). Stops at the end-of-archive marker (trailing bytes are not read).
 */
export async function* tarEntriesFromSplitstream(
  chunks: ChunkSource,
  opts: TarReaderOptions = {},
): AsyncGenerator<SplitTarEntry> {
  const src = new ByteSource(chunks);
  const reader = new TarReader(src, opts);
  // However the caller stops (error, break), the splitstream reader behind is closed at once.
  try {
    yield* entriesOf(reader);
  } finally {
    await src.close().catch(() => {});
  }
}

async function* entriesOf(reader: TarReader): AsyncGenerator<SplitTarEntry> {
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
      e.content = { type: "external", id: ext, size: e.size };
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

/**
 * Re-hashes the reassembled tar and throws IntegrityError unless its sha256 is `diffId` (used when
 * a layer stream is not trusted, e.g. `oci compute-id` on a config given by digest).
 */
export async function verifyLayerDiffId(
  chunks: ChunkSource,
  openObject: ObjectOpener,
  diffId: string,
): Promise<void> {
  const alg = parseDigest(diffId, "diff_id").alg;
  const sha = createHash(alg);
  let size = 0;
  for await (const c of reassemble(chunks, openObject)) {
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
