// Extended attributes for the EROFS writer (docs/erofs.md#xattrs): name-prefix encoding, the per-inode bloom
// filter, and the shared xattr table. Names are interned once (prefix split and filter hash per
// distinct name); values are interned through a numeric hash computed here (V8 spends about a
// microsecond hashing each fresh string used as a Map key: one per redirect path).
// Distinct (name, value) pairs are entries numbered from 0, kept column-wise in typed arrays: an
// image of 100k files has about as many distinct redirect values, and an object per entry showed
// in profiles (allocation and GC).
import {
  XATTR_BLOOM_SEED,
  XATTR_ENTRY_ALIGN,
  XATTR_ENTRY_HEADER_SIZE,
  XATTR_FILTER_BITS,
  XATTR_INDEX_LUSTRE,
  XATTR_PREFIXES,
} from "./format.ts";
import { xxh32Bstr } from "./xxh32.ts";
import type { ObjectId } from "../fsverity/object_id.ts";

/**
 * An xattr value: bytes, or a byte string (one char per byte) for values the writer makes, or an
 * object id standing for its object path `XX/rest` (spelt out only when emitted: a path string per
 * external file cost ~200 bytes of heap on images of 100k files). A given name always gets values
 * of one family (redirect targets are strings or ids, everything else bytes).
 */
export type XattrValue = Uint8Array | string | ObjectId;

const HEX_CODES = [..."0123456789abcdef"].map((c) => c.charCodeAt(0));

/** Char code j of an id's object path `XX/rest` (hex digits, "/" after the second). */
function pathCode(id: ObjectId, j: number): number {
  if (j === 2) return 0x2f;
  const k = j < 2 ? j : j - 1;
  const b = id.bytes[k >> 1];
  return HEX_CODES[k & 1 ? b & 15 : b >> 4];
}

function pathLength(id: ObjectId): number {
  return id.bytes.length * 2 + 1;
}

/** Char code j of a string-family value (a byte string or an id's object path). */
function strCode(v: string | ObjectId, j: number): number {
  return typeof v === "string" ? v.charCodeAt(j) : pathCode(v, j);
}

function strLength(v: string | ObjectId): number {
  return typeof v === "string" ? v.length : pathLength(v);
}

/** Equal string-family values: a path string and the id it names are the same value. */
function sameStr(a: string | ObjectId, b: string | ObjectId): boolean {
  if (typeof a === "string" && typeof b === "string") return a === b;
  const n = strLength(a);
  if (n !== strLength(b)) return false;
  for (let j = 0; j < n; j++) if (strCode(a, j) !== strCode(b, j)) return false;
  return true;
}

/** One distinct xattr name. */
export interface XattrName {
  /** Full name as stored (after overlay escaping), byte string. */
  name: string;
  /** Prefix index and the name suffix after it. */
  index: number;
  suffix: string;
  /** Bit set in the inode's (uninverted) name filter. */
  filterBit: number;
  /** String values are stored as `lead` + value (a redirect's "/" + path, without concatenating). */
  lead: string;
  /** Number of the name, mixed into the hash of its values. */
  ordinal: number;
}

// The hashes are kept to 30 bits: small integers stay unboxed in V8's unoptimized tiers (a short run
// never leaves them for most code), full 32-bit values would allocate a heap number per step.
const HASH_MASK = 0x3fff_ffff;

function hashValue(v: Uint8Array): number {
  let h = (0x811c9dc5 ^ v.length) & HASH_MASK;
  for (let i = 0; i < v.length; i++) h = Math.imul(h ^ v[i], 0x01000193) & HASH_MASK;
  return h;
}

/**
 * Hash of a string from its length and up to 32 sampled chars (its ends): cheap for the long,
 * distinct paths redirects carry (object paths differ in their first chars). Collisions are fine.
 */
function hashString(s: string | ObjectId): number {
  const n = strLength(s);
  let h = (0x811c9dc5 ^ n) & HASH_MASK;
  const head = Math.min(n, 16);
  if (typeof s === "string") { // (the common case: a dumpfile payload; no per-char type test)
    for (let i = 0; i < head; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) & HASH_MASK;
    for (let i = Math.max(head, n - 16); i < n; i++) {
      h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) & HASH_MASK;
    }
    return h;
  }
  for (let i = 0; i < head; i++) h = Math.imul(h ^ pathCode(s, i), 0x01000193) & HASH_MASK;
  for (let i = Math.max(head, n - 16); i < n; i++) h = Math.imul(h ^ pathCode(s, i), 0x01000193) & HASH_MASK;
  return h;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function align4(n: number): number {
  return (n + XATTR_ENTRY_ALIGN - 1) & ~(XATTR_ENTRY_ALIGN - 1);
}

