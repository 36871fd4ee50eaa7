// Extended attributes for the EROFS writer (spec §5.6): name-prefix encoding, the per-inode bloom
// filter, and the shared xattr table. Names are interned once (prefix split and filter hash per
// distinct name); byte values are interned through a numeric value hash (no string key per xattr),
// string values (redirect paths) by the string itself.
import {
  XATTR_BLOOM_SEED,
  XATTR_ENTRY_ALIGN,
  XATTR_ENTRY_HEADER_SIZE,
  XATTR_FILTER_BITS,
  XATTR_INDEX_LUSTRE,
  XATTR_PREFIXES,
} from "./format.ts";
import { xxh32Bstr } from "./xxh32.ts";

/**
 * An xattr value: bytes, or a byte string (one char per byte) for values the writer makes. A given
 * name always gets values of one kind (redirect targets are strings, everything else bytes).
 */
export type XattrValue = Uint8Array | string;

/** One distinct xattr name. */
export interface XattrName {
  /** Full name as stored (after overlay escaping), byte string. */
  name: string;
  /** Prefix index and the name suffix after it. */
  index: number;
  suffix: string;
  /** Bit set in the inode's (uninverted) name filter. */
  filterBit: number;
  /** byte values: value hash → entry, or entries when hashes collide */
  byValue: Map<number, XattrEntry | XattrEntry[]>;
  /** string values (they come with one fixed lead per name) → entry */
  byString: Map<string, XattrEntry>;
}

/** One distinct (name, value) pair. */
export interface XattrEntry {
  xname: XattrName;
  /** The value is `lead` followed by `value` (lead lets a redirect "/" + path skip a concatenation). */
  lead: string;
  value: XattrValue;
  /** Bytes of the on-disk entry, padded to 4. */
  entrySize: number;
  /** Number of inodes carrying this pair. */
  count: number;
  /** Byte offset inside the shared table, or -1 when not shared. */
  sharedOffset: number;
}

