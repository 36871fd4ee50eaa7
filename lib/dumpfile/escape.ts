// Dumpfile field escaping (docs/dumpfile.md). Fields are byte strings (one char per byte, see
// lib/util/bytes.ts). Writer: every byte outside 0x21..0x7E becomes \xHH (lowercase), except \\ \n \r \t; `=`
// is escaped in xattr keys and values only (it separates them). Reader: \\ \n \r \t \xHH (either case),
// nothing else.
import { FormatError } from "../errors.ts";

const HEX = "0123456789abcdef";

// Escape text for every byte value, built once: index = byte, value = its escaped form.
const PLAIN_TABLE: string[] = [];
const XATTR_TABLE: string[] = [];
for (let b = 0; b < 256; b++) {
  let e: string;
  if (b === 0x5c) e = "\\\\";
  else if (b === 0x0a) e = "\\n";
  else if (b === 0x0d) e = "\\r";
  else if (b === 0x09) e = "\\t";
  else if (b < 0x21 || b > 0x7e) e = "\\x" + HEX[b >> 4] + HEX[b & 15];
  else e = String.fromCharCode(b);
  PLAIN_TABLE.push(e);
  XATTR_TABLE.push(b === 0x3d ? "\\x3d" : e);
}

// Fast check: a field made only of printable ASCII other than `\` needs no escaping.
const NEEDS_ESCAPE = /[^\x21-\x5b\x5d-\x7e]/;
const NEEDS_ESCAPE_XATTR = /[^\x21-\x3c\x3e-\x5b\x5d-\x7e]/;

function escapeWith(s: string, table: string[]): string {
  let out = "";
  for (let i = 0; i < s.length; i++) out += table[s.charCodeAt(i)];
  return out;
}

/** Escapes a PATH / PAYLOAD / CONTENT field: empty → `-`, a lone `-` → `\x2d`. */
export function escapeField(s: string): string {
  if (s.length === 0) return "-";
  if (s === "-") return "\\x2d";
  return NEEDS_ESCAPE.test(s) ? escapeWith(s, PLAIN_TABLE) : s;
}

/** Escapes an xattr key or value (also escapes `=`; no `-` sentinel). */
export function escapeXattrPart(s: string): string {
  return NEEDS_ESCAPE_XATTR.test(s) ? escapeWith(s, XATTR_TABLE) : s;
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** Reverses the escaping of one field (byte string in, byte string out). Throws FormatError. */
export function unescapeField(s: string, what: string): string {
  let i = s.indexOf("\\");
  if (i < 0) return s;
  let out = s.slice(0, i);
  const n = s.length;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c !== 0x5c) {
      const next = s.indexOf("\\", i);
      const end = next < 0 ? n : next;
      out += s.slice(i, end);
      i = end;
      continue;
    }
    if (i + 1 >= n) throw new FormatError(`${what}: no character after escape '\\'`);
    const e = s.charCodeAt(i + 1);
    switch (e) {
      case 0x5c:
        out += "\\";
        i += 2;
        break;
      case 0x6e:
        out += "\n";
        i += 2;
        break;
      case 0x72:
        out += "\r";
        i += 2;
        break;
      case 0x74:
        out += "\t";
        i += 2;
        break;
      case 0x78: {
        if (i + 3 >= n) throw new FormatError(`${what}: incomplete hex escape '\\x'`);
        const hi = hexVal(s.charCodeAt(i + 2));
        const lo = hexVal(s.charCodeAt(i + 3));
        if (hi < 0 || lo < 0) {
          throw new FormatError(`${what}: invalid hex escape ${JSON.stringify(s.slice(i, i + 4))}`);
        }
        out += String.fromCharCode(hi * 16 + lo);
        i += 4;
        break;
      }
      default:
        throw new FormatError(`${what}: unsupported escape '\\${String.fromCharCode(e)}'`);
    }
  }
  return out;
}

/** Optional field: `-` → null, otherwise the unescaped value (an empty field gives ""). */
export function unescapeOptional(s: string, what: string): string | null {
  if (s === "-") return null;
  return unescapeField(s, what);
}