function grow<T extends Uint32Array | Int32Array | Uint8Array>(a: T, n: number): T {
  if (n < a.length) return a;
  const b = new (a.constructor as { new (n: number): T })(a.length * 2);
  b.set(a);
  return b;
}

/** Value families (see XattrValue): how an entry's value is held. */
const BYTES = 0, STRING = 1, ID = 2;

/**
 * Interns xattrs for one image. `epoch1` selects the C prefix table (no `lustre.`). Distinct (name,
 * value) pairs are found through one open-addressing hash table of entry numbers (typed arrays: no
 * Map entry, no object per pair).
 */
export class XattrTable {
  #names = new Map<string, XattrName>();
  readonly #epoch1: boolean;
  /** Number of entries. */
  count = 0;
  // Entry columns (index = entry number).
  #name: XattrName[] = [];
  #value: XattrValue[] = [];
  #family = new Uint8Array(1024);
  #hash = new Int32Array(1024);
  #valueLen = new Uint32Array(1024);
  #size = new Uint32Array(1024);
  #uses = new Uint32Array(1024);
  #shared = new Int32Array(1024);
  /** Hash slots: entry + 1, 0 = free; at most half full. */
  #slots = new Int32Array(2048);
  /** Shared entries in on-disk order, and the table's byte size. */
  shared: number[] = [];
  sharedSize = 0;

  constructor(epoch1: boolean) {
    this.#epoch1 = epoch1;
  }

  /** The interned name record (created on first use); `lead` applies to string values. */
  name(name: string, lead = ""): XattrName {
    let xn = this.#names.get(name);
    if (xn === undefined) {
      const index = this.#prefixIndex(name);
      const suffix = name.slice(XATTR_PREFIXES[index].length);
      xn = {
        name,
        index,
        suffix,
        filterBit: xxh32Bstr(suffix, (XATTR_BLOOM_SEED + index) >>> 0) % XATTR_FILTER_BITS,
        lead,
        ordinal: this.#names.size,
      };
      this.#names.set(name, xn);
    } else if (lead !== "") {
      xn.lead = lead; // only string values use it
    }
    return xn;
  }

  /** Name record of entry `e`. */
  xname(e: number): XattrName {
    return this.#name[e];
  }
  /** Bytes of entry `e` on disk, padded to 4. */
  entrySize(e: number): number {
    return this.#size[e];
  }
  /** Byte offset of entry `e` inside the shared table, or -1 when it is not shared. */
  sharedOffset(e: number): number {
    return this.#shared[e];
  }
  /** Counts one more inode using entry `e`. */
  use(e: number): void {
    this.#uses[e]++;
  }

  /** Returns the interned entry for (name, value), counting one more user. */
  intern(xn: XattrName, value: Uint8Array): number {
    return this.#lookup(hashValue(value), xn, value, BYTES);
  }

  /**
   * Interns a value given as a byte string or as an id meaning its object path (stored after the
   * name's lead). A name must always be given values the same way (by bytes or by string/id):
   * redirect targets only.
   */
  internString(xn: XattrName, value: string | ObjectId): number {
    return this.#lookup(hashString(value), xn, value, typeof value === "string" ? STRING : ID);
  }

  #same(e: number, value: XattrValue, family: number): boolean {
    const v = this.#value[e];
    if (family === BYTES) return equalBytes(v as Uint8Array, value as Uint8Array);
    if (family === STRING && this.#family[e] === STRING) return v === value;
    return sameStr(v as string | ObjectId, value as string | ObjectId);
  }

