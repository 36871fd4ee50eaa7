// Reader for containers/storage's tar-split files (`overlay-layers/<layer id>.tar-split.gz`): gzip of
// newline-separated JSON records written by github.com/vbatts/tar-split while the layer was extracted.
// Record type 2 ("segment") holds raw tar bytes in base64 (headers, extension headers, the padding
// after the previous file, the end-of-archive blocks); type 1 ("file") stands for one entry's content,
// which was written to the overlay driver's diff/ directory and must be read from there.
// Concatenating the segments with the file contents, in order, gives back the original layer tar
// (see docs/containers-storage.md).
import type { Buffer } from "node:buffer";
import { createGunzip } from "node:zlib";
import { Readable } from "node:stream";
import { FormatError } from "../../../errors.ts";

export type TarSplitRecord =
  | { type: "segment"; bytes: Uint8Array }
  /** `name` is the raw path from the tar header (`name_raw` when the name is not UTF-8). */
  | { type: "file"; name: Uint8Array; size: number };

/** A single JSON line longer than this is refused (a header segment is a few KiB at most). */
const MAX_LINE = 16 * 1024 * 1024;

const enc = new TextEncoder();

const fromBase64 = (Uint8Array as unknown as {
  fromBase64(s: string, o: { lastChunkHandling: "strict" }): Uint8Array;
}).fromBase64;

function base64(s: unknown, where: string): Uint8Array {
  if (s === null || s === undefined || s === "") return new Uint8Array(0);
  if (typeof s === "string") {
    // Strict (padding, no stray bits) and validating: twice as fast as a regex and Buffer.from.
    // ASCII whitespace is skipped, as Go's decoder skips newlines.
    try {
      return fromBase64(s, { lastChunkHandling: "strict" });
    } catch { /* below */ }
  }
  throw new FormatError(`${where}: payload is not base64`);
}

/** Parses one record line (exported for tests). */
export function parseTarSplitLine(line: string, where: string): TarSplitRecord | null {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line);
  } catch (e) {
    throw new FormatError(`${where}: not JSON (${(e as Error).message})`);
  }
  if (rec === null || typeof rec !== "object") throw new FormatError(`${where}: not a JSON object`);
  if (rec.type === 2) {
    const bytes = base64(rec.payload, where);
    return bytes.length ? { type: "segment", bytes } : null;
  }
  if (rec.type === 1) {
    const size = rec.size ?? 0;
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
      throw new FormatError(`${where}: invalid size ${JSON.stringify(rec.size)}`);
    }
    let name: Uint8Array;
    if (rec.name_raw !== undefined && rec.name_raw !== null) name = base64(rec.name_raw, where);
    else if (typeof rec.name === "string") name = enc.encode(rec.name);
    else throw new FormatError(`${where}: file record without a name`);
    return { type: "file", name, size };
  }
  throw new FormatError(`${where}: unknown record type ${JSON.stringify(rec.type)}`);
}

/**
 * The records of a tar-split file, in order, a decompressed chunk's worth at a time (one await per
 * chunk rather than per record). Malformed gzip or JSON: FormatError naming the line.
 */
export async function* readTarSplit(path: string): AsyncGenerator<TarSplitRecord[]> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new FormatError(`${path}: tar-split file missing (layer not pulled by a tar-split-aware tool?)`);
    }
    throw e;
  }
  const gunzip = createGunzip();
  const input = Readable.fromWeb(file.readable as import("node:stream/web").ReadableStream);
  input.on("error", (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  const dec = new TextDecoder("utf-8", { fatal: false });
  let carry = "";
  let lineNo = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      const text = carry + dec.decode(chunk, { stream: true });
      const out: TarSplitRecord[] = [];
      let start = 0;
      for (;;) {
        const nl = text.indexOf("\n", start);
        if (nl < 0) break;
        lineNo++;
        const line = text.slice(start, nl);
        start = nl + 1;
        if (line.length === 0) continue;
        const r = parseTarSplitLine(line, `${path}: line ${lineNo}`);
        if (r) out.push(r);
      }
      if (out.length) yield out;
      carry = text.slice(start);
      if (carry.length > MAX_LINE) throw new FormatError(`${path}: line ${lineNo + 1} is too long`);
    }
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(`${path}: cannot decompress tar-split (${(e as Error).message})`, { cause: e });
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  carry += dec.decode();
  if (carry.trim().length) {
    const r = parseTarSplitLine(carry, `${path}: line ${lineNo + 1}`);
    if (r) yield [r];
  }
}
