// composefs EROFS image writer, formats V0, V1 (byte-identical to C mkcomposefs 1.0.8) and V2
// (byte-identical to composefs-rs 0.7.0; docs/erofs.md). Two passes over the inode table: a layout pass
// fixes every size, padding, nid and block address; the emit pass fills one preallocated buffer.
// Per-inode results live in typed arrays (see write_collect.ts) to keep big trees cheap.
import { FormatError, InternalError } from "../errors.ts";
import { KERNEL_ALG_ID, type ObjectId } from "../fsverity/object_id.ts";
import type { Directory } from "../tree/tree.ts";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG } from "../tree/tree.ts";
import { FlatTree, REG_EXTERNAL, REG_INLINE, REG_NOVERITY } from "../tree/flat.ts";
import { collectEpoch1Tree, collectV2Tree } from "./write_collect_tree.ts";
import {
  BLOCK_SIZE,
  BLOCK_SIZE_BITS,
  CHUNK_BLOCKMAP_ENTRY_SIZE,
  CHUNK_FORMAT_BLKBITS_MASK,
  COMPOSEFS_FEATURE_COMPAT,
  COMPOSEFS_FLAGS_HAS_ACL,
  COMPOSEFS_HEADER_VERSION,
  COMPOSEFS_MAGIC,
  DATALAYOUT_CHUNK_BASED,
  DATALAYOUT_FLAT_INLINE,
  DATALAYOUT_FLAT_PLAIN,
  DIRENT_SIZE,
  direntFileType,
  EROFS_MAGIC,
  ErofsDirent,
  ErofsInodeCompact,
  ErofsInodeExtended,
  ErofsSuperBlock,
  ErofsXattrIbodyHeader,
  type FormatVersion,
  INODE_COMPACT_SIZE,
  INODE_EXTENDED_SIZE,
  INODE_SLOT_SIZE,
  INODE_TABLE_START,
  inodeFormat,
  LcfsErofsHeader,
  MAX_CHUNK_BITS,
  MAX_INLINE_CONTENT_C,
  MAX_INLINE_TAIL,
  METACOPY_HEADER_SIZE,
  METACOPY_VERSION,
  OVERLAY_ESCAPED_PREFIX,
  OVERLAY_XATTR_PREFIX,
  OvlMetacopy,
  SUPERBLOCK_OFFSET,
  XATTR_IBODY_HEADER_SIZE,
  XATTR_METACOPY,
  XATTR_POSIX_ACL_ACCESS,
  XATTR_POSIX_ACL_DEFAULT,
  XATTR_REDIRECT,
  XATTR_SHARED_REF_SIZE,
  xattrIcount as xattrIcountOf,
} from "./format.ts";
import { collectEpoch1, collectV2, externalSize, type InodeTable } from "./write_collect.ts";
import type { StructValue } from "../util/struct_codec.ts";
import { MAX_SHARED_REFS, MAX_SHARED_REFS_EPOCH1, type XattrName, XattrTable } from "./write_xattrs.ts";

export interface WriteOptions {
  version: FormatVersion;
  /**
   * V0 only, as C mkcomposefs `--max-version`: the highest composefs_version the image is promoted
   * to when it holds a user whiteout (default 1; 0 keeps version 0 and omits the opaque markers).
   */
  maxVersion?: 0 | 1;
}

/** Largest number of chunk-index entries C mkcomposefs writes for one external file. */
const MAX_CHUNKS = 1024;
/** Longest symlink target (PATH_MAX − 1). */
const MAX_SYMLINK = 4095;
/** Longest xattr name after escaping (XATTR_NAME_MAX plus the escape prefix growth), longest value. */
const MAX_XATTR_NAME = 255 + (OVERLAY_ESCAPED_PREFIX.length - OVERLAY_XATTR_PREFIX.length);
const MAX_XATTR_VALUE = 0xffff;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
const EMPTY = new Uint8Array(0);
/** Bytes per slab of metacopy values. */
const METACOPY_SLAB = 64 * 1024;

// Records reused for every inode, ibody header and dirent written: a fresh object per call made 12 MB
// of garbage on cs9-developer's 64k inodes (the struct writers are not inlined in a short run).
const COMPACT = {
  format: 0,
  xattrIcount: 0,
  mode: 0,
  nlink: 0,
  size: 0,
  iU: 0,
  ino: 0,
  uid: 0,
  gid: 0,
} satisfies Partial<StructValue<typeof ErofsInodeCompact.fields>>;
const EXTENDED: Partial<StructValue<typeof ErofsInodeExtended.fields>> & { mtime: number | bigint } = {
  format: 0,
  xattrIcount: 0,
  mode: 0,
  size: 0,
  iU: 0,
  ino: 0,
  uid: 0,
  gid: 0,
  mtime: 0,
  mtimeNsec: 0,
  nlink: 0,
};
const IBODY_RECORD = { nameFilter: 0, sharedCount: 0 } satisfies Partial<
  StructValue<typeof ErofsXattrIbodyHeader.fields>
