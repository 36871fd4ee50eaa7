// zstd on top of node:zlib (native in Deno), made safe for multi-frame input.
//
// Deno's zstd decoder silently stops after the first frame (platform.md), so every input is cut
// into frames here, without decoding, by walking frame headers and 3-byte block headers
// (RFC 8878 §3.1). Each frame goes to a fresh decoder; skippable frames (zstd:chunked metadata)
// are dropped. Streaming paths never hold a whole frame: bytes are handed on as they arrive.
import { Readable } from "node:stream";
import zlib from "node:zlib";
import { FormatError, InternalError } from "../errors.ts";
import { concatBytes } from "../util/bytes.ts";

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** Block_Maximum_Size: no block (raw, compressed, or RLE's regenerated size) may exceed 128 KiB. */
const MAX_BLOCK_SIZE = 128 * 1024;

/**
 * What libzstd writes for empty input in streaming mode (ZSTD_endStream as the first call: the
 * content size 0 is then known, so a single-segment frame with FCS = 0 and one empty raw block).
 * Deno's streaming encoder writes a different (also valid) empty frame; splitstream ids depend
 * on these bytes, so the libzstd form is used.
 */
export const ZSTD_EMPTY_FRAME: Uint8Array = Uint8Array.of(
  0x28,
  0xb5,
  0x2f,
  0xfd,
  0x20,
  0x00,
  0x01,
  0x00,
  0x00,
);

/** Frames at or below this compressed size with a declared content size decode in one call. */
const SYNC_FRAME_MAX = 1 << 20;
const SYNC_CONTENT_MAX = 16 << 20;

export interface ZstdFrameInfo {
  /** Offset of the frame's first byte in the whole input. */
  offset: number;
  /** Total frame length in bytes (magic to checksum, or to the end of a skippable frame). */
  length: number;
  skippable: boolean;
  /** Frame_Content_Size from the header, when present. */
  contentSize?: number;
  checksum: boolean;
}

/** A run of bytes belonging to one zstd frame, as the scanner hands them on. */
interface FramePiece {
  data: Uint8Array;
  /** This piece begins a frame (its first bytes are the magic). */
  start: boolean;
  /** The frame ends with this piece's last byte. */
  end: boolean;
  /** Set on the start piece. */
  frame?: ZstdFrameInfo;
}

const enum St {
  Magic,
  SkipLength,
  SkipBody,
  Descriptor,
  HeaderRest,
  BlockHeader,
  BlockBody,
  Checksum,
}

const DID_SIZE = [0, 1, 2, 4];
const FCS_SIZE = [0, 2, 4, 8];

function u32le(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

/**
 * Incremental frame splitter: push() chunks of a zstd stream, get back the bytes of each zstd
 * frame (subarrays of the input, except a magic number split across chunks) with start/end
 * marks. Skippable frames are consumed silently. Never decodes.
 */
export class ZstdFrameScanner {
  #state = St.Magic;
  /** Bytes still wanted in the current state. */
  #need = 4;
  /** Header fields gathered across chunk boundaries (frame header ≤ 14 bytes). */
  #field = new Uint8Array(16);
  #fieldLen = 0;
  #fieldStart = 0;
  /** Absolute offset of the first byte of the chunk being pushed (= bytes consumed before it). */
  #base = 0;
  #frame: ZstdFrameInfo | null = null;
  #lastBlock = false;
  #blockNo = 0;
  #blockOffset = 0;
  /** Called when a frame (zstd or skippable) is complete. */
  onFrame?: (f: ZstdFrameInfo) => void;
  /** Frames completed so far (zstd and skippable). */
  frames = 0;

  /** Bytes consumed so far. */
  get offset(): number {
    return this.#base;
  }

  // The chunk being pushed and what push() hands back for it (set only during a push).
  #chunk: Uint8Array = new Uint8Array(0);
  #out: FramePiece[] = [];
  /** Start (in #chunk) of frame bytes not yet handed on, -1 when outside a zstd frame. */
  #run = -1;
  /** The frame that began in this chunk and whose first piece is not handed on yet. */
  #starting: ZstdFrameInfo | undefined;

  push(chunk: Uint8Array): FramePiece[] {
    const n = chunk.length;
    this.#chunk = chunk;
    this.#out = [];
    this.#run = this.#inZstdFrame() ? 0 : -1;
    this.#starting = undefined;
    let pos = 0;
    while (pos < n) {
      const st = this.#state;
      const take = Math.min(this.#need, n - pos);
      pos += take;
      this.#need -= take;
      if (st === St.SkipBody || st === St.BlockBody) {
        if (this.#need === 0) this.#bodyDone(st, pos);
        continue;
      }
      if (this.#fieldLen === 0) this.#fieldStart = this.#base + pos - take;
      this.#field.set(chunk.subarray(pos - take, pos), this.#fieldLen);
      this.#fieldLen += take;
      if (this.#need === 0) this.#fieldDone(st, pos);
    }
    const out = this.#out;
    const run = this.#run;
    if (run >= 0 && (run < n || this.#starting)) this.#piece(run, n, false);
    this.#base += n;
    this.#chunk = new Uint8Array(0);
    this.#out = [];
    return out;
  }

  /** Hands on #chunk[from, to) as a piece of the current frame. */
  #piece(from: number, to: number, end: boolean): void {
    const starting = this.#starting;
    this.#out.push({
      data: this.#chunk.subarray(from, to),
      start: starting !== undefined,
      end,
      frame: starting,
    });
    this.#starting = undefined;
  }

  /** The current zstd frame ends at `pos` of the chunk. */
  #endFrame(pos: number): void {
    const f = this.#frame!;
    f.length = this.#base + pos - f.offset;
    this.#piece(this.#run, pos, true);
    this.#run = -1;
    this.#completed(f);
  }

  /** A skippable frame's or a block's body ended at `pos`. */
  #bodyDone(st: St, pos: number): void {
    if (st === St.SkipBody) {
      this.#frame!.length = this.#base + pos - this.#frame!.offset;
      this.#completed(this.#frame!);
    } else if (this.#blockDone()) this.#endFrame(pos);
  }

  /** The header field of state `st` is complete in #field; `pos` is just after it in the chunk. */
  #fieldDone(st: St, pos: number): void {
    switch (st) {
      case St.Magic:
        return this.#magicDone(pos);
      case St.SkipLength: {
        this.#fieldLen = 0;
        const len = u32le(this.#field, 0);
        if (len === 0) {
          this.#frame!.length = 8;
          this.#completed(this.#frame!);
        } else {
          this.#state = St.SkipBody;
          this.#need = len;
        }
        return;
      }
      case St.Descriptor:
        return this.#descriptorDone();
      case St.HeaderRest:
        return this.#headerRestDone();
      case St.BlockHeader:
        return this.#blockHeaderDone(pos);
      case St.Checksum:
        this.#fieldLen = 0;
        this.#toMagic();
        return this.#endFrame(pos);
    }
  }

  #magicDone(pos: number): void {
    this.#fieldLen = 0;
    const at = this.#fieldStart;
    const magic = u32le(this.#field, 0);
    if (magic === ZSTD_MAGIC) {
      this.#frame = { offset: at, length: 0, skippable: false, checksum: false };
      this.#starting = this.#frame;
      if (at >= this.#base) this.#run = pos - 4;
      else {
        // The magic straddled a chunk boundary: hand it on as a copy.
        this.#out.push({ data: this.#field.slice(0, 4), start: true, end: false, frame: this.#frame });
        this.#starting = undefined;
        this.#run = pos;
      }
      this.#state = St.Descriptor;
      this.#need = 1;
    } else if (((magic & SKIPPABLE_MAGIC_MASK) >>> 0) === SKIPPABLE_MAGIC) {
      this.#frame = { offset: at, length: 0, skippable: true, checksum: false };
      this.#state = St.SkipLength;
      this.#need = 4;
    } else {
      throw new FormatError(
        `not a zstd frame at offset ${at}: magic 0x${magic.toString(16).padStart(8, "0")}` +
          (this.frames > 0 ? ` (trailing data after ${this.frames} frame(s))` : ""),
      );
    }
  }

  #descriptorDone(): void {
    const d = this.#field[0];
    if (d & 0x08) {
      throw new FormatError(
        `zstd frame at offset ${this.#frame!.offset}: reserved bit set in frame header descriptor`,
      );
    }
    const single = (d >> 5) & 1;
    this.#frame!.checksum = ((d >> 2) & 1) === 1;
    const fcs = d >> 6 === 0 ? single : FCS_SIZE[d >> 6];
    const rest = (single ? 0 : 1) + DID_SIZE[d & 3] + fcs;
    // The descriptor stays at field[0], the rest of the header is gathered after it.
    if (rest === 0) this.#headerDone();
    else {
      this.#state = St.HeaderRest;
      this.#need = rest;
    }
  }

  #headerRestDone(): void {
    const f = this.#field;
    const d = f[0];
    const single = (d >> 5) & 1;
    const fcs = d >> 6 === 0 ? single : FCS_SIZE[d >> 6];
    if (fcs > 0) {
      const p = this.#fieldLen - fcs;
      let v = 0;
      for (let i = fcs - 1; i >= 0; i--) v = v * 256 + f[p + i];
      this.#frame!.contentSize = fcs === 2 ? v + 256 : v;
    }
    this.#headerDone();
  }

  #blockHeaderDone(pos: number): void {
    this.#fieldLen = 0;
    const f = this.#field;
    const at = this.#fieldStart;
    const h = f[0] | (f[1] << 8) | (f[2] << 16);
    this.#lastBlock = (h & 1) === 1;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    this.#blockNo++;
    this.#blockOffset = at;
    if (type === 3 || size > MAX_BLOCK_SIZE) {
      throw new FormatError(
        `zstd frame at offset ${this.#frame!.offset}: block ${this.#blockNo} at offset ${at} ` +
          (type === 3 ? "has the reserved block type" : `is ${size} bytes (max ${MAX_BLOCK_SIZE})`),
      );
    }
    const body = type === 1 ? 1 : size; // RLE: one byte repeated `size` times
    if (body > 0) {
      this.#state = St.BlockBody;
      this.#need = body;
    } else if (this.#blockDone()) this.#endFrame(pos);
  }

  /** Throws unless the input ended exactly at a frame boundary (and held at least one frame). */
  finish(): void {
    if (this.#state === St.Magic && this.#fieldLen === 0) {
      if (this.frames === 0) throw new FormatError("empty zstd stream (no frame)");
      return;
    }
    const where: Record<St, string> = {
      [St.Magic]: "inside a frame magic number",
      [St.SkipLength]: "inside a skippable frame header",
      [St.SkipBody]: "inside a skippable frame",
      [St.Descriptor]: "inside a frame header",
      [St.HeaderRest]: "inside a frame header",
      [St.BlockHeader]: "inside a block header",
      [St.BlockBody]: `inside block ${this.#blockNo} (which starts at offset ${this.#blockOffset})`,
      [St.Checksum]: "inside the frame checksum",
    };
    const frame = this.#state !== St.Magic && this.#frame
      ? ` of the frame at offset ${this.#frame.offset}`
      : "";
    throw new FormatError(
      `truncated zstd stream: input ends at offset ${this.#base} ${where[this.#state]}${frame}`,
    );
  }

  #inZstdFrame(): boolean {
    const s = this.#state;
    return s === St.Descriptor || s === St.HeaderRest || s === St.BlockHeader || s === St.BlockBody ||
      s === St.Checksum;
  }

  #headerDone(): void {
    this.#fieldLen = 0;
    this.#state = St.BlockHeader;
    this.#need = 3;
    this.#blockNo = 0;
  }

  /** After a block's body: returns true when the frame ends here. */
  #blockDone(): boolean {
    if (!this.#lastBlock) {
      this.#state = St.BlockHeader;
      this.#need = 3;
      return false;
    }
    if (this.#frame!.checksum) {
      this.#state = St.Checksum;
      this.#need = 4;
      return false;
    }
    this.#toMagic();
    return true;
  }

  #toMagic(): void {
    this.#state = St.Magic;
    this.#need = 4;
    this.#fieldLen = 0;
  }

  #completed(f: ZstdFrameInfo): void {
    this.frames++;
    if (f.skippable) this.#toMagic();
    this.onFrame?.(f);
  }
}

