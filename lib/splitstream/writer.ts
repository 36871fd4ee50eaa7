// Builds a splitstream file (docs/splitstream.md) in memory. The chunk stream is compressed as it is written,
// so only the compressed form and the current run of inline data are held.
import { FormatError, InternalError } from "../errors.ts";
import { DIGEST_SIZE, type HashAlgorithm, KERNEL_ALG_ID, ObjectId } from "../fsverity/object_id.ts";
import { DigestSet } from "../objects/digest_set.ts";
import { compareBytes } from "../util/bytes.ts";
import { ZstdStreamCompressor } from "../compress/zstd.ts";
import {
  type FileRange,
  HEADER_SIZE,
  INFO_SIZE,
  LG_BLOCKSIZE,
  MAGIC,
  rangeValue,
  SplitstreamHeader,
  SplitstreamInfo,
  VERSION,
} from "./format.ts";

/** libzstd's default level, which the Rust writer asks for as "level 0". */
const ZSTD_LEVEL = 3;
/**
 * The longest inline record written. composefs-rs keeps a whole run in memory, however long; a run
 * this long (tens of thousands of tar entries with no file over 64 bytes between them, or data
 * after a tar's end-of-archive blocks) only happens in hostile or odd layers, and cutting it keeps
 * the memory of an import bounded. Readers take consecutive inline records as one byte sequence.
 * See docs/security.md.
 */
export const MAX_INLINE_RECORD = 32 * 1024 * 1024;
const CUT_ALIGN = 512;
/** Small writes are gathered into pieces of this size before they reach the encoder. */
const STAGE_SIZE = 128 * 1024;