>;
const DIRENT_RECORD = { nid: 0, nameoff: 0, fileType: 0 } satisfies Partial<
  StructValue<typeof ErofsDirent.fields>
>;

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** chunkbits for an external file of `size` bytes: as few chunks as possible, at least one block. */
function chunkBits(size: number): number {
  if (size <= BLOCK_SIZE) return BLOCK_SIZE_BITS;
  // The smallest bits with 2^bits ≥ size, from the leading zeros when it fits 32 bits.
  let bits = size <= 0x8000_0000 ? 32 - Math.clz32(size - 1) : 31;
  while (bits < MAX_CHUNK_BITS && 2 ** bits < size) bits++;
  return bits;
}

function writeBstr(out: Uint8Array, off: number, s: string): number {
  for (let i = 0; i < s.length; i++) out[off + i] = s.charCodeAt(i);
  return off + s.length;
}

function escapeName(name: string): string {
  return name.startsWith(OVERLAY_XATTR_PREFIX)
    ? OVERLAY_ESCAPED_PREFIX + name.slice(OVERLAY_XATTR_PREFIX.length)
    : name;
}

function hasExtra(extra: [string, Uint8Array][] | undefined, name: string): boolean {
  if (extra === undefined) return false;
  for (const kv of extra) if (kv[0] === name) return true;
  return false;
}

function checkXattr(name: string, value: Uint8Array): void {
  if (name.length > MAX_XATTR_NAME || value.length > MAX_XATTR_VALUE) {
    throw new FormatError(
      `xattr ${
        JSON.stringify(name.slice(0, 64))
      } too large (name ${name.length}, value ${value.length} bytes)`,
    );
  }
}

/** Writes `root` (an object tree, or its columns: lib/tree/flat.ts) as a composefs EROFS image. The
 *  tree is not modified. */
export function writeErofs(root: Directory | FlatTree, opts: WriteOptions): Uint8Array {
  return builderFor(root, opts).build();
}

/**
 * writeErofs handing the image to `sink` in consecutive pieces of about `window` bytes instead of
 * one buffer (the image of a 100,000-file tree is 33 MiB, held beside the tree while it is written).
 * A piece is valid only during the call: its buffer is reused.
 */
export function writeErofsTo(
  root: Directory | FlatTree,
  opts: WriteOptions,
  sink: (piece: Uint8Array) => void,
  window = 1 << 20,
): void {
  builderFor(root, opts).build({ sink, size: window });
}

function builderFor(root: Directory | FlatTree, opts: WriteOptions): ImageBuilder {
  const version = opts.version;
  if (version !== 0 && version !== 1 && version !== 2) {
    throw new FormatError(`unsupported composefs image format version ${version}`);
  }
  // composefs_version: V0 is promoted to 1 by a user whiteout unless maxVersion forbids it.
  const maxVersion = opts.maxVersion ?? 1;
  const epoch1 = version !== 2;
  const cfsVersion = (hasWhiteout: boolean) => version === 0 && maxVersion >= 1 && hasWhiteout ? 1 : version;
  const c = root instanceof FlatTree
    ? (epoch1 ? collectEpoch1(root, cfsVersion) : collectV2(root))
    : (epoch1 ? collectEpoch1Tree(root, cfsVersion) : collectV2Tree(root));
  return new ImageBuilder(c.table, epoch1, c.composefsVersion);
}

/**
 * The part of the image being emitted: bytes [base, base + buf.length). The emit pass writes in
 * ascending offsets, so everything before the next write's offset is final and can be handed on.
 */
class EmitWindow {
  base = 0;
  buf: Uint8Array;
  dv: DataView;
  #sink: ((piece: Uint8Array) => void) | undefined;

  constructor(size: number, sink?: (piece: Uint8Array) => void) {
    this.buf = new Uint8Array(size);
    this.dv = new DataView(this.buf.buffer);
    this.#sink = sink;
  }

  /** Makes [off, off + len) writable in buf (at off - base); hands on what lies before off. */
  at(off: number, len: number): void {
    if (off + len <= this.base + this.buf.length) return;
    const sink = this.#sink!;
    const held = Math.min(off - this.base, this.buf.length);
    sink(this.buf.subarray(0, held));
    // Padding longer than the window (before the data blocks): zeros never written to it.
    this.buf.fill(0);
    for (let gap = off - this.base - held; gap > 0; gap -= Math.min(gap, this.buf.length)) {
      sink(this.buf.subarray(0, Math.min(gap, this.buf.length)));
    }
    this.base = off;
    if (len > this.buf.length) {
      this.buf = new Uint8Array(len);
      this.dv = new DataView(this.buf.buffer);
    }
  }

