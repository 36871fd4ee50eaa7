// Extended attributes for the EROFS writer (spec §5.6): name-prefix encoding, the per-inode bloom
// filter, and the shared xattr table. Every distinct (name, value) pair is interned once, so
// counting, hashing and sizing happen per distinct pair, not per inode.
import {
  XATTR_BLOOM_SEED,
  XATTR_ENTRY_ALIGN,
  XATTR_ENTRY_HEADER_SIZE,
  XATTR_FILTER_BITS,
  XATTR_IBODY_HEADER_SIZE,
  XATTR_INDEX_LUSTRE,
  XATTR_PREFIXES,
  XATTR_SHARED_REF_SIZE,
} from "./format.ts";
import { xxh32Bstr } from "./xxh32.ts";

/** One distinct (name, value) pair. */
export interface XattrEntry {
  /** Full name as stored in the tree after overlay escaping (byte string). */
  name: string;
  value: Uint8Array;
  /** Prefix index and the name suffix after it. */
  index: number;
  suffix: string;
  /** Bit set in the inode's (uninverted) name filter. */
  filterBit: number;
  /** Bytes of the on-disk entry, padded to 4. */
  entrySize: number;
  /** Number of inodes carrying this pair. */
  count: number;
  /** Byte offset inside the shared table, or -1 when not shared. */
  sharedOffset: number;
}

/** Interns (name, value) pairs for one image. `epoch1` selects the C prefix table (no `lustre.`). */
export class XattrTable {
  #byKey = new Map<string, XattrEntry>();
  readonly #epoch1: boolean;
  /** Shared entries in on-disk order, and the table's byte size. */
  shared: XattrEntry[] = [];
  sharedSize = 0;

  constructor(epoch1: boolean) {
    this.#epoch1 = epoch1;
  }

  /** Returns the interned entry for (name, value), counting one more user. */
  intern(name: string, value: Uint8Array): XattrEntry {
    const key = name + "\0" + valueKey(value);
    let e = this.#byKey.get(key);
    if (e === undefined) {
      const index = this.#prefixIndex(name);
      const suffix = name.slice(XATTR_PREFIXES[index].length);
      e = {
        name,
        value,
        index,
        suffix,
        filterBit: xxh32Bstr(suffix, (XATTR_BLOOM_SEED + index) >>> 0) % XATTR_FILTER_BITS,
        entrySize: align4(XATTR_ENTRY_HEADER_SIZE + suffix.length + value.length),
        count: 0,
        sharedOffset: -1,
      };
      this.#byKey.set(key, e);
    }
    e.count++;
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
    const shared: XattrEntry[] = [];
    for (const e of this.#byKey.values()) if (e.count > 1) shared.push(e);
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

function align4(n: number): number {
  return (n + XATTR_ENTRY_ALIGN - 1) & ~(XATTR_ENTRY_ALIGN - 1);
}

function valueKey(v: Uint8Array): string {
  if (v.length < 4096) return String.fromCharCode.apply(null, v as unknown as number[]);
  let s = "";
  for (let i = 0; i < v.length; i += 4096) {
    s += String.fromCharCode.apply(null, v.subarray(i, i + 4096) as unknown as number[]);
  }
  return s;
}

function compareBytesLex(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function compareEpoch1Desc(a: XattrEntry, b: XattrEntry): number {
  if (a.name !== b.name) return a.name < b.name ? 1 : -1;
  if (a.value.length !== b.value.length) return b.value.length - a.value.length;
  return -compareBytesLex(a.value, b.value);
}

function compareV2(a: XattrEntry, b: XattrEntry): number {
  if (a.index !== b.index) return a.index - b.index;
  if (a.suffix !== b.suffix) return a.suffix < b.suffix ? -1 : 1;
  return compareBytesLex(a.value, b.value);
}

/** C mkcomposefs stores at most this many shared references per inode; the rest stay local. */
export const MAX_SHARED_REFS_EPOCH1 = 128;
/** h_shared_count is a u8. */
export const MAX_SHARED_REFS = 255;

/** Size in bytes of an inode's xattr ibody (0 without xattrs). */
export function ibodySize(xattrs: readonly XattrEntry[], maxShared: number): number {
  if (xattrs.length === 0) return 0;
  let size = XATTR_IBODY_HEADER_SIZE;
  let nShared = 0;
  for (const e of xattrs) {
    if (e.sharedOffset >= 0 && nShared < maxShared) {
      nShared++;
      size += XATTR_SHARED_REF_SIZE;
    } else {
      size += e.entrySize;
    }
  }
  return size;
}

/** The stored name filter: bit set per xattr, inverted. */
export function nameFilter(xattrs: readonly XattrEntry[]): number {
  let bits = 0;
  for (const e of xattrs) bits |= 1 << e.filterBit;
  return ~bits >>> 0;
}