/** Digests in first-appearance order, each once. */
/** Ids numbered in first-seen order, kept as digests in one slab (no ObjectId or hex per object). */
class UniqueIds {
  #alg: HashAlgorithm;
  #set: DigestSet;
  constructor(alg: HashAlgorithm) {
    this.#alg = alg;
    this.#set = new DigestSet(DIGEST_SIZE[alg]);
  }
  ensure(id: ObjectId): number {
    return this.#set.add(id.bytes);
  }
  list(): ObjectId[] {
    const out: ObjectId[] = [];
    for (let i = 0; i < this.#set.size; i++) out.push(new ObjectId(this.#alg, this.#set.at(i).slice()));
    return out;
  }
  bytes(): Uint8Array {
    return this.#set.bytes().slice();
  }
}

/**
 * Copies of written bytes, small writes packed into blocks: one copy, few pieces. Pieces smaller
 * than STAGE_SIZE / 2 returned by take() are only valid until the next add() (the small block is
 * reused: a run is usually a tar header or two, and a fresh block per run would churn memory).
 */
class ByteRun {
  #pieces: Uint8Array[] = [];
  #tail: Uint8Array | null = null;
  #tailLen = 0;
  add(data: Uint8Array): void {
    if (data.length >= STAGE_SIZE / 2) {
      this.#closeTail();
      this.#pieces.push(data.slice());
      return;
    }
    if (this.#tail && this.#tailLen + data.length > this.#tail.length) this.#closeTail();
    this.#tail ??= new Uint8Array(this.#pieces.length === 0 ? Math.max(16384, data.length) : STAGE_SIZE);
    this.#tail.set(data, this.#tailLen);
    this.#tailLen += data.length;
  }
  take(): Uint8Array[] {
    if (this.#tailLen >= STAGE_SIZE / 2) this.#closeTail();
    else if (this.#tailLen > 0) this.#pieces.push(this.#tail!.subarray(0, this.#tailLen));
    this.#tailLen = 0;
    const p = this.#pieces;
    this.#pieces = [];
    return p;
  }
  /** Hands the current block on for good. */
  #closeTail(): void {
    if (this.#tail && this.#tailLen > 0) this.#pieces.push(this.#tail.subarray(0, this.#tailLen));
    this.#tail = null;
    this.#tailLen = 0;
  }
}

export class SplitStreamWriter {
  readonly alg: HashAlgorithm;
  readonly contentType: bigint;
  #stream = new ZstdStreamCompressor(ZSTD_LEVEL);
  #stage = new Uint8Array(STAGE_SIZE);
  #staged = 0;
  /** The current run of inline data, written as one record when it ends. */
  #inline = new ByteRun();
  #inlineLen = 0;
  #objectRefs: UniqueIds;
  #streamRefs: UniqueIds;
  /** name → index into stream refs; a later ref with the same name replaces the earlier one. */
  #named = new Map<string, number>();
  #streamSize = 0;
  #inlineBytes = 0;
  #externalBytes = 0;
  #finished = false;

  constructor(alg: HashAlgorithm, contentType: bigint) {
    this.alg = alg;
    this.contentType = BigInt.asUintN(64, contentType);
    this.#objectRefs = new UniqueIds(alg);
    this.#streamRefs = new UniqueIds(alg);
  }

  /** Total length of the stream written so far (inline + external bytes). */
  get streamSize(): number {
    return this.#streamSize;
  }
  get inlineBytes(): number {
    return this.#inlineBytes;
  }
  get externalBytes(): number {
    return this.#externalBytes;
  }
  get objectRefs(): readonly ObjectId[] {
    return this.#objectRefs.list();
  }

  /**
   * Appends inline bytes (copied; consecutive writes become one record). A run longer than
   * MAX_INLINE_RECORD is cut at the first stream offset past that length that is a multiple of 512
   * (a tar block boundary, so no reader sees a header split across records); the cuts depend on
   * the bytes only, not on how they were handed in.
   */
  writeInline(data: Uint8Array): void {
    this.#open();
    while (data.length > 0) {
      const runStart = this.#streamSize - this.#inlineLen;
      const cutAt = Math.ceil((runStart + MAX_INLINE_RECORD) / CUT_ALIGN) * CUT_ALIGN;
      const room = cutAt - this.#streamSize;
      const part = data.length > room ? data.subarray(0, room) : data;
      this.#inline.add(part);
      this.#inlineLen += part.length;
      this.#streamSize += part.length;
      this.#inlineBytes += part.length;
      if (this.#streamSize === cutAt) this.#flushInline();
      data = data.subarray(part.length);
    }
  }

  /** Appends a reference to a stored object of `size` bytes. */
  writeExternal(id: ObjectId, size: number): void {
    this.#open();
    this.#checkAlg(id);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new FormatError(`invalid external object size ${size}`);
    }
    this.#flushInline();
    const rec = new Uint8Array(8);
    new DataView(rec.buffer).setBigInt64(0, BigInt(this.#objectRefs.ensure(id)), true);
    this.#emit(rec);
    this.#streamSize += size;
    this.#externalBytes += size;
  }

  /** Names another stream (by its object id); a name given twice keeps the last id. */
  addNamedRef(name: string, id: ObjectId): void {
    this.#open();
    this.#checkAlg(id);
    if (name.includes("\0")) {
      throw new FormatError(`splitstream named ref contains NUL: ${JSON.stringify(name)}`);
    }
    this.#named.set(name, this.#streamRefs.ensure(id));
  }

  /** Waits until the encoder has consumed what was handed to it (bounds memory for big streams). */
  async drain(): Promise<void> {
    await this.#stream.drain();
  }

  /** Abandons a stream that will not be finished (after a failed import), freeing the encoder. */
  discard(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#stream.destroy();
  }

  /** Ends the stream and returns the complete splitstream file. */
  async finish(): Promise<Uint8Array> {
    this.#open();
    this.#finished = true;
    this.#flushInline();
    this.#flushStage();
    const stream = await this.#stream.finish();
    const named = await this.#namedRefsSection();
    const streamRefs = this.#streamRefs.bytes();
    const objectRefs = this.#objectRefs.bytes();

    // Physical order: header, info, stream refs, object refs, named refs, stream; no padding.
    const info: FileRange = { start: HEADER_SIZE, end: HEADER_SIZE + INFO_SIZE };
    const sr: FileRange = { start: info.end, end: info.end + streamRefs.length };
    const or: FileRange = { start: sr.end, end: sr.end + objectRefs.length };
    const nr: FileRange = { start: or.end, end: or.end + named.length };
    const st: FileRange = { start: nr.end, end: nr.end + stream.length };

    const file = new Uint8Array(st.end);
    const v = new DataView(file.buffer);
    SplitstreamHeader.write(v, 0, {
      magic: MAGIC,
      version: VERSION,
      flags: 0,
      algorithm: KERNEL_ALG_ID[this.alg],
      lgBlocksize: LG_BLOCKSIZE,
      info: rangeValue(info),
    });
    SplitstreamInfo.write(v, info.start, {
      streamRefs: rangeValue(sr),
      objectRefs: rangeValue(or),
      stream: rangeValue(st),
      namedRefs: rangeValue(nr),
      contentType: this.contentType,
      streamSize: BigInt(this.#streamSize),
    });
    file.set(streamRefs, sr.start);
    file.set(objectRefs, or.start);
    file.set(named, nr.start);
    file.set(stream, st.start);
    return file;
  }

  /** `<index>:<name>\0` records sorted by the names' UTF-8 bytes, as one zstd frame. */
  async #namedRefsSection(): Promise<Uint8Array> {
    const enc = new TextEncoder();
    const entries = [...this.#named].map(([name, idx]) => ({ key: enc.encode(name), idx }));
    entries.sort((a, b) => compareBytes(a.key, b.key));
    const z = new ZstdStreamCompressor(ZSTD_LEVEL);
    for (const e of entries) {
      z.write(enc.encode(`${e.idx}:`));
      z.write(e.key);
      z.write(Uint8Array.of(0));
    }
    return await z.finish();
  }

  #flushInline(): void {
    if (this.#inlineLen === 0) return;
    const rec = new Uint8Array(8);
    new DataView(rec.buffer).setBigInt64(0, -BigInt(this.#inlineLen), true);
    this.#emit(rec);
    for (const piece of this.#inline.take()) {
      if (piece.length >= STAGE_SIZE / 2) {
        this.#flushStage();
        this.#stream.write(piece);
      } else this.#emit(piece);
    }
    this.#inlineLen = 0;
  }

  /** Hands small bytes to the encoder, gathered into bigger writes (the output does not depend on it). */
  #emit(b: Uint8Array): void {
    if (this.#staged + b.length > STAGE_SIZE) this.#flushStage();
    this.#stage.set(b, this.#staged);
    this.#staged += b.length;
  }

  #flushStage(): void {
    if (this.#staged === 0) return;
    this.#stream.write(this.#stage.subarray(0, this.#staged));
    this.#stage = new Uint8Array(STAGE_SIZE);
    this.#staged = 0;
  }

  #open(): void {
    if (this.#finished) throw new InternalError("splitstream writer already finished");
  }

  #checkAlg(id: ObjectId): void {
    if (id.alg !== this.alg) {
      throw new FormatError(`object id ${id.toId()} does not match the splitstream's algorithm ${this.alg}`);
    }
  }
}