  finish(total: number): void {
    if (this.#sink) this.#sink(this.buf.subarray(0, total - this.base));
  }
}

/** Layout and emission of one image from its inode table. */
class ImageBuilder {
  readonly t: InodeTable;
  readonly n: number;
  readonly epoch1: boolean;
  readonly cfsVersion: number;
  readonly xt: XattrTable;
  /** Each inode's xattrs, in on-disk order: xattrs[xStart[i] .. xStart[i + 1]). */
  readonly xattrs: number[] = [];
  readonly xStart: Uint32Array;
  readonly maxShared: number;
  hasAcl = false;
  overlayNames: XattrName[] | undefined;
  emptyMetacopy = -1;
  slab = EMPTY;
  slabView = new DataView(EMPTY.buffer);
  slabUsed = 0;
  minSec = 0;
  /** The smallest mtime's exact seconds when they are outside the safe-integer range. */
  minSecExact: bigint | undefined;
  minNsec = 0;

  // layout results per inode
  readonly xattrSize: Uint32Array;
  readonly nShared: Uint16Array;
  readonly compact: Uint8Array;
  readonly layout: Uint8Array;
  readonly size: Float64Array; // i_size (up to 2^53)
  readonly nBlocks: Uint32Array; // full data blocks
  readonly tail: Uint32Array; // bytes stored inline after the xattrs
  readonly tailFrom: Uint32Array; // directories: first dirent of the inline tail
  readonly chunkFormat: Uint8Array;
  readonly pad: Uint32Array; // zero bytes before the inode
  readonly nid: Uint32Array;
  readonly blkaddr: Uint32Array;

  constructor(t: InodeTable, epoch1: boolean, cfsVersion: number) {
    this.t = t;
    this.n = t.count;
    this.epoch1 = epoch1;
    this.cfsVersion = cfsVersion;
    this.xt = new XattrTable(epoch1);
    const n = this.n;
    this.xStart = new Uint32Array(n + 1);
    this.maxShared = epoch1 ? MAX_SHARED_REFS_EPOCH1 : MAX_SHARED_REFS + 1;
    this.xattrSize = new Uint32Array(n);
    this.nShared = new Uint16Array(n);
    this.compact = new Uint8Array(n);
    this.layout = new Uint8Array(n);
    this.size = new Float64Array(n);
    this.nBlocks = new Uint32Array(n);
    this.tail = new Uint32Array(n);
    this.tailFrom = new Uint32Array(n);
    this.chunkFormat = new Uint8Array(n);
    this.pad = new Uint32Array(n);
    this.nid = new Uint32Array(n);
    this.blkaddr = new Uint32Array(n);
  }

  /** The image: one buffer, or with `to` handed to to.sink in pieces (then the return value is junk).
   *  Each pass is a method of its own: a short run gets its loops optimized one by one instead of
   *  the whole function being compiled again for each loop (on-stack replacement). */
  build(to?: { sink: (piece: Uint8Array) => void; size: number }): Uint8Array {
    this.collectAllXattrs();
    this.xt.buildShared();
    this.findMinMtime();
    const { inodesEnd, nDataBlocks } = this.layoutInodes();
    const dataStart = roundUp(inodesEnd + this.xt.sharedSize, BLOCK_SIZE);
    const total = dataStart + nDataBlocks * BLOCK_SIZE;
    if (this.nid[0] > U16_MAX) throw new FormatError("root inode does not fit a 16-bit nid");
    if (total / BLOCK_SIZE > U32_MAX) throw new FormatError("image too large");
    this.placeBlocks(dataStart);

    // ---- emit pass (offsets below are the image's; each write goes through the window)
    const w = new EmitWindow(to ? Math.min(to.size, total) : total, to?.sink);
    this.emitHeaders(w.dv, inodesEnd, total);
    this.emitInodes(w, inodesEnd);
    let off = inodesEnd;
    w.at(off, this.xt.sharedSize);
    off -= w.base;
    for (const e of this.xt.shared) off = this.xt.emit(w.buf, w.dv, off, e);
    off = this.emitData(w, dataStart);
    if (off !== total) throw new InternalError(`erofs writer: layout mismatch (${off} != ${total})`);
    w.finish(total);
    return w.buf;
  }

  collectAllXattrs(): void {
    const n = this.n;
    for (let i = 0; i < n; i++) {
      this.xStart[i] = this.xattrs.length;
      this.collectXattrs(i);
    }
    this.xStart[n] = this.xattrs.length;
  }

