// PAX extended header records ("<len> <key>=<value>\n") and the meaning of the keys we honour.
// Keys and values stay byte strings: paths are the raw UTF-8 bytes, xattr values are raw bytes.
import { FormatError } from "../../errors.ts";

/** Parses the payload of an `x`/`g` header into (key, value bytes) pairs, in order. */
export function parsePaxRecords(payload: Uint8Array): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  let pos = 0;
  while (pos < payload.length) {
    // Some writers NUL-pad the payload; nothing can follow the padding.
    if (payload[pos] === 0) {
      for (let i = pos; i < payload.length; i++) {
        if (payload[i] !== 0) throw new FormatError("PAX header: data after NUL padding");
      }
      break;
    }
    let i = pos;
    let len = 0;
    while (i < payload.length && payload[i] >= 0x30 && payload[i] <= 0x39 && i - pos < 10) {
      len = len * 10 + payload[i] - 0x30;
      i++;
    }
    if (i === pos || payload[i] !== 0x20) {
      throw new FormatError(`PAX header: malformed record length at ${pos}`);
    }
    const end = pos + len;
    if (end > payload.length || end <= i + 1 || payload[end - 1] !== 0x0a) {
      throw new FormatError(`PAX header: record at ${pos} has a bad length ${len}`);
    }
    const keyStart = i + 1;
    let eq = keyStart;
    while (eq < end - 1 && payload[eq] !== 0x3d) eq++;
    if (eq === end - 1 || eq === keyStart) {
      throw new FormatError(`PAX header: record at ${pos} has no key=value`);
    }
    let key = "";
    for (let k = keyStart; k < eq; k++) key += String.fromCharCode(payload[k]);
    out.push([key, payload.slice(eq + 1, end - 1)]);
    pos = end;
  }
  return out;
}

function bstr(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

/** Strict unsigned decimal (the form POSIX requires for size, uid, gid). */
export function paxDecimal(key: string, v: Uint8Array): number {
  const s = bstr(v);
  if (!/^[0-9]+$/.test(s)) throw new FormatError(`PAX header: invalid ${key} ${JSON.stringify(s)}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new FormatError(`PAX header: ${key} ${s} is out of range`);
  return n;
}

/**
 * A PAX time "[-]SECONDS[.FRACTION]" → whole seconds and nanoseconds (fraction truncated or
 * zero-padded to 9 digits). Negative times are floored so that time = sec + nsec / 1e9 with
 * 0 ≤ nsec < 1e9 ("-1.5" → sec -2, nsec 500000000).
 */
export function paxTime(key: string, v: Uint8Array): { sec: number; nsec: number; secExact?: bigint } {
  const s = bstr(v);
  const m = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(s);
  if (!m) throw new FormatError(`PAX header: invalid ${key} ${JSON.stringify(s)}`);
  if (m[2].length > 20) throw new FormatError(`PAX header: ${key} ${s} is out of range (64 bits)`);
  // Exact integer arithmetic: seconds may lie anywhere in the signed 64-bit range EROFS holds.
  let sec = BigInt(m[2]);
  let nsec = Number((m[3] ?? "").slice(0, 9).padEnd(9, "0"));
  if (m[1] === "-") {
    sec = -sec;
    if (nsec !== 0) {
      sec -= 1n;
      nsec = 1_000_000_000 - nsec;
    }
  }
  if (sec < -(1n << 63n) || sec > (1n << 63n) - 1n) {
    throw new FormatError(`PAX header: ${key} ${s} is out of range (64 bits)`);
  }
  const safe = sec >= BigInt(Number.MIN_SAFE_INTEGER) && sec <= BigInt(Number.MAX_SAFE_INTEGER);
  return safe ? { sec: Number(sec), nsec } : { sec: Number(sec), nsec, secExact: sec };
}

/** Decodes %XX escapes (libarchive URL-encodes xattr names in `LIBARCHIVE.xattr.<name>` keys). */
export function urlDecode(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_VALUE = new Int16Array(256).fill(-1);
for (let i = 0; i < B64.length; i++) B64_VALUE[B64.charCodeAt(i)] = i;

/** Standard base64, '=' padding optional (libarchive writes xattr values this way). */
export function base64Decode(v: Uint8Array, what: string): Uint8Array {
  let n = v.length;
  while (n > 0 && v[n - 1] === 0x3d) n--;
  if (n % 4 === 1) throw new FormatError(`invalid base64 in ${what}`);
  const out = new Uint8Array(Math.floor((n * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < n; i++) {
    const d = B64_VALUE[v[i]];
    if (d < 0) throw new FormatError(`invalid base64 in ${what}`);
    acc = ((acc << 6) | d) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, o);
}

/** The PAX overrides that apply to one entry (after merging global and local headers). */
export interface PaxOverrides {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: { sec: number; nsec: number; secExact?: bigint };
  xattrs: Map<string, Uint8Array>;
  /** True when any GNU.sparse.* key was seen (sparse files are refused). */
  sparse: boolean;
}

export function emptyOverrides(): PaxOverrides {
  return { xattrs: new Map(), sparse: false };
}

/**
 * Applies records to `o` in order (later wins). An empty value for a standard key removes the
 * override (POSIX: the header field applies again); an empty xattr value is a real empty xattr.
 */
export function applyPaxRecords(
  o: PaxOverrides,
  records: [string, Uint8Array][],
  opts: { libarchiveXattrs: boolean },
): void {
  for (const [key, v] of records) {
    if (key.startsWith("SCHILY.xattr.")) {
      const name = key.slice(13);
      if (name === "") throw new FormatError("PAX header: empty xattr name");
      o.xattrs.set(name, v);
      continue;
    }
    if (opts.libarchiveXattrs && key.startsWith("LIBARCHIVE.xattr.")) {
      const name = urlDecode(key.slice(17));
      if (name === "") throw new FormatError("PAX header: empty xattr name");
      o.xattrs.set(name, base64Decode(v, `PAX ${key}`));
      continue;
    }
    if (key.startsWith("GNU.sparse.")) {
      o.sparse = true;
      continue;
    }
    const empty = v.length === 0;
    switch (key) {
      case "path":
        if (empty) delete o.path;
        else o.path = bstr(v);
        break;
      case "linkpath":
        if (empty) delete o.linkpath;
        else o.linkpath = bstr(v);
        break;
      case "size":
        if (empty) delete o.size;
        else o.size = paxDecimal(key, v);
        break;
      case "uid":
        if (empty) delete o.uid;
        else o.uid = paxDecimal(key, v);
        break;
      case "gid":
        if (empty) delete o.gid;
        else o.gid = paxDecimal(key, v);
        break;
      case "mtime":
        if (empty) delete o.mtime;
        else o.mtime = paxTime(key, v);
        break;
      default:
        // uname, gname, atime, ctime, charset, comment, hdrcharset, vendor keys: not part of a
        // composefs tree.
        break;
    }
  }
}