  /** The entry of (xn, value) of hash `h`, else a new one; counts one more user. */
  #lookup(h: number, xn: XattrName, value: XattrValue, family: number): number {
    const key = (h ^ Math.imul(xn.ordinal + 1, 0x9e3779b1)) & HASH_MASK;
    const slots = this.#slots, mask = slots.length - 1;
    let i = key & mask;
    for (let s = slots[i]; s !== 0; s = slots[i]) {
      const e = s - 1;
      if (this.#hash[e] === key && this.#name[e] === xn && this.#same(e, value, family)) {
        this.#uses[e]++;
        return e;
      }
      i = (i + 1) & mask;
    }
    const e = this.#newEntry(xn, value, family, key);
    slots[i] = e + 1;
    if (this.count * 2 > slots.length) this.#rehash();
    this.#uses[e]++;
    return e;
  }

  #rehash(): void {
    const slots = new Int32Array(this.#slots.length * 2), mask = slots.length - 1;
    for (let e = 0; e < this.count; e++) {
      let i = this.#hash[e] & mask;
      while (slots[i] !== 0) i = (i + 1) & mask;
      slots[i] = e + 1;
    }
    this.#slots = slots;
  }

  #newEntry(xn: XattrName, value: XattrValue, family: number, key: number): number {
    const e = this.count++;
    if (e >= this.#size.length) {
      this.#family = grow(this.#family, e);
      this.#hash = grow(this.#hash, e);
      this.#valueLen = grow(this.#valueLen, e);
      this.#size = grow(this.#size, e);
      this.#uses = grow(this.#uses, e);
      this.#shared = grow(this.#shared, e);
    }
    this.#name.push(xn);
    this.#value.push(value);
    this.#family[e] = family;
    this.#hash[e] = key;
    const len = family === BYTES
      ? (value as Uint8Array).length
      : xn.lead.length + strLength(value as string | ObjectId);
    this.#valueLen[e] = len;
    this.#size[e] = align4(XATTR_ENTRY_HEADER_SIZE + xn.suffix.length + len);
    this.#shared[e] = -1;
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

  /** Byte i of an entry's value (lead included). */
  #valueByte(e: number, i: number): number {
    const v = this.#value[e];
    if (this.#family[e] === BYTES) return (v as Uint8Array)[i];
    const lead = this.#name[e].lead;
    return i < lead.length ? lead.charCodeAt(i) : strCode(v as string | ObjectId, i - lead.length);
  }

  /** Byte-order comparison of two values of one name (shorter prefix first). */
  #compareValues(a: number, b: number): number {
    if (this.#family[a] === STRING && this.#family[b] === STRING) {
      const va = this.#value[a] as string, vb = this.#value[b] as string; // (same lead)
      return va < vb ? -1 : va > vb ? 1 : 0;
    }
    const al = this.#valueLen[a], bl = this.#valueLen[b];
    const n = Math.min(al, bl);
    for (let i = 0; i < n; i++) {
      const d = this.#valueByte(a, i) - this.#valueByte(b, i);
      if (d !== 0) return d;
    }
    return al - bl;
  }

  /**
   * Puts every pair used by more than one inode into the shared table, in the epoch's order:
   * epoch 1 (C mkcomposefs) descending by (full name, value length, value bytes); V2 ascending by
   * (prefix index, suffix bytes, value bytes).
   */
  buildShared(): void {
    const shared: number[] = [];
    for (let e = 0; e < this.count; e++) if (this.#uses[e] > 1) shared.push(e);
    const names = this.#name, valueLen = this.#valueLen;
    shared.sort(
      this.#epoch1
        ? (a, b) => {
          const an = names[a].name, bn = names[b].name;
          if (an !== bn) return an < bn ? 1 : -1;
          const al = valueLen[a], bl = valueLen[b];
          if (al !== bl) return bl - al;
          return -this.#compareValues(a, b);
        }
        : (a, b) => {
          const ai = names[a].index, bi = names[b].index;
          if (ai !== bi) return ai - bi;
          const as = names[a].suffix, bs = names[b].suffix;
          if (as !== bs) return as < bs ? -1 : 1;
          return this.#compareValues(a, b);
        },
    );
    let off = 0;
    for (const e of shared) {
      this.#shared[e] = off;
      off += this.#size[e];
    }
    this.shared = shared;
    this.sharedSize = off;
  }

  /** The name filter bits (uninverted) of entries[from, to). */
  filterBits(entries: readonly number[], from: number, to: number): number {
    let bits = 0;
    for (let j = from; j < to; j++) bits |= 1 << this.#name[entries[j]].filterBit;
    return bits;
  }

  /** Writes entry `e` at `off` (erofs_xattr_entry, suffix, value); returns the offset after its
   *  padding (zeros already in `out`). */
  emit(out: Uint8Array, dv: DataView, off: number, e: number): number {
    const xn = this.#name[e];
    const suffix = xn.suffix;
    const v = this.#value[e];
    out[off] = suffix.length;
    out[off + 1] = xn.index;
    dv.setUint16(off + 2, this.#valueLen[e], true);
    let o = off + XATTR_ENTRY_HEADER_SIZE;
    for (let i = 0; i < suffix.length; i++) out[o++] = suffix.charCodeAt(i);
    const family = this.#family[e];
    if (family === BYTES) {
      out.set(v as Uint8Array, o);
    } else {
      const lead = xn.lead;
      for (let i = 0; i < lead.length; i++) out[o++] = lead.charCodeAt(i);
      if (family === STRING) {
        const str = v as string;
        for (let i = 0; i < str.length; i++) out[o++] = str.charCodeAt(i);
      } else {
        for (let i = 0, n = pathLength(v as ObjectId); i < n; i++) out[o++] = pathCode(v as ObjectId, i);
      }
    }
    return off + this.#size[e];
  }
}

/** C mkcomposefs stores at most this many shared references per inode; the rest stay local. */
export const MAX_SHARED_REFS_EPOCH1 = 128;
/** h_shared_count is a u8. */
export const MAX_SHARED_REFS = 255;