  /** Layout pass: sizes, padding and nid of every inode; returns where the inode table ends. */
  layoutInodes(): { inodesEnd: number; nDataBlocks: number } {
    let pos = INODE_TABLE_START;
    let nDataBlocks = 0;
    for (let i = 0; i < this.n; i++) {
      this.layoutInode(i);
      const start = roundUp(pos, INODE_SLOT_SIZE);
      const headerSize = (this.compact[i] ? INODE_COMPACT_SIZE : INODE_EXTENDED_SIZE) + this.xattrSize[i];
      const at = this.epoch1 ? this.padEpoch1(i, start, headerSize) : this.padV2(i, start, headerSize);
      this.pad[i] = at - pos;
      this.nid[i] = at / INODE_SLOT_SIZE;
      pos = at + headerSize + this.tail[i];
      nDataBlocks += this.nBlocks[i];
    }
    return { inodesEnd: roundUp(pos, INODE_SLOT_SIZE), nDataBlocks };
  }

  /** Block addresses of the inodes' data blocks, in inode order from `dataStart`. */
  placeBlocks(dataStart: number): void {
    let blk = dataStart / BLOCK_SIZE;
    for (let i = 0; i < this.n; i++) {
      if (this.nBlocks[i] > 0) {
        this.blkaddr[i] = blk;
        blk += this.nBlocks[i];
      }
    }
  }

  emitInodes(w: EmitWindow, inodesEnd: number): void {
    // Shared xattr references count 4-byte words from xattr_blkaddr (0 for V2).
    const sharedBase = this.epoch1 ? inodesEnd % BLOCK_SIZE : inodesEnd;
    let off = INODE_TABLE_START;
    for (let i = 0; i < this.n; i++) {
      const at = off + this.pad[i];
      w.at(
        at,
        (this.compact[i] ? INODE_COMPACT_SIZE : INODE_EXTENDED_SIZE) + this.xattrSize[i] + this.tail[i],
      );
      off = this.emitInode(w.buf, w.dv, at - w.base, i, sharedBase) + w.base;
    }
  }

  /** The data blocks from `dataStart`; returns the offset after them. */
  emitData(w: EmitWindow, dataStart: number): number {
    let off = dataStart;
    for (let i = 0; i < this.n; i++) {
      if (this.nBlocks[i] === 0) continue;
      w.at(off, this.nBlocks[i] * BLOCK_SIZE);
      off = this.emitBlocks(w.buf, w.dv, off - w.base, i) + w.base;
    }
    return off;
  }

  /**
   * Appends inode i's xattrs in on-disk order: own xattrs with trusted.overlay.* escaped plus the
   * synthetic ones. Epoch 1 sorts them by full name (C); V2 lists synthetic ones first, then own
   * ones sorted by their original name (composefs-rs).
   */
  collectXattrs(i: number): void {
    const xt = this.xt, list = this.xattrs;
    const own = this.t.xattrs[i];
    const extra = this.t.extra.size === 0 ? undefined : this.t.extra.get(i);
    const ext = externalSize(this.t, i);
    if (own.size === 0 && extra === undefined) {
      // The common case: nothing but an external file's metacopy and redirect, in both epochs' order
      // (synthetic first; by name: metacopy < redirect), never an ACL.
      if (ext > 0 || (ext === 0 && !this.epoch1)) this.internOverlayData(i);
      return;
    }
    const start = list.length;
    if (this.epoch1) {
      // Escaped own names never equal the metacopy/redirect names: no clash to resolve there.
      if (ext > 0) this.internOverlayData(i);
      if (own.size > 0) { // (most inodes have none: no iterator then)
        for (const [k, v] of own) {
          const name = escapeName(k);
          if (hasExtra(extra, name)) continue;
          checkXattr(name, v);
          list.push(xt.intern(xt.name(name), v));
        }
      }
      if (extra !== undefined) { for (const [k, v] of extra) list.push(xt.intern(xt.name(k), v)); }
      for (let j = start + 1; j < list.length; j++) {
        if (xt.xname(list[j - 1]).name > xt.xname(list[j]).name) {
          const sorted = list.slice(start).sort((a, b) => (xt.xname(a).name < xt.xname(b).name ? -1 : 1));
          for (let k = 0; k < sorted.length; k++) list[start + k] = sorted[k];
          break;
        }
      }
    } else {
      if (ext >= 0) this.internOverlayData(i);
      if (extra !== undefined) { for (const [k, v] of extra) list.push(xt.intern(xt.name(k), v)); }
      if (own.size > 0) {
        const keys = [...own.keys()].sort();
        for (const k of keys) {
          const name = escapeName(k);
          const v = own.get(k)!;
          checkXattr(name, v);
          list.push(xt.intern(xt.name(name), v));
        }
      }
    }
    if (this.epoch1 && !this.hasAcl) {
      for (let j = start; j < list.length; j++) {
        const name = xt.xname(list[j]).name;
        if (name === XATTR_POSIX_ACL_ACCESS || name === XATTR_POSIX_ACL_DEFAULT) this.hasAcl = true;
      }
    }
  }