/** Lists the frames of an in-memory zstd stream (structure only, nothing is decoded). */
export function listZstdFrames(data: Uint8Array): ZstdFrameInfo[] {
  const frames: ZstdFrameInfo[] = [];
  const s = new ZstdFrameScanner();
  s.onFrame = (f) => frames.push({ ...f });
  s.push(data);
  s.finish();
  return frames;
}

function decodeError(e: unknown, frame: ZstdFrameInfo | undefined): FormatError {
  if (e instanceof FormatError) return e;
  const where = frame ? ` at offset ${frame.offset}` : "";
  return new FormatError(`corrupt zstd frame${where}: ${(e as Error)?.message ?? e}`, { cause: e });
}

/** Decodes one complete frame held in memory. */
function decodeFrameSync(data: Uint8Array, frame: ZstdFrameInfo | undefined): Uint8Array {
  let out: Uint8Array;
  try {
    out = zlib.zstdDecompressSync(data);
  } catch (e) {
    throw decodeError(e, frame);
  }
  if (frame?.contentSize !== undefined && out.length !== frame.contentSize) {
    throw new FormatError(
      `corrupt zstd frame at offset ${frame.offset}: decoded ${out.length} bytes, header says ${frame.contentSize}`,
    );
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Decompresses every frame of an in-memory zstd stream (skippable frames skipped). */
export function zstdDecompressAll(data: Uint8Array): Uint8Array {
  const s = new ZstdFrameScanner();
  const pieces = s.push(data);
  s.finish();
  const outs = pieces.map((p) => decodeFrameSync(p.data, p.frame));
  return outs.length === 1 ? outs[0] : concatBytes(outs);
}

/** One-shot compression (the frame records its content size). Empty input → ZSTD_EMPTY_FRAME. */
export function zstdCompress(data: Uint8Array, level = 3): Uint8Array {
  if (data.length === 0) return ZSTD_EMPTY_FRAME.slice();
  const out = zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

type ByteSource = AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>;

/**
 * Decompresses a multi-frame zstd stream incrementally. Each frame's bytes go to a fresh decoder
 * as they arrive (a small frame that is already complete and declares a small content size is
 * decoded in one call); output is pulled with backpressure, so memory stays bounded whatever the
 * frame sizes. Truncated or corrupt input throws FormatError. Source chunks must not be reused
 * by the producer after they are yielded.
 */
export async function* zstdDecompressFrames(source: ByteSource): AsyncGenerator<Uint8Array> {
  const scanner = new ZstdFrameScanner();
  async function* pieces(): AsyncGenerator<FramePiece> {
    for await (const chunk of source as AsyncIterable<Uint8Array>) {
      if (chunk.length > 0) yield* scanner.push(chunk);
    }
    scanner.finish();
  }
  const it = pieces();
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      const first = r.value;
      const frame = first.frame;
      if (
        first.end && first.data.length <= SYNC_FRAME_MAX && frame?.contentSize !== undefined &&
        frame.contentSize <= SYNC_CONTENT_MAX
      ) {
        const out = decodeFrameSync(first.data, frame);
        if (out.length > 0) yield out;
        continue;
      }
      yield* decodeFrameStreaming(first, it);
    }
  } finally {
    await it.return(undefined);
  }
}

async function* decodeFrameStreaming(
  first: FramePiece,
  it: AsyncGenerator<FramePiece>,
): AsyncGenerator<Uint8Array> {
  async function* frameBytes(): AsyncGenerator<Uint8Array> {
    let p = first;
    for (;;) {
      yield p.data;
      if (p.end) return;
      const r = await it.next();
      if (r.done) {
        throw new FormatError(`truncated zstd stream: frame at offset ${first.frame?.offset} not complete`);
      }
      p = r.value;
    }
  }
  const dec = zlib.createZstdDecompress();
  const src = Readable.from(frameBytes());
  src.on("error", (e: Error) => dec.destroy(e));
  src.pipe(dec);
  let produced = 0;
  try {
    for await (const out of dec as AsyncIterable<Uint8Array>) {
      produced += out.length;
      yield new Uint8Array(out.buffer, out.byteOffset, out.length);
    }
  } catch (e) {
    throw decodeError(e, first.frame);
  } finally {
    src.destroy();
    dec.destroy();
  }
  const cs = first.frame?.contentSize;
  if (cs !== undefined && produced !== cs) {
    throw new FormatError(
      `corrupt zstd frame at offset ${first.frame!.offset}: decoded ${produced} bytes, header says ${cs}`,
    );
  }
}

/** zstdDecompressFrames as a ReadableStream. */
export function zstdDecompressStream(source: ByteSource): ReadableStream<Uint8Array> {
  return ReadableStream.from(zstdDecompressFrames(source));
}

/** A transform (for pipeThrough) that decompresses every frame of a zstd byte stream. */
export function zstdMultiFrameDecompressor(): {
  writable: WritableStream<Uint8Array>;
  readable: ReadableStream<Uint8Array>;
} {
  const pass = new TransformStream<Uint8Array, Uint8Array>();
  return { writable: pass.writable, readable: zstdDecompressStream(pass.readable) };
}

/**
 * Streaming compressor producing one frame, like libzstd's streaming API (no content size in the
 * header, no checksum): output does not depend on how the input is split into writes.
 */
export class ZstdStreamCompressor {
  #enc: zlib.ZstdCompress;
  #out: Uint8Array[] = [];
  #written = 0;
  #error: Error | undefined;

  constructor(level = 3) {
    this.#enc = zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
    this.#enc.on("data", (d: Uint8Array) => this.#out.push(d));
    this.#enc.on("error", (e: Error) => this.#error ??= e);
  }

  /** Uncompressed bytes written so far. */
  get bytesIn(): number {
    return this.#written;
  }

  /** Queues bytes (the caller must not modify them afterwards). */
  write(data: Uint8Array): void {
    if (this.#error) throw this.#error;
    if (data.length === 0) return;
    this.#written += data.length;
    this.#enc.write(data);
  }

  /** Resolves once queued input has been consumed by the encoder (bounds the memory it holds). */
  async drain(): Promise<void> {
    if (this.#error) throw this.#error;
    if (!this.#enc.writableNeedDrain) return;
    await new Promise<void>((res, rej) => {
      const onErr = (e: Error) => rej(e);
      this.#enc.once("error", onErr);
      this.#enc.once("drain", () => {
        this.#enc.off("error", onErr);
        res();
      });
    });
  }

  /** Drops the encoder without output (its native state is freed now, not at some later GC). */
  destroy(): void {
    this.#enc.destroy();
    this.#out = [];
  }

  /** Ends the frame and returns the compressed bytes. */
  async finish(): Promise<Uint8Array> {
    if (this.#error) throw this.#error;
    if (this.#written === 0) {
      this.#enc.destroy();
      return ZSTD_EMPTY_FRAME.slice();
    }
    await new Promise<void>((res, rej) => {
      this.#enc.once("end", () => res());
      this.#enc.once("error", (e: Error) => rej(e));
      this.#enc.end();
    });
    if (this.#error) throw this.#error;
    const out = concatBytes(this.#out);
    this.#out = [];
    // Deno's encoder sometimes appends an empty second frame after end(): drop it, so the output
    // is the single frame libzstd's streaming API produces.
    const frames = listZstdFrames(out);
    for (const f of frames.slice(1)) {
      if (f.skippable || zstdDecompressAll(out.subarray(f.offset, f.offset + f.length)).length !== 0) {
        throw new InternalError(`zstd encoder produced an unexpected extra frame at offset ${f.offset}`);
      }
    }
    return frames.length > 1 ? out.slice(0, frames[0].length) : out;
  }
}
