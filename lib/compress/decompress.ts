// Decompression of a layer's bytes (docs/oci.md#media-types): every gzip member and every zstd
// frame is decoded (skippable frames skipped), unlike composefs-rs 0.7.0. Which compression a media
// type declares is lib/oci/media_types.ts's question.
import { Duplex } from "node:stream";
import { createGunzip } from "node:zlib";
import { CfsError, FormatError } from "../errors.ts";
import {
  type NativeDecoding,
  nativeDecompress,
  stopDecodeThread,
  warmDecodeThread,
} from "../linux/native_decompress.ts";
import { zstdDecompressStream } from "./zstd.ts";

export type LayerCompression = "none" | "gzip" | "zstd";

/** Recognises gzip (1f 8b) and zstd frames (28 b5 2f fd, or a skippable frame 5X 2a 4d 18). */
export function sniffCompression(head: Uint8Array): LayerCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) {
    return "zstd";
  }
  if (
    head.length >= 4 && (head[0] & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18
  ) {
    return "zstd";
  }
  return "none";
}

/**
 * The uncompressed stream of `input`, declared as compressed with `declared`. Declared uncompressed,
 * bytes that start with a gzip/zstd magic are decompressed anyway (`sniff`, default true): a tar
 * cannot start with those bytes in practice (they would be the first entry's name), and some
 * producers mislabel compressed layers. `native: false` forces the node:zlib decoders (tests of
 * both paths).
 */
export function decompressDeclared(
  input: ReadableStream<Uint8Array>,
  declared: LayerCompression,
  opts: { sniff?: boolean; native?: boolean } = {},
): ReadableStream<Uint8Array> {
  if (declared !== "none" || opts.sniff === false) return decompress(input, declared, opts);
  return sniffed(input, opts);
}

/**
 * Decompresses with the given method (errors from the decoder become FormatError): with the system
 * libzstd / zlib on a decoding thread where FFI allows it (lib/linux/native_decompress.ts), else node:zlib.
 */
export function decompress(
  input: ReadableStream<Uint8Array>,
  how: LayerCompression,
  opts: { native?: boolean } = {},
): ReadableStream<Uint8Array> {
  if (how === "none") return input;
  const native = opts.native === false ? null : nativeDecompress(input, how);
  if (native) return recyclingStream(native, how);
  switch (how) {
    case "gzip": {
      const gunzip = Duplex.toWeb(createGunzip({ chunkSize: 128 * 1024 })) as unknown as TransformStream<
        Uint8Array,
        Uint8Array
      >;
      return mapErrors(input.pipeThrough(gunzip), "gzip");
    }
    case "zstd":
      return mapErrors(zstdDecompressStream(input), "zstd");
  }
}

/** Peeks at the first bytes, then decompresses as they say. */
function sniffed(input: ReadableStream<Uint8Array>, opts: { native?: boolean }): ReadableStream<Uint8Array> {
  const reader = input.getReader();
  let inner: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async start() {
      const head: Uint8Array[] = [];
      let n = 0;
      while (n < 4) {
        const r = await reader.read();
        if (r.done) break;
        head.push(r.value);
        n += r.value.length;
      }
      reader.releaseLock();
      // Put the peeked chunks back in front of the rest.
      const replay = new ReadableStream<Uint8Array>({
        start(ctl) {
          for (const h of head) ctl.enqueue(h);
          ctl.close();
        },
      });
      const whole = concatStreams(replay, input);
      const first = new Uint8Array(Math.min(n, 4));
      let o = 0;
      for (const h of head) {
        const take = Math.min(h.length, first.length - o);
        first.set(h.subarray(0, take), o);
        o += take;
        if (o === first.length) break;
      }
      inner = decompress(whole, sniffCompression(first), opts).getReader();
    },
    async pull(ctl) {
      const r = await inner!.read();
      if (r.done) ctl.close();
      else ctl.enqueue(r.value);
    },
    async cancel(reason) {
      await inner?.cancel(reason);
    },
  });
}

