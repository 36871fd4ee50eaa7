// One 512-byte tar header block: field offsets (POSIX ustar, with GNU's variants), numeric field
// decoding (octal text or GNU base-256), and checksum verification.
import { FormatError } from "../../errors.ts";

export const BLOCK = 512;

/** Bytes of padding after `size` bytes of payload, up to the next block boundary. */
export function paddingOf(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

export function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** A NUL-terminated text field as a byte string (one char per byte). */
export function textField(b: Uint8Array, off: number, len: number): string {
  let end = off;
  const max = off + len;
  while (end < max && b[end] !== 0) end++;
  let s = "";
  for (let i = off; i < end; i++) s += String.fromCharCode(b[i]);
  return s;
}

/**
 * A numeric field. Octal text (leading spaces, digits, then NUL/space terminators; all-blank = 0),
 * or GNU base-256 when the high bit of the first byte is set (0x80 = positive, 0xff = negative,
 * big-endian two's complement). Throws FormatError on anything else or values beyond 2^53.
 */
export function numericField(b: Uint8Array, off: number, len: number, what: string): number {
  if (b[off] & 0x80) {
    const v = base256Field(b, off, len, what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new FormatError(`tar header: ${what} ${v} is out of range`);
    }
    return Number(v);
  }
  let i = off;
  const end = off + len;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i];
    if (c >= 0x30 && c <= 0x37) {
      v = v * 8 + (c - 0x30);
      digits++;
    } else break;
  }
  // Only terminators may follow the digits.
  for (; i < end; i++) {
    if (b[i] !== 0 && b[i] !== 0x20) {
      throw new FormatError(
        `tar header: invalid octal ${what} field ${JSON.stringify(textField(b, off, len))}`,
      );
    }
  }
  if (!Number.isSafeInteger(v)) throw new FormatError(`tar header: ${what} is out of range`);
  return digits === 0 ? 0 : v;
}

/** A GNU base-256 field (high bit of the first byte set) as an exact bigint. */
function base256Field(b: Uint8Array, off: number, len: number, what: string): bigint {
  const first = b[off];
  const negative = first === 0xff;
  if (!negative && first !== 0x80) throw new FormatError(`tar header: invalid base-256 ${what} field`);
  let v = 0n;
  for (let i = off; i < off + len; i++) v = (v << 8n) | BigInt(i === off ? first & 0x7f : b[i]);
  if (negative) v -= 1n << BigInt(8 * len - 1);
  return v;
}

/** The signed 64-bit range EROFS (and C mkcomposefs) holds for mtime seconds (docs/dumpfile.md). */
export const I64_MIN = -(1n << 63n);
export const I64_MAX = (1n << 63n) - 1n;

/**
 * The mtime field: a number where it is exact, plus the bigint when a base-256 value lies beyond ±2^53
 * (any signed 64-bit value is kept exactly; beyond that the entry is refused).
 */
export function mtimeField(b: Uint8Array, off: number, len: number): { sec: number; exact?: bigint } {
  if (!(b[off] & 0x80)) return { sec: numericField(b, off, len, "mtime") };
  const v = base256Field(b, off, len, "mtime");
  if (v < I64_MIN || v > I64_MAX) throw new FormatError(`tar header: mtime ${v} is out of range (64 bits)`);
  if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return { sec: Number(v) };
  return { sec: Number(v), exact: v };
}

/** Checks the header checksum; tar writers have used both unsigned and signed byte sums. */
export function verifyChecksum(b: Uint8Array): void {
  const stored = numericField(b, 148, 8, "checksum");
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i];
    unsigned += c;
    signed += c >= 128 ? c - 256 : c;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new FormatError(
      `tar header checksum mismatch: stored ${stored.toString(8)}, computed ${unsigned.toString(8)}`,
    );
  }
}

export type HeaderFlavour = "ustar" | "gnu" | "v7";

/** ustar (POSIX, "ustar\0"), old GNU ("ustar  \0", no prefix field) or pre-POSIX v7 (no magic). */
export function flavourOf(b: Uint8Array): HeaderFlavour {
  const m = textField(b, 257, 6);
  if (m === "ustar") {
    // "ustar\0" + "00" is POSIX; "ustar " + " \0" is GNU (its magic's 6th byte is a space).
    return b[262] === 0 ? "ustar" : "gnu";
  }
  if (m === "ustar ") return "gnu";
  return "v7";
}

/** The fields of one main (non-extension) header, decoded but not yet overridden by extensions. */
export interface RawHeader {
  typeflag: string;
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** The exact mtime seconds when they lie beyond ±2^53 (base-256), else absent. */
  mtimeExact?: bigint;
  linkname: string;
  devmajor: number;
  devminor: number;
  flavour: HeaderFlavour;
}

/** Decodes a (checksum-verified) header block. Device numbers are decoded only for chr/blk. */
export function decodeHeader(b: Uint8Array): RawHeader {
  const flavour = flavourOf(b);
  const typeflag = b[156] === 0 ? "\0" : String.fromCharCode(b[156]);
  let name = textField(b, 0, 100);
  if (flavour === "ustar") {
    const prefix = textField(b, 345, 155);
    if (prefix !== "") name = prefix + "/" + name;
  }
  const isDev = typeflag === "3" || typeflag === "4";
  const mtime = mtimeField(b, 136, 12);
  return {
    typeflag,
    name,
    mode: numericField(b, 100, 8, "mode"),
    uid: numericField(b, 108, 8, "uid"),
    gid: numericField(b, 116, 8, "gid"),
    size: numericField(b, 124, 12, "size"),
    mtime: mtime.sec,
    ...(mtime.exact !== undefined ? { mtimeExact: mtime.exact } : {}),
    linkname: textField(b, 157, 100),
    devmajor: isDev && flavour !== "v7" ? numericField(b, 329, 8, "devmajor") : 0,
    devminor: isDev && flavour !== "v7" ? numericField(b, 337, 8, "devminor") : 0,
    flavour,
  };
}

/** glibc's makedev() (64-bit Linux dev_t encoding). */
export function makedev(major: number, minor: number): number {
  const M = BigInt(major);
  const m = BigInt(minor);
  const dev = ((M & 0xfffff000n) << 32n) | ((M & 0xfffn) << 8n) | ((m & 0xffffff00n) << 12n) | (m & 0xffn);
  if (dev > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError(`device number ${major}:${minor} does not fit in 53 bits`);
  }
  return Number(dev);
}