  /**
   * Synthetic overlay xattrs of an external file: metacopy (4-byte header + digest, or empty
   * without a digest), then redirect to the backing path ("/" + object path or the dumpfile
   * payload).
   */
  internOverlayData(i: number): void {
    const xt = this.xt;
    let metacopy: Uint8Array = EMPTY;
    let path: string | ObjectId | undefined;
    const kind = this.t.kind[i];
    if (kind === REG_EXTERNAL) {
      const id = this.t.id[i]!;
      const d = id.bytes;
      metacopy = this.metacopyBytes(METACOPY_HEADER_SIZE + d.length);
      OvlMetacopy.write(this.slabView, this.slabUsed - metacopy.length, {
        version: METACOPY_VERSION,
        len: metacopy.length,
        digestAlgo: KERNEL_ALG_ID[id.alg],
      });
      metacopy.set(d, METACOPY_HEADER_SIZE);
      // A dumpfile's payload is kept verbatim (C); trees without one name the object.
      path = this.t.text[i] ?? id;
    } else if (kind === REG_NOVERITY) {
      path = this.t.text[i];
    }
    const names = this.overlayNames ??= [xt.name(XATTR_METACOPY), xt.name(XATTR_REDIRECT, "/")];
    if (metacopy === EMPTY) {
      // Every digest-less external file carries the same empty metacopy: intern it once.
      let e = this.emptyMetacopy;
      if (e < 0) e = this.emptyMetacopy = xt.intern(names[0], EMPTY);
      else xt.use(e);
      this.xattrs.push(e);
    } else {
      this.xattrs.push(xt.intern(names[0], metacopy));
    }
    if (path) this.xattrs.push(xt.internString(names[1], path));
  }

  /** A zeroed value of `n` bytes carved from a shared slab: one ArrayBuffer per external file
   *  costs ~150 bytes beyond its data on images of 100k files (docs/performance.md#memory). */
  metacopyBytes(n: number): Uint8Array {
    if (this.slabUsed + n > this.slab.length) {
      this.slab = new Uint8Array(METACOPY_SLAB);
      this.slabView = new DataView(this.slab.buffer);
      this.slabUsed = 0;
    }
    const v = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    this.slabUsed += n;
    return v;
  }

  /** Smallest mtime, compared as signed numbers (C mkcomposefs); compact inodes inherit it. Seconds
   *  outside ±2^53 (mtimeSecExact) are compared exactly. */
  findMinMtime(): void {
    const { mtimeSec, mtimeNsec, mtimeExact } = this.t;
    let min = 0;
    if (mtimeExact.size === 0) {
      for (let i = 1; i < this.n; i++) {
        if (mtimeSec[i] < mtimeSec[min] || (mtimeSec[i] === mtimeSec[min] && mtimeNsec[i] < mtimeNsec[min])) {
          min = i;
        }
      }
    } else {
      const exact = (i: number) => mtimeExact.get(i) ?? BigInt(mtimeSec[i]);
      for (let i = 1; i < this.n; i++) {
        const a = exact(i), b = exact(min);
        if (a < b || (a === b && mtimeNsec[i] < mtimeNsec[min])) min = i;
      }
    }
    this.minSec = mtimeSec[min];
    this.minSecExact = mtimeExact.get(min);
    this.minNsec = mtimeNsec[min];
  }

  /** Sizes and data layout of inode i (before padding). */
  layoutInode(i: number): void {
    const xsize = this.layoutXattrs(i);
    const t = this.t;
    const type = t.type[i];
    const ext = externalSize(t, i);
    let size = 0, nBlocks = 0, tail = 0, chunked = false;
    if (type === S_IFDIR) {
      [nBlocks, tail] = this.layoutDirectory(i);
      size = nBlocks * BLOCK_SIZE + tail;
    } else if (type === S_IFLNK) {
      const target = t.text[i]!;
      if (target.length === 0 || target.length > MAX_SYMLINK) {
        throw new FormatError(`symlink target length ${target.length} out of range 1..${MAX_SYMLINK}`);
      }
      tail = size = target.length;
    } else if (type === S_IFREG && t.kind[i] === REG_INLINE && t.size[i] > 0) {
      size = t.size[i];
      [nBlocks, tail] = this.layoutInline(size, xsize);
    } else if (ext >= 0 && (ext > 0 || !this.epoch1)) {
      size = ext;
      tail = this.layoutChunks(i, size);
      chunked = true;
    } else if (type === S_IFCHR || type === S_IFBLK) {
      const rdev = t.rdev[i];
      if (!(Number.isInteger(rdev) && rdev >= 0 && rdev <= U32_MAX)) {
        throw new FormatError(`device number ${rdev} does not fit the 32-bit EROFS encoding`);
      }
    }
    this.size[i] = size;
    this.nBlocks[i] = nBlocks;
    this.tail[i] = tail;
    this.layout[i] = chunked
      ? DATALAYOUT_CHUNK_BASED
      : tail > 0
      ? DATALAYOUT_FLAT_INLINE
      : DATALAYOUT_FLAT_PLAIN;
    if (this.epoch1) {
      this.compact[i] = t.mtimeSec[i] === this.minSec && t.mtimeNsec[i] === this.minNsec &&
          (t.mtimeExact.size === 0 || t.mtimeExact.get(i) === this.minSecExact) &&
          t.nlink[i] <= U16_MAX && t.uid[i] <= U16_MAX && t.gid[i] <= U16_MAX && size <= U32_MAX
        ? 1
        : 0;
    }
  }

