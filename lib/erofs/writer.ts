// composefs EROFS image writer, formats V0, V1 (byte-identical to C mkcomposefs 1.0.8) and V2
// (byte-identical to composefs-rs 0.7.0). Spec §5. Two passes over the inode table: a layout pass
// fixes every size, padding, nid and block address; the emit pass fills one preallocated buffer.
import { FormatError } from "../errors.ts";
import type { Directory } from "../tree/tree.ts";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG } from "../tree/tree.ts";
import {
  BLOCK_SIZE,
  BLOCK_SIZE_BITS,
  CFS_HDR,
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
  EROFS_MAGIC,
  type FormatVersion,
  INODE_COMPACT,
  INODE_COMPACT_SIZE,
  INODE_EXTENDED,
  INODE_EXTENDED_SIZE,
  INODE_SLOT_SIZE,
  INODE_TABLE_START,
  inodeFormat,
  MAX_CHUNK_BITS,
  MAX_INLINE_CONTENT_C,
  MAX_INLINE_TAIL,
  SB,
  SUPERBLOCK_OFFSET,
  XATTR_ENTRY_HEADER_SIZE,
  XATTR_IBODY_HEADER_SIZE,
  XATTR_POSIX_ACL_ACCESS,
  XATTR_POSIX_ACL_DEFAULT,
  xattrIcount,
} from "./format.ts";
import {
  collectEpoch1,
  collectV2,
  direntFileType,
  externalSize,
  type WDirent,
  type WInode,
} from "./write_collect.ts";
import {
  ibodySize,
  MAX_SHARED_REFS,
  MAX_SHARED_REFS_EPOCH1,
  nameFilter,
  type XattrEntry,
  XattrTable,
} from "./write_xattrs.ts";

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
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

