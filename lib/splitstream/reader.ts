// Reads a splitstream file (docs/splitstream.md) held in memory: the header, info and reference tables are
// checked up front; the chunk stream is decompressed lazily, piece by piece, by chunks().
import { FormatError } from "../errors.ts";
import { algorithmFromKernelId, DIGEST_SIZE, type HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import { equalBytes } from "../util/bytes.ts";
import { zstdDecompressAll, zstdDecompressFrames } from "../compress/zstd.ts";
import {
  checkRange,
  contentTypeName,
  type FileRange,
  HEADER_SIZE,
  INFO_SIZE,
  LegacySplitstreamHeader,
  LG_BLOCKSIZE,
  MAGIC,
  SplitstreamHeader,
  SplitstreamInfo,
  VERSION,
} from "./format.ts";
import type { SplitStreamChunk } from "./chunk.ts";

/** Inline records larger than this are handed out in several pieces. */
const INLINE_PIECE_MAX = 1 << 20;
/** Compressed input is fed to the decoder in slices of this size. */
const FEED_SIZE = 256 * 1024;

/** Iterating a reader walks its chunks (the same as chunks()). */
export class SplitStreamReader implements AsyncIterable<SplitStreamChunk> {
  readonly alg: HashAlgorithm;
  readonly contentType: bigint;
  /** Length of the reassembled stream, as recorded by the writer. */
  readonly streamSize: number;
  readonly streamRefs: ObjectId[];
  readonly objectRefs: ObjectId[];
  readonly namedRefs: Map<string, ObjectId>;
  /** The file used the old (bootc ≤ 1.15.x) header layout. */
  readonly legacyHeader: boolean;
  /** The compressed chunk stream. */
  readonly #stream: Uint8Array;

  private constructor(f: {
    alg: HashAlgorithm;
    contentType: bigint;
    streamSize: number;
    streamRefs: ObjectId[];
    objectRefs: ObjectId[];
    namedRefs: Map<string, ObjectId>;
    legacyHeader: boolean;
    stream: Uint8Array;
  }) {
    this.alg = f.alg;
    this.contentType = f.contentType;
    this.streamSize = f.streamSize;
    this.streamRefs = f.streamRefs;
    this.objectRefs = f.objectRefs;
    this.namedRefs = f.namedRefs;
    this.legacyHeader = f.legacyHeader;
    this.#stream = f.stream;
  }

  /**
   * Parses and checks everything but the chunk stream. `alg` / `contentType`, when given, must
   * match the file's.
   */
  static fromBytes(
    data: Uint8Array,
    opts: { alg?: HashAlgorithm; contentType?: bigint } = {},
  ): Promise<SplitStreamReader> {
    try {
      return Promise.resolve(SplitStreamReader.#parse(data, opts));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  static #parse(data: Uint8Array, opts: { alg?: HashAlgorithm; contentType?: bigint }): SplitStreamReader {
    if (data.length < HEADER_SIZE) {
      throw new FormatError(
        `splitstream too short for its header: ${data.length} bytes (need ${HEADER_SIZE})`,
      );
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let h = SplitstreamHeader.read(view, 0);
    let legacyHeader = false;
    if (!equalBytes(h.magic, MAGIC)) {
      h = LegacySplitstreamHeader.read(view, 0);
      if (!equalBytes(h.magic, MAGIC)) {
        throw new FormatError('not a splitstream: bad magic (expected "SplitStream" at offset 0 or 18)');
      }
      legacyHeader = true;
    }
    if (h.version !== VERSION) {
      throw new FormatError(`unsupported splitstream version ${h.version} (expected ${VERSION})`);
    }
    const algId = h.algorithm;
    let alg: HashAlgorithm;
    try {
      alg = algorithmFromKernelId(algId);
    } catch {
      throw new FormatError(`splitstream has unknown fs-verity algorithm id ${algId}`);
    }
    if (opts.alg && opts.alg !== alg) {
      throw new FormatError(`splitstream uses ${alg} object ids, expected ${opts.alg}`);
    }
    if (h.lgBlocksize !== LG_BLOCKSIZE) {
      throw new FormatError(
        `unsupported splitstream fs-verity block size 2^${h.lgBlocksize} (expected 2^${LG_BLOCKSIZE})`,
      );
    }

    const info = checkRange(h.info, data.length, "info");
    if (info.end - info.start < INFO_SIZE) {
      throw new FormatError(
        `splitstream info section ${info.start}..${info.end} is ${
          info.end - info.start
        } bytes (need ${INFO_SIZE})`,
      );
    }
    const inf = SplitstreamInfo.read(view, info.start);
    const streamRefsR = checkRange(inf.streamRefs, data.length, "stream_refs");
    const objectRefsR = checkRange(inf.objectRefs, data.length, "object_refs");
    const streamR = checkRange(inf.stream, data.length, "stream");
    const namedR = checkRange(inf.namedRefs, data.length, "named_refs");
    const contentType = inf.contentType;
    if (opts.contentType !== undefined && contentType !== opts.contentType) {
      throw new FormatError(
        `splitstream content type is ${contentTypeName(contentType)}, expected ${
          contentTypeName(opts.contentType)
        }`,
      );
    }
    const size = inf.streamSize;
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError(`implausible splitstream stream_size ${size}`);
    }

    const streamRefs = digests(data, streamRefsR, alg, "stream_refs");
    const objectRefs = digests(data, objectRefsR, alg, "object_refs");
    const namedRefs = parseNamedRefs(data.subarray(namedR.start, namedR.end), namedR, streamRefs);
    return new SplitStreamReader({
      alg,
      contentType,
      streamSize: Number(size),
      streamRefs,
      objectRefs,
      namedRefs,
      legacyHeader,
      stream: data.subarray(streamR.start, streamR.end),
    });
  }

  /**
   * The chunk stream in order. Inline records longer than 1 MiB come as several consecutive
   * inline chunks. Decompresses incrementally (any valid multi-frame zstd); throws FormatError on
   * an out-of-range object index or a stream that ends inside a record.
   */
  async *chunks(): AsyncGenerator<SplitStreamChunk> {
    const compressed = this.#stream;
    async function* feed(): AsyncGenerator<Uint8Array> {
      for (let o = 0; o < compressed.length; o += FEED_SIZE) yield compressed.subarray(o, o + FEED_SIZE);
    }
    const refs = this.objectRefs;
    const it = zstdDecompressFrames(feed());
    // A consumer that stops early (an error in what it builds) must not leave the decoder open.
    try {
      yield* this.#records(it, refs);
    } finally {
      await it.return(undefined);
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<SplitStreamChunk> {
    return this.chunks();
  }

  async *#records(
    it: AsyncGenerator<Uint8Array>,
    refs: readonly ObjectId[],
  ): AsyncGenerator<SplitStreamChunk> {
    const head = new Uint8Array(8);
    const headView = new DataView(head.buffer);
    let headLen = 0;
    let inlineLeft = 0; // bytes of the current inline record still to come
    let recordAt = 0; // offset of the current record in the uncompressed stream
    let offset = 0; // uncompressed bytes consumed
    for (;;) {
      let r;
      try {
        r = await it.next();
      } catch (e) {
        throw within(e);
      }
      if (r.done) break;
      const buf = r.value;
      let p = 0;
      while (p < buf.length) {
        if (inlineLeft > 0) {
          const n = Math.min(inlineLeft, buf.length - p, INLINE_PIECE_MAX);
          yield { kind: "inline", data: buf.subarray(p, p + n) };
          p += n;
          offset += n;
          inlineLeft -= n;
          continue;
        }
        const n = Math.min(8 - headLen, buf.length - p);
        head.set(buf.subarray(p, p + n), headLen);
        headLen += n;
        p += n;
        offset += n;
        if (headLen < 8) continue;
        headLen = 0;
        recordAt = offset - 8;
        const v = headView.getBigInt64(0, true);
        if (v < 0n) {
          const len = -v;
          if (len > BigInt(Number.MAX_SAFE_INTEGER)) {
            throw new FormatError(
              `splitstream: implausible inline chunk of ${len} bytes at stream offset ${recordAt}`,
            );
          }
          inlineLeft = Number(len);
        } else {
          if (v >= BigInt(refs.length)) {
            throw new FormatError(
              `splitstream: external reference index ${v} out of range (${refs.length} object refs) at stream offset ${recordAt}`,
            );
          }
          yield { kind: "external", id: refs[Number(v)] };
        }
      }
    }
    if (headLen > 0) {
      throw new FormatError(
        `splitstream: stream ends with a partial record header (${headLen} of 8 bytes at stream offset ${
          offset - headLen
        })`,
      );
    }
    if (inlineLeft > 0) {
      throw new FormatError(
        `splitstream: stream ends inside the inline chunk at stream offset ${recordAt} (${inlineLeft} bytes missing)`,
      );
    }
  }
}

function within(e: unknown): unknown {
  return e instanceof FormatError ? e.within("splitstream stream section") : e;
}

function digests(data: Uint8Array, r: FileRange, alg: HashAlgorithm, what: string): ObjectId[] {
  const ds = DIGEST_SIZE[alg];
  const len = r.end - r.start;
  if (len % ds !== 0) {
    throw new FormatError(
      `splitstream ${what} section ${r.start}..${r.end} is ${len} bytes, not a multiple of the ${alg} digest size ${ds}`,
    );
  }
  // One copy of the section, each id a view into it: an ArrayBuffer per id costs ~150 bytes more,
  // and a layer of 100,000 files holds as many ids for as long as its tree lives.
  const all = data.slice(r.start, r.end);
  const out: ObjectId[] = [];
  for (let o = 0; o < len; o += ds) out.push(new ObjectId(alg, all.subarray(o, o + ds)));
  return out;
}

/** `<index>:<name>\0` records; every record NUL-terminated, names UTF-8, indexes into stream refs. */
function parseNamedRefs(section: Uint8Array, r: FileRange, streamRefs: ObjectId[]): Map<string, ObjectId> {
  const map = new Map<string, ObjectId>();
  if (section.length === 0) return map;
  let table: Uint8Array;
  try {
    table = zstdDecompressAll(section);
  } catch (e) {
    throw e instanceof FormatError ? e.within(`splitstream named_refs section ${r.start}..${r.end}`) : e;
  }
  const dec = new TextDecoder("utf-8", { fatal: true });
  let p = 0;
  let n = 0;
  while (p < table.length) {
    const z = table.indexOf(0, p);
    if (z < 0) {
      throw new FormatError(
        `splitstream named refs: trailing ${table.length - p} bytes without a NUL terminator`,
      );
    }
    n++;
    let rec: string;
    try {
      rec = dec.decode(table.subarray(p, z));
    } catch {
      throw new FormatError(`splitstream named ref ${n} (table offset ${p}) is not valid UTF-8`);
    }
    p = z + 1;
    const colon = rec.indexOf(":");
    if (colon < 0) throw new FormatError(`splitstream named ref ${n} has no ':': ${JSON.stringify(rec)}`);
    const idxStr = rec.slice(0, colon);
    const name = rec.slice(colon + 1);
    if (!/^\+?[0-9]+$/.test(idxStr)) {
      throw new FormatError(
        `splitstream named ref ${JSON.stringify(name)} has a non-numeric index ${JSON.stringify(idxStr)}`,
      );
    }
    const idx = Number(idxStr);
    if (idx >= streamRefs.length) {
      throw new FormatError(
        `splitstream named ref ${
          JSON.stringify(name)
        }: index ${idxStr} out of range (${streamRefs.length} stream refs)`,
      );
    }
    map.set(name, streamRefs[idx]);
  }
  return map;
}
