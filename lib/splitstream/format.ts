// Splitstream on-disk constants and layout (docs/splitstream.md). All integers little-endian.
import { FormatError } from "../errors.ts";

export const MAGIC: Uint8Array = new TextEncoder().encode("SplitStream");
export const VERSION = 0;
/** fs-verity block size the objects were measured with: only 4 KiB is supported. */
export const LG_BLOCKSIZE = 12;

/** Header: magic 0..11, version 11, flags 12..14, algorithm 14, lg_blocksize 15, info range 16..32. */
export const HEADER_SIZE = 32;
export const HEADER = { magic: 0, version: 11, flags: 12, algorithm: 14, lgBlocksize: 15, info: 16 } as const;
/** Layout written by composefs-rs ≤ bootc 1.15.x (struct without repr(C)); only read. */
export const LEGACY_HEADER = {
  info: 0,
  flags: 16,
  magic: 18,
  version: 29,
  algorithm: 30,
  lgBlocksize: 31,
} as const;

/** Info section: five ranges/values; readers accept a longer section and ignore the rest. */
export const INFO_SIZE = 80;
export const INFO = {
  streamRefs: 0,
  objectRefs: 16,
  stream: 32,
  namedRefs: 48,
  contentType: 64,
  streamSize: 72,
} as const;

/** A content type is the u64 LE reading of 8 ASCII bytes. */
export function contentTypeFromAscii(name: string): bigint {
  if (name.length !== 8 || !/^[\x20-\x7e]{8}$/.test(name)) {
    throw new RangeError(`content type must be 8 printable ASCII chars: ${JSON.stringify(name)}`);
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

/** Reads a 16-byte range and checks it lies inside a file of `fileSize` bytes. */
export function readRange(view: DataView, at: number, fileSize: number, what: string): FileRange {
  const start = view.getBigUint64(at, true);
  const end = view.getBigUint64(at + 8, true);
  if (end < start) throw new FormatError(`splitstream ${what} range ${start}..${end} ends before it starts`);
  if (end > BigInt(fileSize)) {
    throw new FormatError(
      `splitstream ${what} range ${start}..${end} is past the end of the file (${fileSize} bytes)`,
    );
  }
  return { start: Number(start), end: Number(end) };
}

export function writeRange(view: DataView, at: number, r: FileRange): void {
  view.setBigUint64(at, BigInt(r.start), true);
  view.setBigUint64(at + 8, BigInt(r.end), true);
}