/** Per-inode layout results. */
interface Placed {
  ino: WInode;
  /** Position in the inode table (epoch 1 i_ino). */
  index: number;
  /** Directories: index of the first dirent of the inline tail. */
  tailFrom: number;
  xattrs: XattrEntry[];
  xattrSize: number;
  nShared: number;
  compact: boolean;
  layout: number;
  /** i_size */
  size: number;
  /** Full data blocks in the data area, and bytes stored inline after the xattrs. */
  nBlocks: number;
  tail: number;
  /** Chunk-based files: chunkbits − 12 and number of chunk entries. */
  chunkFormat: number;
  chunkCount: number;
  /** Zero bytes before the inode, its nid, and its first data block (if nBlocks > 0). */
  pad: number;
  nid: number;
  blkaddr: number;
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** chunkbits for an external file of `size` bytes: as few chunks as possible, at least one block. */
function chunkBits(size: number): number {
  let bits = size > 1 ? Math.ceil(Math.log2(size)) : 0;
  // Math.log2 may round near powers of two: settle on the exact smallest bits with 2^bits ≥ size.
  while (bits > 0 && 2 ** (bits - 1) >= size) bits--;
  while (2 ** bits < size) bits++;
  return Math.min(Math.max(bits, BLOCK_SIZE_BITS), MAX_CHUNK_BITS);
}

/** Writes `root` as a composefs EROFS image. The tree is not modified. */
export function writeErofs(root: Directory, opts: WriteOptions): Uint8Array {
  const version = opts.version;
  if (version !== 0 && version !== 1 && version !== 2) {
    throw new FormatError(`unsupported composefs image format version ${version}`);
  }
  const epoch1 = version !== 2;

  // composefs_version: V0 is promoted to 1 by a user whiteout unless maxVersion forbids it.
  let cfsVersion: number = version;
  let collected;
  if (epoch1) {
    if (version === 0 && (opts.maxVersion ?? 1) >= 1 && treeHasWhiteout(root)) cfsVersion = 1;
    collected = collectEpoch1(root, cfsVersion);
  } else {
    collected = collectV2(root);
  }
  const inodes = collected.inodes;

  // Xattrs: intern every pair; epoch 1 lists each inode's xattrs by full name (C sorts them).
  const table = new XattrTable(epoch1);
  const lists: XattrEntry[][] = new Array(inodes.length);
  let hasAcl = false;
  for (let i = 0; i < inodes.length; i++) {
    const m = inodes[i].xattrs;
    let names = [...m.keys()];
    if (epoch1) names = names.sort();
    const list: XattrEntry[] = new Array(names.length);
    for (let j = 0; j < names.length; j++) {
      const name = names[j];
      const value = m.get(name)!;
      if (name.length > 255 + 24 || value.length > U16_MAX) {
        throw new FormatError(
          `xattr ${JSON.stringify(name)} too large (name ${name.length}, value ${value.length})`,
        );
      }
      if (name === XATTR_POSIX_ACL_ACCESS || name === XATTR_POSIX_ACL_DEFAULT) hasAcl = true;
      list[j] = table.intern(name, value);
    }
    lists[i] = list;
  }
  table.buildShared();

  // Smallest mtime, compared as signed numbers (C mkcomposefs).
  let minSec = inodes[0].stat.mtimeSec;
  let minNsec = inodes[0].stat.mtimeNsec;
  if (epoch1) {
    for (const ino of inodes) {
      const s = ino.stat.mtimeSec, n = ino.stat.mtimeNsec;
      if (s < minSec || (s === minSec && n < minNsec)) {
        minSec = s;
        minNsec = n;
      }
    }
  }

  // ---- layout pass
  const placed: Placed[] = new Array(inodes.length);
  const maxShared = epoch1 ? MAX_SHARED_REFS_EPOCH1 : Infinity;
  let pos = INODE_TABLE_START;
  let nDataBlocks = 0;
  for (let i = 0; i < inodes.length; i++) {
    const p = layoutInode(inodes[i], lists[i], maxShared, epoch1, minSec, minNsec);
    p.index = i;
    if (p.nShared > MAX_SHARED_REFS) {
      throw new FormatError(`inode has ${p.nShared} shared xattrs (at most ${MAX_SHARED_REFS})`);
    }
    const start = roundUp(pos, INODE_SLOT_SIZE);
    const headerSize = (p.compact ? INODE_COMPACT_SIZE : INODE_EXTENDED_SIZE) + p.xattrSize;
    const padded = epoch1 ? padEpoch1(p, start, headerSize) : padV2(p, start, headerSize);
    p.pad = padded - pos;
    p.nid = padded / INODE_SLOT_SIZE;
    inodes[i].nid = p.nid;
    pos = padded + headerSize + p.tail;
    nDataBlocks += p.nBlocks;
    placed[i] = p;
  }
  const inodesEnd = roundUp(pos, INODE_SLOT_SIZE);
  const dataStart = roundUp(inodesEnd + table.sharedSize, BLOCK_SIZE);
  const total = dataStart + nDataBlocks * BLOCK_SIZE;
  if (placed[0].nid > U16_MAX) throw new FormatError("root inode does not fit a 16-bit nid");
  if (total / BLOCK_SIZE > U32_MAX) throw new FormatError("image too large");
  let blk = dataStart / BLOCK_SIZE;
  for (const p of placed) {
    if (p.nBlocks > 0) {
      p.blkaddr = blk;
      blk += p.nBlocks;
    }
  }

  // ---- emit pass
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(CFS_HDR.magic, COMPOSEFS_MAGIC, true);
  dv.setUint32(CFS_HDR.version, COMPOSEFS_HEADER_VERSION, true);
  dv.setUint32(CFS_HDR.flags, epoch1 && hasAcl ? COMPOSEFS_FLAGS_HAS_ACL : 0, true);
  dv.setUint32(CFS_HDR.composefsVersion, cfsVersion, true);

  const sb = SUPERBLOCK_OFFSET;
  dv.setUint32(sb + SB.magic, EROFS_MAGIC, true);
  dv.setUint32(sb + SB.featureCompat, COMPOSEFS_FEATURE_COMPAT, true);
  out[sb + SB.blkszbits] = BLOCK_SIZE_BITS;
  dv.setUint16(sb + SB.rootNid, placed[0].nid, true);
  dv.setBigUint64(sb + SB.inos, BigInt(inodes.length), true);
  if (epoch1) {
    dv.setBigInt64(sb + SB.buildTime, BigInt(minSec), true);
    dv.setUint32(sb + SB.buildTimeNsec, minNsec, true);
    dv.setUint32(sb + SB.xattrBlkaddr, Math.floor(inodesEnd / BLOCK_SIZE), true);
  }
  dv.setUint32(sb + SB.blocks, total / BLOCK_SIZE, true);

  // Shared xattr references count in 4-byte words from xattr_blkaddr (0 for V2).
  const sharedBase = epoch1 ? inodesEnd % BLOCK_SIZE : inodesEnd;
  let off = INODE_TABLE_START;
  for (let i = 0; i < placed.length; i++) {
    off = emitInode(out, dv, off + placed[i].pad, placed[i], epoch1, sharedBase, maxShared);
  }
  off = inodesEnd;
  for (const e of table.shared) off = emitXattr(out, dv, off, e);
  off = dataStart;
  for (const p of placed) {
    if (p.nBlocks > 0) off = emitBlocks(out, dv, off, p);
  }
  if (off !== total) throw new Error(`erofs writer: layout mismatch (${off} != ${total})`);
  return out;
}

function treeHasWhiteout(dir: Directory): boolean {
  for (const node of dir.entries.values()) {
    if (node.kind === "dir") {
      if (treeHasWhiteout(node)) return true;
    } else if (node.content.type === "chardev" && node.content.rdev === 0) {
      return true;
    }
  }
  return false;
}

/** Sizes and data layout of one inode (before padding). */
function layoutInode(
  ino: WInode,
  xattrs: XattrEntry[],
  maxShared: number,
  epoch1: boolean,
  minSec: number,
  minNsec: number,
): Placed {
  let nShared = 0;
  for (const e of xattrs) if (e.sharedOffset >= 0 && nShared < maxShared) nShared++;
  const xattrSize = ibodySize(xattrs, maxShared);
  const p: Placed = {
    ino,
    index: 0,
    tailFrom: 0,
    xattrs,
    xattrSize,
    nShared,
    compact: false,
    layout: DATALAYOUT_FLAT_PLAIN,
    size: 0,
    nBlocks: 0,
    tail: 0,
    chunkFormat: 0,
    chunkCount: 0,
    pad: 0,
    nid: 0,
    blkaddr: 0,
  };
  const c = ino.content;
  if (ino.type === S_IFDIR) {
    let blocks = 0;
    let used = 0;
    const ents = ino.dirents!;
    for (let i = 0; i < ents.length; i++) {
      const len = DIRENT_SIZE + ents[i].name.length;
      if (used + len > BLOCK_SIZE) {
        blocks++;
        used = 0;
        p.tailFrom = i;
      }
      used += len;
    }
    if (used > MAX_INLINE_TAIL) {
      blocks++;
      used = 0;
    }
    p.nBlocks = blocks;
    p.tail = used;
    p.size = blocks * BLOCK_SIZE + used;
  } else if (ino.type === S_IFLNK) {
    const target = (c as { target: string }).target;
    if (target.length === 0 || target.length > MAX_SYMLINK) {
      throw new FormatError(`symlink target length ${target.length} out of range 1..${MAX_SYMLINK}`);
    }
    p.tail = target.length;
    p.size = target.length;
  } else if (ino.type === S_IFREG && c !== null && c.type === "inline" && c.data.length > 0) {
    const len = c.data.length;
    if (len > MAX_INLINE_CONTENT_C) {
      throw new FormatError(`inline file content of ${len} bytes (at most ${MAX_INLINE_CONTENT_C})`);
    }
    p.size = len;
    const headerSize = INODE_EXTENDED_SIZE + xattrSize;
    if (!epoch1 && headerSize + len <= BLOCK_SIZE) {
      p.tail = len; // composefs-rs: whole content inline
    } else {
      p.nBlocks = Math.floor(len / BLOCK_SIZE);
      p.tail = len % BLOCK_SIZE;
      if (p.tail > MAX_INLINE_TAIL) {
        p.nBlocks++;
        p.tail = 0;
      }
    }
  } else if (ino.type === S_IFREG && c !== null && externalSize(c) > 0) {
    const size = externalSize(c);
    const bits = epoch1 ? chunkBits(size) : MAX_CHUNK_BITS;
    const count = Math.ceil(size / 2 ** bits);
    if (count > MAX_CHUNKS) {
      throw new FormatError(`external file of ${size} bytes is too large (more than ${MAX_CHUNKS} chunks)`);
    }
    p.size = size;
    p.chunkFormat = (bits - BLOCK_SIZE_BITS) & CHUNK_FORMAT_BLKBITS_MASK;
    p.chunkCount = count;
    p.tail = count * CHUNK_BLOCKMAP_ENTRY_SIZE;
    p.layout = DATALAYOUT_CHUNK_BASED;
  } else if (ino.type === S_IFREG && c !== null && !epoch1 && externalSize(c) === 0) {
    // composefs-rs writes an empty external file as chunk-based with one null chunk.
    p.chunkFormat = CHUNK_FORMAT_BLKBITS_MASK;
    p.chunkCount = 1;
    p.tail = CHUNK_BLOCKMAP_ENTRY_SIZE;
    p.layout = DATALAYOUT_CHUNK_BASED;
  } else if (ino.type === S_IFCHR || ino.type === S_IFBLK) {
    const rdev = (c as { rdev: number }).rdev;
    if (!(rdev >= 0 && rdev <= U32_MAX && Number.isInteger(rdev))) {
      throw new FormatError(`device number ${rdev} does not fit the 32-bit EROFS encoding`);
    }
  }
  if (p.layout !== DATALAYOUT_CHUNK_BASED) {
    p.layout = p.tail > 0 ? DATALAYOUT_FLAT_INLINE : DATALAYOUT_FLAT_PLAIN;
  }
  if (epoch1) {
    const s = ino.stat;
    p.compact = s.mtimeSec === minSec && s.mtimeNsec === minNsec && ino.nlink <= U16_MAX &&
      s.uid <= U16_MAX && s.gid <= U16_MAX && p.size <= U32_MAX;
  }
  return p;
}

/**
 * Epoch 1 padding before an inode (C `compute_erofs_inode_padding_for_tail`); may move the tail to
 * a data block. Returns the inode's start offset.
 */
function padEpoch1(p: Placed, pos: number, headerSize: number): number {
  if (p.ino.type === S_IFLNK) {
    // The inode and a fast symlink's target must share one block; a target that cannot goes to
    // a data block, and the inode then starts a fresh block.
    const total = headerSize + p.tail;
    const crosses = Math.floor(pos / BLOCK_SIZE) !== Math.floor((pos + total - 1) / BLOCK_SIZE);
    if (total >= BLOCK_SIZE) {
      p.nBlocks++;
      p.tail = 0;
      p.layout = DATALAYOUT_FLAT_PLAIN;
    }
    return crosses ? roundUp(pos, BLOCK_SIZE) : pos;
  }
  const remainder = BLOCK_SIZE - ((pos + headerSize) % BLOCK_SIZE);
  if (remainder < p.tail) {
    const extra = roundUp(remainder, INODE_SLOT_SIZE);
    if (p.tail <= BLOCK_SIZE - ((pos + headerSize + extra) % BLOCK_SIZE)) return pos + extra;
    // The tail does not fit even after padding: it becomes a data block.
    p.nBlocks++;
    p.tail = 0;
    if (p.layout !== DATALAYOUT_CHUNK_BASED) p.layout = DATALAYOUT_FLAT_PLAIN;
    if (p.ino.type === S_IFDIR) p.size = p.nBlocks * BLOCK_SIZE;
    return roundUp(pos, BLOCK_SIZE);
  }
  return pos;
}

/** V2 padding (composefs-rs legacy rule): keeps inline data out of the metadata's last block. */
function padV2(p: Placed, pos: number, headerSize: number): number {
  if (p.ino.type === S_IFLNK && headerSize + p.tail > BLOCK_SIZE) {
    // Longer than composefs-rs allows: the target goes to a data block.
    p.nBlocks = 1;
    p.tail = 0;
    p.layout = DATALAYOUT_FLAT_PLAIN;
  }
  if (p.layout !== DATALAYOUT_FLAT_INLINE) return pos;
  const endOfMeta = pos + headerSize - 1;
  const inlineEnd = pos + headerSize + p.tail;
  if (Math.floor(endOfMeta / BLOCK_SIZE) !== Math.floor(inlineEnd / BLOCK_SIZE)) {
    return roundUp(pos + BLOCK_SIZE - (endOfMeta % BLOCK_SIZE), INODE_SLOT_SIZE);
  }
  return pos;
}

function writeBstr(out: Uint8Array, off: number, s: string): number {
  for (let i = 0; i < s.length; i++) out[off + i] = s.charCodeAt(i);
  return off + s.length;
}

function emitXattr(out: Uint8Array, dv: DataView, off: number, e: XattrEntry): number {
  out[off] = e.suffix.length;
  out[off + 1] = e.index;
  dv.setUint16(off + 2, e.value.length, true);
  const o = writeBstr(out, off + XATTR_ENTRY_HEADER_SIZE, e.suffix);
  out.set(e.value, o);
  return off + e.entrySize;
}

function emitInode(
  out: Uint8Array,
  dv: DataView,
  off: number,
  p: Placed,
  epoch1: boolean,
  sharedBase: number,
  maxShared: number,
): number {
  const ino = p.ino;
  const s = ino.stat;
  const mode = ino.type | (s.mode & 0o7777);
  const c = ino.content;
  let iU = 0;
  if (ino.type === S_IFCHR || ino.type === S_IFBLK) {
    iU = (c as { rdev: number }).rdev;
  } else if (p.nBlocks > 0) {
    iU = p.blkaddr;
  }
  // i_u is a union: the chunk format overwrites its low 16 bits only (as C does).
  if (p.layout === DATALAYOUT_CHUNK_BASED) iU = ((iU & 0xffff0000) | p.chunkFormat) >>> 0;
  const format = inodeFormat(!p.compact, p.layout);
  const icount = xattrIcount(p.xattrSize);
  if (icount > U16_MAX) throw new FormatError("too many xattrs on one inode");
  if (p.compact) {
    dv.setUint16(off + INODE_COMPACT.format, format, true);
    dv.setUint16(off + INODE_COMPACT.xattrIcount, icount, true);
    dv.setUint16(off + INODE_COMPACT.mode, mode, true);
    dv.setUint16(off + INODE_COMPACT.nlink, ino.nlink, true);
    dv.setUint32(off + INODE_COMPACT.size, p.size, true);
    dv.setUint32(off + INODE_COMPACT.iU, iU, true);
    dv.setUint32(off + INODE_COMPACT.ino, p.index, true);
    dv.setUint16(off + INODE_COMPACT.uid, s.uid, true);
    dv.setUint16(off + INODE_COMPACT.gid, s.gid, true);
    off += INODE_COMPACT_SIZE;
  } else {
    dv.setUint16(off + INODE_EXTENDED.format, format, true);
    dv.setUint16(off + INODE_EXTENDED.xattrIcount, icount, true);
    dv.setUint16(off + INODE_EXTENDED.mode, mode, true);
    dv.setBigUint64(off + INODE_EXTENDED.size, BigInt(p.size), true);
    dv.setUint32(off + INODE_EXTENDED.iU, iU, true);
    dv.setUint32(off + INODE_EXTENDED.ino, epoch1 ? p.index : p.nid, true);
    dv.setUint32(off + INODE_EXTENDED.uid, s.uid, true);
    dv.setUint32(off + INODE_EXTENDED.gid, s.gid, true);
    dv.setBigInt64(off + INODE_EXTENDED.mtime, BigInt(s.mtimeSec), true);
    dv.setUint32(off + INODE_EXTENDED.mtimeNsec, epoch1 ? s.mtimeNsec : 0, true);
    dv.setUint32(off + INODE_EXTENDED.nlink, ino.nlink, true);
    off += INODE_EXTENDED_SIZE;
  }

  if (p.xattrSize > 0) {
    const start = off;
    dv.setUint32(off, nameFilter(p.xattrs), true);
    out[off + 4] = p.nShared;
    off += XATTR_IBODY_HEADER_SIZE;
    let n = 0;
    const local: XattrEntry[] = [];
    for (const e of p.xattrs) {
      if (e.sharedOffset >= 0 && n < maxShared) {
        dv.setUint32(off, (sharedBase + e.sharedOffset) / 4, true);
        off += 4;
        n++;
      } else {
        local.push(e);
      }
    }
    for (const e of local) off = emitXattr(out, dv, off, e);
    if (off - start !== p.xattrSize) throw new Error("erofs writer: xattr size mismatch");
  }

  if (p.tail > 0) {
    if (ino.type === S_IFDIR) {
      writeDirents(out, dv, off, ino.dirents!, p.tailFrom, ino.dirents!.length);
    } else if (ino.type === S_IFLNK) {
      writeBstr(out, off, (c as { target: string }).target);
    } else if (p.layout === DATALAYOUT_CHUNK_BASED) {
      out.fill(0xff, off, off + p.tail);
    } else if (c !== null && c.type === "inline") {
      out.set(c.data.subarray(c.data.length - p.tail), off);
    }
    off += p.tail;
  }
  return off;
}

/** Writes dirents [from, to) as one directory block (headers, then names) at `off`. */
function writeDirents(
  out: Uint8Array,
  dv: DataView,
  off: number,
  ents: WDirent[],
  from: number,
  to: number,
): void {
  let nameOff = (to - from) * DIRENT_SIZE;
  let h = off;
  for (let i = from; i < to; i++) {
    const t = ents[i].target as WInode;
    dv.setBigUint64(h, BigInt(t.nid), true);
    dv.setUint16(h + 8, nameOff, true);
    out[h + 10] = direntFileType(t.type);
    h += DIRENT_SIZE;
    nameOff += ents[i].name.length;
  }
  for (let i = from; i < to; i++) h = writeBstr(out, h, ents[i].name);
}

function emitBlocks(out: Uint8Array, dv: DataView, off: number, p: Placed): number {
  const ino = p.ino;
  const c = ino.content;
  if (ino.type === S_IFDIR) {
    const ents = ino.dirents!;
    let used = 0;
    let first = 0;
    let written = 0;
    for (let i = 0; i < ents.length; i++) {
      const len = DIRENT_SIZE + ents[i].name.length;
      if (used + len > BLOCK_SIZE) {
        writeDirents(out, dv, off + written * BLOCK_SIZE, ents, first, i);
        written++;
        used = 0;
        first = i;
      }
      used += len;
    }
    if (written < p.nBlocks) {
      writeDirents(out, dv, off + written * BLOCK_SIZE, ents, first, ents.length);
      written++;
    }
  } else if (ino.type === S_IFLNK) {
    writeBstr(out, off, (c as { target: string }).target);
  } else if (p.layout === DATALAYOUT_CHUNK_BASED) {
    out.fill(0xff, off, off + BLOCK_SIZE); // C writes a block of 1024 null chunk entries
  } else if (c !== null && c.type === "inline") {
    out.set(c.data.subarray(0, p.nBlocks * BLOCK_SIZE), off);
  }
  return off + p.nBlocks * BLOCK_SIZE;
}
