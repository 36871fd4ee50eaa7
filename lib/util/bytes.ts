// Byte helpers. Names, paths and symlink targets are kept as "byte strings": JS strings whose every
// char code is 0..255 and stands for one raw byte (latin1). They compare with `<` in byte order,
// hash as Map keys, and survive non-UTF-8 file names. Convert at the edges only.
import { FormatError } from "../errors.ts";

const utf8Enc = new TextEncoder();
const utf8Dec = new TextDecoder("utf-8", { fatal: true });
const utf8LossyDec = new TextDecoder("utf-8");

/** Raw bytes → byte string. */
export function bytesToBstr(b: Uint8Array): string {
  let s = "";
  const CH = 8192;
  for (let i = 0; i < b.length; i += CH) {
    s += String.fromCharCode.apply(null, b.subarray(i, i + CH) as unknown as number[]);
  }
  return s;
}

// WHATWG "latin1" is windows-1252: bytes 0x80–0x9F decode to chars above 0xFF (27 of them), every other
// byte to its own char. Decoding with it and finding no char above 0xFF means the result is the latin1
// decoding (one-byte in V8), at native speed; node:buffer's latin1 would load Deno's Node layer.
const w1252Dec = new TextDecoder("latin1");
const ABOVE_LATIN1 = /[\u0100-\uffff]/;

/** Raw bytes → byte string, like bytesToBstr; fast for large buffers. */
export function latin1ToBstr(b: Uint8Array): string {
  const s = w1252Dec.decode(b);
  return ABOVE_LATIN1.test(s) ? bytesToBstr(b) : s;
}

/** Byte string → raw bytes. Throws on chars > 0xFF (a bug: not a byte string). */
export function bstrToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new FormatError(`not a byte string (char ${c} at ${i})`);
    out[i] = c;
  }
  return out;
}

/** A normal (Unicode) JS string, e.g. from a Deno API → byte string of its UTF-8 encoding. */
export function utf8ToBstr(s: string): string {
  return bytesToBstr(utf8Enc.encode(s));
}

/** Byte string → normal JS string, decoding UTF-8 (throws TypeError when not valid UTF-8). */
export function bstrToUtf8(s: string): string {
  return utf8Dec.decode(bstrToBytes(s));
}

/** Byte string → normal JS string for JSON or display: UTF-8 decoded, invalid bytes as U+FFFD. */
export function bstrToUtf8Lossy(s: string): string {
  return utf8LossyDec.decode(bstrToBytes(s));
}

/** Byte-order comparison of two byte strings (also correct for plain ASCII). */
export function compareBstr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Byte-order comparison of two byte arrays (shorter prefix first). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function toHex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX[b[i]];
  return s;
}

export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new FormatError(`invalid hex string: ${s}`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export const utf8 = {
  encode: (s: string): Uint8Array => utf8Enc.encode(s),
  decode: (b: Uint8Array): string => new TextDecoder().decode(b),
};