  /** Size of inode i's xattr ibody: header, shared references (at most maxShared), local entries. */
  layoutXattrs(i: number): number {
    const maxShared = this.maxShared;
    let xsize = 0, nShared = 0;
    const xs = this.xStart[i], xe = this.xStart[i + 1];
    if (xe > xs) {
      const xt = this.xt;
      xsize = XATTR_IBODY_HEADER_SIZE;
      for (let j = xs; j < xe; j++) {
        const e = this.xattrs[j];
        if (xt.sharedOffset(e) >= 0 && nShared < maxShared) {
          nShared++;
          xsize += XATTR_SHARED_REF_SIZE;
        } else {
          xsize += xt.entrySize(e);
        }
      }
    }
    if (nShared > MAX_SHARED_REFS) {
      throw new FormatError(`an inode has more than ${MAX_SHARED_REFS} shared xattrs`);
    }
    this.xattrSize[i] = xsize;
    this.nShared[i] = nShared;
    return xsize;
  }

  /** Directory i's entries packed into 4 KiB blocks; a tail over 2 KiB becomes a block too.
   *  Returns [full blocks, inline tail bytes]. */
  layoutDirectory(i: number): [number, number] {
    const names = this.t.direntName, base = this.t.dirStart[i], count = this.t.dirCount[i];
    let used = 0, nBlocks = 0;
    for (let j = 0; j < count; j++) {
      const len = DIRENT_SIZE + names[base + j].length;
      if (used + len > BLOCK_SIZE) {
        nBlocks++;
        used = 0;
        this.tailFrom[i] = j;
      }
      used += len;
    }
    if (used > MAX_INLINE_TAIL) {
      nBlocks++;
      used = 0;
    }
    return [nBlocks, used];
  }

  /** Inline file content of `len` bytes after an ibody of `xsize`: [full blocks, inline tail bytes]. */
  layoutInline(len: number, xsize: number): [number, number] {
    if (len > MAX_INLINE_CONTENT_C) {
      throw new FormatError(`inline file content of ${len} bytes (at most ${MAX_INLINE_CONTENT_C})`);
    }
    if (!this.epoch1 && INODE_EXTENDED_SIZE + xsize + len <= BLOCK_SIZE) {
      return [0, len]; // composefs-rs keeps the whole content inline
    }
    // C: full blocks in the data area, the rest inline unless over half a block.
    const tail = len % BLOCK_SIZE;
    const nBlocks = Math.floor(len / BLOCK_SIZE);
    return tail > MAX_INLINE_TAIL ? [nBlocks + 1, 0] : [nBlocks, tail];
  }

  /**
   * External file i of `size` bytes: chunk-based with null chunks (overlayfs reads the data via the
   * redirect); composefs-rs (V2) always uses 2^43-byte chunks. Returns the chunk map's size.
   */
  layoutChunks(i: number, size: number): number {
    const bits = this.epoch1 ? chunkBits(size) : MAX_CHUNK_BITS;
    const count = Math.max(1, Math.ceil(size / 2 ** bits));
    if (count > MAX_CHUNKS) {
      throw new FormatError(`external file of ${size} bytes is too large (more than ${MAX_CHUNKS} chunks)`);
    }
    this.chunkFormat[i] = (bits - BLOCK_SIZE_BITS) & CHUNK_FORMAT_BLKBITS_MASK;
    return count * CHUNK_BLOCKMAP_ENTRY_SIZE;
  }

  /** Moves inode i's inline tail to one more data block. */
  tailToBlock(i: number): void {
    this.nBlocks[i]++;
    this.tail[i] = 0;
    if (this.layout[i] === DATALAYOUT_FLAT_INLINE) this.layout[i] = DATALAYOUT_FLAT_PLAIN;
    if (this.t.type[i] === S_IFDIR) this.size[i] = this.nBlocks[i] * BLOCK_SIZE;
  }

