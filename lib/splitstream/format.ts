// Splitstream on-disk constants and layout (docs/splitstream.md). All integers little-endian.
import { FormatError, InternalError } from "../errors.ts";
import { bytes, struct } from "../util/struct_codec.ts";

export const MAGIC: Uint8Array = new TextEncoder().encode("SplitStream");
export const VERSION = 0;
/** fs-verity block size the objects were measured with: only 4 KiB is supported. */
export const LG_BLOCKSIZE = 12;

/** A section's place in the file: absolute offsets, end exclusive (u64 start, u64 end). */
export const Range = struct("range", { start: "u64big", end: "u64big" }, 16);

/** The header (composefs-rs `SplitstreamHeader`, repr(C)). */
export const SplitstreamHeader = struct("splitstream_header", {
  magic: bytes(11), // MAGIC
  version: "u8", // VERSION
  flags: "u16", // 0
  algorithm: "u8", // fs-verity algorithm number of the object ids
  lgBlocksize: "u8", // LG_BLOCKSIZE
  info: Range, // the info section
}, 32);
export const HEADER_SIZE = SplitstreamHeader.size;
/** Layout written by composefs-rs ≤ bootc 1.15.x (struct without repr(C): fields reordered); only read. */
export const LegacySplitstreamHeader = struct("legacy_splitstream_header", {
  info: Range,
  flags: "u16",
  magic: bytes(11),
  version: "u8",
  algorithm: "u8",
  lgBlocksize: "u8",
}, 32);

/** Info section: five ranges/values; readers accept a longer section and ignore the rest. */
export const SplitstreamInfo = struct("splitstream_info", {
  streamRefs: Range,
  objectRefs: Range,
  stream: Range,
  namedRefs: Range,
  contentType: "u64big", // see contentTypeFromAscii
  streamSize: "u64big",
}, 80);
export const INFO_SIZE = SplitstreamInfo.size;

/** A content type is the u64 LE reading of 8 ASCII bytes. */
export function contentTypeFromAscii(name: string): bigint {
  if (name.length !== 8 || !/^[\x20-\x7e]{8}$/.test(name)) {
    throw new InternalError(`content type must be 8 printable ASCII chars: ${JSON.stringify(name)}`);
  }
  let v = 0n;
  for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(name.charCodeAt(i));
  return v;
}

/** The 8 ASCII chars of a content type when printable, else 0x-hex. */
export function contentTypeName(v: bigint): string {
  let s = "";
  for (let i = 0; i < 8; i++) {
    const c = Number((v >> BigInt(8 * i)) & 0xffn);
    if (c < 0x20 || c > 0x7e) return `0x${v.toString(16).padStart(16, "0")}`;
    s += String.fromCharCode(c);
  }
  return s;
}

/** A section's place in the file: absolute offsets, end exclusive. */
export interface FileRange {
  start: number;
  end: number;
}

/** Checks a range read from a file of `fileSize` bytes. */
export function checkRange(r: { start: bigint; end: bigint }, fileSize: number, what: string): FileRange {
  const { start, end } = r;
  if (end < start) throw new FormatError(`splitstream ${what} range ${start}..${end} ends before it starts`);
  if (end > BigInt(fileSize)) {
    throw new FormatError(
      `splitstream ${what} range ${start}..${end} is past the end of the file (${fileSize} bytes)`,
    );
  }
  return { start: Number(start), end: Number(end) };
}

/** A range as the struct field holds it. */
export function rangeValue(r: FileRange): { start: bigint; end: bigint } {
  return { start: BigInt(r.start), end: BigInt(r.end) };
}