function concatStreams(
  a: ReadableStream<Uint8Array>,
  b: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const parts = [a, b];
  let cur: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      for (;;) {
        if (!cur) {
          const next = parts.shift();
          if (!next) return ctl.close();
          cur = next.getReader();
        }
        const r = await cur.read();
        if (!r.done) return ctl.enqueue(r.value);
        cur = undefined;
      }
    },
    async cancel(reason) {
      await cur?.cancel(reason);
      for (const p of parts) await p.cancel(reason);
    },
  });
}

/**
 * Starts the native decoders' thread before streams come (a pull, before its layers' downloads), so
 * the first chunk does not wait for the thread to start.
 */
export function warmDecoders(): void {
  warmDecodeThread();
}

/** Lets the native decoders' thread go once its streams have ended (frees its memory for what follows). */
export function releaseDecoders(): void {
  stopDecodeThread();
}

const IN_PLACE = Symbol("cfsctl.inPlaceChunks");

/** A decoder's stream read in place: its chunks, and the digest of its output computed beside them. */
export interface InPlaceDecoding {
  /** Each chunk stays intact only until RECYCLE_DISTANCE (4) further chunks have been read. */
  chunks: AsyncIterable<Uint8Array>;
  /** Asks for the `alg` (node:crypto name) digest of the output; before the first chunk is read. */
  hashOutput(alg: string): void;
  /** Once the chunks have ended: the digest asked for (hex) and the output size. */
  outputDigest(): { hex: string; size: number } | undefined;
}

/**
 * The chunks of a stream made by decompressLayer/decompress, read in place: no copy, but each chunk
 * stays intact only until RECYCLE_DISTANCE (4) further chunks have been read. Null for any other
 * stream, or one already being read. Reading this way and through the stream are exclusive.
 */
export function inPlaceChunks(s: unknown): AsyncIterable<Uint8Array> | null {
  return inPlaceDecoding(s)?.chunks ?? null;
}

/** Like inPlaceChunks, and the decoding thread can hash the output on the way (a layer's diff_id). */
export function inPlaceDecoding(s: unknown): InPlaceDecoding | null {
  const f = (s as { [IN_PLACE]?: () => InPlaceDecoding | null } | null)?.[IN_PLACE];
  return f ? f() : null;
}

/**
 * A stream over a recycling decoder: read as a stream, every chunk is copied out (the consumer may
 * keep it); inPlaceDecoding() gives the decoder's own buffers instead (the layer splitter copies what
 * it keeps anyway).
 */
function recyclingStream(dec: NativeDecoding, codec: string): ReadableStream<Uint8Array> {
  let claimed = false;
  async function* mapped(): AsyncGenerator<Uint8Array> {
    try {
      yield* dec.chunks;
    } catch (e) {
      throw codecError(e, codec);
    }
  }
  const it = mapped();
  const stream = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      claimed = true;
      const r = await it.next();
      if (r.done) ctl.close();
      else ctl.enqueue(r.value.slice());
    },
    async cancel() {
      await it.return(undefined);
    },
  }, { highWaterMark: 0 });
  Object.defineProperty(stream, IN_PLACE, {
    value: (): InPlaceDecoding | null => {
      if (claimed || stream.locked) return null;
      claimed = true;
      return { chunks: it, hashOutput: (alg) => dec.hashOutput(alg), outputDigest: () => dec.outputDigest() };
    },
  });
  return stream;
}

function codecError(e: unknown, codec: string): unknown {
  if (e instanceof CfsError) return e;
  return new FormatError(`corrupt ${codec} layer data: ${(e as Error)?.message ?? e}`, { cause: e });
}

/** Re-throws decoder failures as FormatError naming the codec. */
function mapErrors(s: ReadableStream<Uint8Array>, codec: string): ReadableStream<Uint8Array> {
  const reader = s.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      let r;
      try {
        r = await reader.read();
      } catch (e) {
        // Typed errors (a source's digest mismatch, a FormatError) already say what went wrong.
        if (e instanceof CfsError) throw e;
        throw new FormatError(`corrupt ${codec} layer data: ${(e as Error)?.message ?? e}`, { cause: e });
      }
      if (r.done) ctl.close();
      else ctl.enqueue(r.value);
    },
    async cancel(reason) {
      await reader.cancel(reason);
    },
  });
}