  /**
   * Epoch 1 padding before an inode (C mkcomposefs): inline data must not cross a block boundary.
   * May move the tail to a data block. Returns the inode's start offset.
   */
  padEpoch1(i: number, pos: number, headerSize: number): number {
    const tail = this.tail[i];
    if (this.t.type[i] === S_IFLNK) {
      // A fast symlink's inode and target share one block (kernels < 6.12 insist); a target that
      // cannot fit one block with its inode goes to a data block.
      const total = headerSize + tail;
      const crosses = Math.floor(pos / BLOCK_SIZE) !== Math.floor((pos + total - 1) / BLOCK_SIZE);
      if (total >= BLOCK_SIZE) this.tailToBlock(i);
      return crosses ? roundUp(pos, BLOCK_SIZE) : pos;
    }
    const remainder = BLOCK_SIZE - ((pos + headerSize) % BLOCK_SIZE);
    if (remainder < tail) {
      const extra = roundUp(remainder, INODE_SLOT_SIZE);
      if (tail <= BLOCK_SIZE - ((pos + headerSize + extra) % BLOCK_SIZE)) return pos + extra;
      // Even after padding the tail does not fit: it becomes a data block.
      this.tailToBlock(i);
      return roundUp(pos, BLOCK_SIZE);
    }
    return pos;
  }

  /** V2 padding (composefs-rs legacy rule): inline data starts past the metadata's last block. */
  padV2(i: number, pos: number, headerSize: number): number {
    if (this.t.type[i] === S_IFLNK && headerSize + this.tail[i] > BLOCK_SIZE) {
      this.tailToBlock(i); // longer than composefs-rs allows: the target goes to a data block
    }
    if (this.layout[i] !== DATALAYOUT_FLAT_INLINE) return pos;
    const endOfMeta = pos + headerSize - 1;
    const inlineEnd = pos + headerSize + this.tail[i];
    if (Math.floor(endOfMeta / BLOCK_SIZE) !== Math.floor(inlineEnd / BLOCK_SIZE)) {
      return roundUp(pos + BLOCK_SIZE - (endOfMeta % BLOCK_SIZE), INODE_SLOT_SIZE);
    }
    return pos;
  }

  emitHeaders(dv: DataView, inodesEnd: number, total: number): void {
    LcfsErofsHeader.write(dv, 0, {
      magic: COMPOSEFS_MAGIC,
      version: COMPOSEFS_HEADER_VERSION,
      flags: this.epoch1 && this.hasAcl ? COMPOSEFS_FLAGS_HAS_ACL : 0,
      composefsVersion: this.cfsVersion,
    });
    ErofsSuperBlock.write(dv, SUPERBLOCK_OFFSET, {
      magic: EROFS_MAGIC,
      featureCompat: COMPOSEFS_FEATURE_COMPAT,
      blkszbits: BLOCK_SIZE_BITS,
      rootNid: this.nid[0],
      inos: this.n,
      blocks: total / BLOCK_SIZE,
    });
    if (this.epoch1) {
      ErofsSuperBlock.write(dv, SUPERBLOCK_OFFSET, {
        buildTime: this.minSecExact ?? this.minSec,
        buildTimeNsec: this.minNsec,
        xattrBlkaddr: Math.floor(inodesEnd / BLOCK_SIZE),
      });
    }
  }

  emitInode(out: Uint8Array, dv: DataView, off: number, i: number, sharedBase: number): number {
    const t = this.t;
    const type = t.type[i];
    const layout = this.layout[i];
    const size = this.size[i];
    let iU = 0;
    if (type === S_IFCHR || type === S_IFBLK) iU = t.rdev[i];
    else if (this.nBlocks[i] > 0) iU = this.blkaddr[i];
    // i_u is a union: the chunk format overwrites its low 16 bits only (as C does).
    if (layout === DATALAYOUT_CHUNK_BASED) iU = ((iU & 0xffff0000) | this.chunkFormat[i]) >>> 0;
    const compact = this.compact[i] === 1;
    const format = inodeFormat(!compact, layout);
    const xattrIcount = xattrIcountOf(this.xattrSize[i]);
    if (xattrIcount > U16_MAX) throw new FormatError("too many xattrs on one inode");
    const mode = type | t.mode[i];
    const nlink = t.nlink[i];
    if (compact) {
      const r = COMPACT;
      r.format = format;
      r.xattrIcount = xattrIcount;
      r.mode = mode;
      r.nlink = nlink;
      r.size = size;
      r.iU = iU;
      r.ino = i;
      r.uid = t.uid[i];
      r.gid = t.gid[i];
      ErofsInodeCompact.write(dv, off, r);
      off += INODE_COMPACT_SIZE;
    } else {
      const r = EXTENDED;
      r.format = format;
      r.xattrIcount = xattrIcount;
      r.mode = mode;
      r.size = size;
      r.iU = iU;
      // Epoch 1: i_ino = table index (C); V2: the nid (composefs-rs).
      r.ino = this.epoch1 ? i : this.nid[i];
      r.uid = t.uid[i];
      r.gid = t.gid[i];
      r.mtime = t.mtimeExact.size === 0 ? t.mtimeSec[i] : t.mtimeExact.get(i) ?? t.mtimeSec[i];
      r.mtimeNsec = this.epoch1 ? t.mtimeNsec[i] : 0;
      r.nlink = nlink;
      ErofsInodeExtended.write(dv, off, r);
      off += INODE_EXTENDED_SIZE;
    }

    if (this.xattrSize[i] > 0) off = this.emitIbody(out, dv, off, i, sharedBase);

    const tail = this.tail[i];
    if (tail > 0) {
      if (type === S_IFDIR) {
        this.writeDirents(out, dv, off, i, this.tailFrom[i], t.dirCount[i]);
      } else if (type === S_IFLNK) {
        writeBstr(out, off, t.text[i]!);
      } else if (layout === DATALAYOUT_CHUNK_BASED) {
        for (let k = off; k < off + tail; k++) out[k] = 0xff; // null chunk entries (a few bytes: no call)
      } else if (t.inline[i] !== undefined) {
        const data = t.inline[i]!;
        out.set(data.subarray(data.length - tail), off);
      }
      off += tail;
    }
    return off;
  }