function hashValue(v: Uint8Array): number {
  let h = 0x811c9dc5 ^ v.length;
  for (let i = 0; i < v.length; i++) h = Math.imul(h ^ v[i], 0x01000193);
  return h;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function valueLength(e: XattrEntry): number {
  return e.lead.length + e.value.length;
}

/** Byte i of an entry's value (lead included). */
function valueByte(e: XattrEntry, i: number): number {
  if (i < e.lead.length) return e.lead.charCodeAt(i);
  const v = e.value, j = i - e.lead.length;
  return typeof v === "string" ? v.charCodeAt(j) : v[j];
}

/** Byte-order comparison of two values (shorter prefix first). */
function compareValues(a: XattrEntry, b: XattrEntry): number {
  const al = valueLength(a), bl = valueLength(b);
  const n = Math.min(al, bl);
  for (let i = 0; i < n; i++) {
    const d = valueByte(a, i) - valueByte(b, i);
    if (d !== 0) return d;
  }
  return al - bl;
}

function align4(n: number): number {
  return (n + XATTR_ENTRY_ALIGN - 1) & ~(XATTR_ENTRY_ALIGN - 1);
}

/** Interns xattrs for one image. `epoch1` selects the C prefix table (no `lustre.`). */
export class XattrTable {
  #names = new Map<string, XattrName>();
  #all: XattrEntry[] = [];
  readonly #epoch1: boolean;
  /** Shared entries in on-disk order, and the table's byte size. */
  shared: XattrEntry[] = [];
  sharedSize = 0;

  constructor(epoch1: boolean) {
    this.#epoch1 = epoch1;
  }

  /** The interned name record (created on first use). */
  name(name: string): XattrName {
    let xn = this.#names.get(name);
    if (xn === undefined) {
      const index = this.#prefixIndex(name);
      const suffix = name.slice(XATTR_PREFIXES[index].length);
      xn = {
        name,
        index,
        suffix,
        filterBit: xxh32Bstr(suffix, (XATTR_BLOOM_SEED + index) >>> 0) % XATTR_FILTER_BITS,
        byValue: new Map(),
        byString: new Map(),
      };
      this.#names.set(name, xn);
    }
    return xn;
  }

  /** Returns the interned entry for (name, value), counting one more user. */
  intern(xn: XattrName, value: Uint8Array): XattrEntry {
    const h = hashValue(value);
    const found = xn.byValue.get(h);
    let e: XattrEntry | undefined;
    if (found === undefined) {
      e = this.#newEntry(xn, value);
      xn.byValue.set(h, e);
    } else if (!Array.isArray(found)) {
      if (equalBytes(found.value as Uint8Array, value)) {
        e = found;
      } else {
        e = this.#newEntry(xn, value);
        xn.byValue.set(h, [found, e]);
      }
    } else {
      e = found.find((x) => equalBytes(x.value as Uint8Array, value));
      if (e === undefined) {
        e = this.#newEntry(xn, value);
        found.push(e);
      }
    }
    e.count++;
    return e;
  }

  /**
   * Interns a value given as a byte string preceded by `lead`. A name must always be given values
   * the same way (by bytes or by lead + string) and with the same lead: redirect targets only.
   */
  internString(xn: XattrName, lead: string, value: string): XattrEntry {
    // Keyed by the string itself: V8 hashes it natively once and caches the hash in the string.
    let e = xn.byString.get(value);
    if (e === undefined) {
      e = this.#newEntry(xn, value, lead);
      xn.byString.set(value, e);
    }
    e.count++;
    return e;
  }

  #newEntry(xn: XattrName, value: XattrValue, lead = ""): XattrEntry {
    const e: XattrEntry = {
      xname: xn,
      lead,
      value,
      entrySize: align4(XATTR_ENTRY_HEADER_SIZE + xn.suffix.length + lead.length + value.length),
      count: 0,
      sharedOffset: -1,
    };
    this.#all.push(e);
    return e;
  }

  /** Highest prefix index whose prefix starts the name (epoch 1 never uses `lustre.`). */
  #prefixIndex(name: string): number {
    for (let i = XATTR_PREFIXES.length - 1; i > 0; i--) {
      if (i === XATTR_INDEX_LUSTRE && this.#epoch1) continue;
      if (name.startsWith(XATTR_PREFIXES[i])) return i;
    }
    return 0;
  }

  /**
   * Puts every pair used by more than one inode into the shared table, in the epoch's order:
   * epoch 1 (C mkcomposefs) descending by (full name, value length, value bytes); V2 ascending by
   * (prefix index, suffix bytes, value bytes).
   */
  buildShared(): void {
    const shared = this.#all.filter((e) => e.count > 1);
    shared.sort(this.#epoch1 ? compareEpoch1Desc : compareV2);
    let off = 0;
    for (const e of shared) {
      e.sharedOffset = off;
      off += e.entrySize;
    }
    this.shared = shared;
    this.sharedSize = off;
  }
}

function compareEpoch1Desc(a: XattrEntry, b: XattrEntry): number {
  const an = a.xname.name, bn = b.xname.name;
  if (an !== bn) return an < bn ? 1 : -1;
  const al = valueLength(a), bl = valueLength(b);
  if (al !== bl) return bl - al;
  return -compareValues(a, b);
}

function compareV2(a: XattrEntry, b: XattrEntry): number {
  const ai = a.xname.index, bi = b.xname.index;
  if (ai !== bi) return ai - bi;
  const as = a.xname.suffix, bs = b.xname.suffix;
  if (as !== bs) return as < bs ? -1 : 1;
  return compareValues(a, b);
}

/** C mkcomposefs stores at most this many shared references per inode; the rest stay local. */
export const MAX_SHARED_REFS_EPOCH1 = 128;
/** h_shared_count is a u8. */
export const MAX_SHARED_REFS = 255;

/** Writes one xattr entry at `off`; returns the offset after its padding. */
export function emitXattr(out: Uint8Array, off: number, e: XattrEntry): number {
  const suffix = e.xname.suffix;
  const v = e.value, lead = e.lead;
  const len = lead.length + v.length;
  out[off] = suffix.length;
  out[off + 1] = e.xname.index;
  out[off + 2] = len & 0xff;
  out[off + 3] = len >>> 8;
  let o = off + XATTR_ENTRY_HEADER_SIZE;
  for (let i = 0; i < suffix.length; i++) out[o++] = suffix.charCodeAt(i);
  for (let i = 0; i < lead.length; i++) out[o++] = lead.charCodeAt(i);
  if (typeof v === "string") {
    for (let i = 0; i < v.length; i++) out[o++] = v.charCodeAt(i);
  } else {
    out.set(v, o);
  }
  return off + e.entrySize;
}