  /** The xattr ibody: name filter, shared references (list order), then local entries. */
  emitIbody(out: Uint8Array, dv: DataView, off: number, i: number, sharedBase: number): number {
    const start = off;
    const xs = this.xStart[i], xe = this.xStart[i + 1];
    const maxShared = this.maxShared;
    const xt = this.xt;
    const bits = xt.filterBits(this.xattrs, xs, xe);
    const r = IBODY_RECORD;
    r.nameFilter = ~bits >>> 0;
    r.sharedCount = this.nShared[i];
    ErofsXattrIbodyHeader.write(dv, off, r);
    off += XATTR_IBODY_HEADER_SIZE;
    let n = 0;
    for (let j = xs; j < xe; j++) {
      const e = this.xattrs[j];
      if (xt.sharedOffset(e) >= 0 && n < maxShared) {
        dv.setUint32(off, (sharedBase + xt.sharedOffset(e)) / 4, true);
        off += 4;
        n++;
      }
    }
    n = 0;
    for (let j = xs; j < xe; j++) {
      const e = this.xattrs[j];
      if (xt.sharedOffset(e) >= 0 && n < maxShared) n++;
      else off = xt.emit(out, dv, off, e);
    }
    if (off - start !== this.xattrSize[i]) throw new InternalError("erofs writer: xattr size mismatch");
    return off;
  }

  /** Writes entries [from, to) of directory i as one dirent block (headers, then names). */
  writeDirents(out: Uint8Array, dv: DataView, off: number, i: number, from: number, to: number): void {
    const names = this.t.direntName, targets = this.t.direntTarget, base = this.t.dirStart[i];
    const type = this.t.type, nid = this.nid, d = DIRENT_RECORD;
    let nameOff = (to - from) * DIRENT_SIZE;
    let h = off;
    from += base;
    to += base;
    for (let j = from; j < to; j++) {
      const target = targets[j];
      d.nid = nid[target];
      d.nameoff = nameOff;
      d.fileType = direntFileType(type[target]);
      ErofsDirent.write(dv, h, d);
      h += DIRENT_SIZE;
      nameOff += names[j].length;
    }
    for (let j = from; j < to; j++) h = writeBstr(out, h, names[j]);
  }

  /** Writes inode i's full data blocks at `off` (block-aligned); returns the offset after them. */
  emitBlocks(out: Uint8Array, dv: DataView, off: number, i: number): number {
    const t = this.t;
    const type = t.type[i];
    const nBlocks = this.nBlocks[i];
    if (type === S_IFDIR) {
      const names = t.direntName, base = t.dirStart[i], count = t.dirCount[i];
      let used = 0, first = 0, written = 0;
      for (let j = 0; j < count; j++) {
        const len = DIRENT_SIZE + names[base + j].length;
        if (used + len > BLOCK_SIZE) {
          this.writeDirents(out, dv, off + written * BLOCK_SIZE, i, first, j);
          written++;
          used = 0;
          first = j;
        }
        used += len;
      }
      if (written < nBlocks) this.writeDirents(out, dv, off + written * BLOCK_SIZE, i, first, count);
    } else if (type === S_IFLNK) {
      writeBstr(out, off, t.text[i]!);
    } else if (this.layout[i] === DATALAYOUT_CHUNK_BASED) {
      out.fill(0xff, off, off + BLOCK_SIZE); // C writes a whole block of null chunk entries
    } else if (t.inline[i] !== undefined) {
      out.set(t.inline[i]!.subarray(0, nBlocks * BLOCK_SIZE), off);
    }
    return off + nBlocks * BLOCK_SIZE;
  }
}
