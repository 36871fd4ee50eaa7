// composefs EROFS image writer, formats V0, V1 (byte-identical to C mkcomposefs 1.0.8) and V2
// (byte-identical to composefs-rs 0.7.0). Spec §5. Two passes over the inode table: a layout pass
// fixes every size, padding, nid and block address; the emit pass fills one preallocated buffer.
import { FormatError } from "../errors.ts";
import { KERNEL_ALG_ID } from "../fsverity/object_id.ts";
import type { Directory, LeafContent } from "../tree/tree.ts";
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
  DIRENT,
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
  METACOPY,
  METACOPY_HEADER_SIZE,
  METACOPY_VERSION,
  OVERLAY_ESCAPED_PREFIX,
  OVERLAY_XATTR_PREFIX,
  SB,
  SUPERBLOCK_OFFSET,
  XATTR_IBODY_HEADER_SIZE,
  XATTR_METACOPY,
  XATTR_POSIX_ACL_ACCESS,
  XATTR_POSIX_ACL_DEFAULT,
  XATTR_REDIRECT,
  xattrIcount,
} from "./format.ts";
import { collectEpoch1, collectV2, direntFileType, externalSize, type WInode } from "./write_collect.ts";
import {
  emitXattr,
  ibodySize,
  MAX_SHARED_REFS,
  MAX_SHARED_REFS_EPOCH1,
  nameFilter,
  type XattrEntry,
  XattrTable,
  type XattrValue,
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
/** Longest xattr name after escaping (XATTR_NAME_MAX plus the escape prefix growth), longest value. */
const MAX_XATTR_NAME = 255 + (OVERLAY_ESCAPED_PREFIX.length - OVERLAY_XATTR_PREFIX.length);
const MAX_XATTR_VALUE = 0xffff;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
const TWO32 = 0x100000000;
const EMPTY = new Uint8Array(0);

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** chunkbits for an external file of `size` bytes: as few chunks as possible, at least one block. */
function chunkBits(size: number): number {
  let bits = BLOCK_SIZE_BITS;
  while (bits < MAX_CHUNK_BITS && 2 ** bits < size) bits++;
  return bits;
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
  if (version === 0 && (opts.maxVersion ?? 1) >= 1 && treeHasWhiteout(root)) cfsVersion = 1;
  const inodes = (epoch1 ? collectEpoch1(root, cfsVersion) : collectV2(root)).inodes;

  const table = new XattrTable(epoch1);
  let hasAcl = false;
  for (const ino of inodes) {
    ino.xattrs = xattrList(ino, table, epoch1);
    if (epoch1 && !hasAcl) {
      for (const e of ino.xattrs) {
        const n = e.xname.name;
        if (n === XATTR_POSIX_ACL_ACCESS || n === XATTR_POSIX_ACL_DEFAULT) hasAcl = true;
      }
    }
  }
  table.buildShared();

  // Smallest mtime, compared as signed numbers (C mkcomposefs); compact inodes inherit it.
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
  const maxShared = epoch1 ? MAX_SHARED_REFS_EPOCH1 : MAX_SHARED_REFS + 1;
  let pos = INODE_TABLE_START;
  let nDataBlocks = 0;
  for (const ino of inodes) {
    layoutInode(ino, maxShared, epoch1, minSec, minNsec);
    if (ino.nShared > MAX_SHARED_REFS) {
      throw new FormatError(`an inode has more than ${MAX_SHARED_REFS} shared xattrs`);
    }
    const start = roundUp(pos, INODE_SLOT_SIZE);
    const headerSize = (ino.compact ? INODE_COMPACT_SIZE : INODE_EXTENDED_SIZE) + ino.xattrSize;
    const at = epoch1 ? padEpoch1(ino, start, headerSize) : padV2(ino, start, headerSize);
    ino.pad = at - pos;
    ino.nid = at / INODE_SLOT_SIZE;
    pos = at + headerSize + ino.tail;
    nDataBlocks += ino.nBlocks;
  }
  const inodesEnd = roundUp(pos, INODE_SLOT_SIZE);
  const dataStart = roundUp(inodesEnd + table.sharedSize, BLOCK_SIZE);
  const total = dataStart + nDataBlocks * BLOCK_SIZE;
  if (inodes[0].nid > U16_MAX) throw new FormatError("root inode does not fit a 16-bit nid");
  if (total / BLOCK_SIZE > U32_MAX) throw new FormatError("image too large");
  let blk = dataStart / BLOCK_SIZE;
  for (const ino of inodes) {
    if (ino.nBlocks > 0) {
      ino.blkaddr = blk;
      blk += ino.nBlocks;
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
  dv.setUint16(sb + SB.rootNid, inodes[0].nid, true);
  setU64(dv, sb + SB.inos, inodes.length);
  if (epoch1) {
    setI64(dv, sb + SB.buildTime, minSec);
    dv.setUint32(sb + SB.buildTimeNsec, minNsec, true);
    dv.setUint32(sb + SB.xattrBlkaddr, Math.floor(inodesEnd / BLOCK_SIZE), true);
  }
  dv.setUint32(sb + SB.blocks, total / BLOCK_SIZE, true);

  // Shared xattr references count 4-byte words from xattr_blkaddr (0 for V2).
  const sharedBase = epoch1 ? inodesEnd % BLOCK_SIZE : inodesEnd;
  let off = INODE_TABLE_START;
  for (let i = 0; i < inodes.length; i++) {
    off = emitInode(out, dv, off + inodes[i].pad, inodes[i], i, epoch1, sharedBase, maxShared);
  }
  off = inodesEnd;
  for (const e of table.shared) off = emitXattr(out, off, e);
  off = dataStart;
  for (const ino of inodes) {
    if (ino.nBlocks > 0) off = emitBlocks(out, dv, off, ino);
  }
  if (off !== total) throw new Error(`erofs writer: layout mismatch (${off} != ${total})`);
  return out;
}

function setU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, v % TWO32, true);
  dv.setUint32(off + 4, Math.floor(v / TWO32), true);
}

/** Two's complement for negative values (mtimes before 1970). */
function setI64(dv: DataView, off: number, v: number): void {
  if (v >= 0) setU64(dv, off, v);
  else dv.setBigInt64(off, BigInt(v), true);
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

function escapeName(name: string): string {
  return name.startsWith(OVERLAY_XATTR_PREFIX)
    ? OVERLAY_ESCAPED_PREFIX + name.slice(OVERLAY_XATTR_PREFIX.length)
    : name;
}

function hasExtra(extra: [string, XattrValue][] | null, name: string): boolean {
  if (extra === null) return false;
  for (const kv of extra) if (kv[0] === name) return true;
  return false;
}

function checkXattr(name: string, value: XattrValue): void {
  if (name.length > MAX_XATTR_NAME || value.length > MAX_XATTR_VALUE) {
    throw new FormatError(
      `xattr ${
        JSON.stringify(name.slice(0, 64))
      } too large (name ${name.length}, value ${value.length} bytes)`,
    );
  }
}

/**
 * The inode's xattrs in on-disk order: own xattrs with trusted.overlay.* escaped plus the synthetic
 * ones. Epoch 1 sorts them by full name (C); V2 lists synthetic ones first, then own ones sorted by
 * their original name (composefs-rs).
 */
function xattrList(ino: WInode, table: XattrTable, epoch1: boolean): XattrEntry[] {
  const own = ino.stat.xattrs;
  const extra = ino.extra;
  if (own.size === 0 && extra === null && (ino.content === null || externalSize(ino.content) < 0)) return [];
  const list: XattrEntry[] = [];
  const c = ino.content;
  const ext = c === null ? -1 : externalSize(c);
  if (epoch1) {
    // Escaped own names never equal the metacopy/redirect names: no clash to resolve there.
    if (ext > 0) internOverlayData(list, table, c!);
    for (const [k, v] of own) {
      const name = escapeName(k);
      if (hasExtra(extra, name)) continue;
      checkXattr(name, v);
      list.push(table.intern(table.name(name), v));
    }
    if (extra !== null) { for (const [k, v] of extra) list.push(table.intern(table.name(k), v)); }
    for (let i = 1; i < list.length; i++) {
      if (list[i - 1].xname.name > list[i].xname.name) {
        list.sort((a, b) => (a.xname.name < b.xname.name ? -1 : 1));
        break;
      }
    }
  } else {
    if (ext >= 0) internOverlayData(list, table, c!);
    if (extra !== null) { for (const [k, v] of extra) list.push(table.intern(table.name(k), v)); }
    let keys = [...own.keys()];
    if (keys.length > 1) keys = keys.sort();
    for (const k of keys) {
      const name = escapeName(k);
      const v = own.get(k)!;
      checkXattr(name, v);
      list.push(table.intern(table.name(name), v));
    }
  }
  return list;
}

/**
 * Synthetic overlay xattrs of an external file: metacopy (4-byte header + digest, or empty without
 * a digest), then redirect to the backing path ("/" + object path or the dumpfile payload).
 */
function internOverlayData(list: XattrEntry[], table: XattrTable, c: LeafContent): void {
  let metacopy = EMPTY;
  let path: string | undefined;
  if (c.type === "external") {
    const d = c.id.bytes;
    metacopy = new Uint8Array(METACOPY_HEADER_SIZE + d.length);
    metacopy[METACOPY.version] = METACOPY_VERSION;
    metacopy[METACOPY.len] = metacopy.length;
    metacopy[METACOPY.digestAlgo] = KERNEL_ALG_ID[c.id.alg];
    metacopy.set(d, METACOPY.digest);
    path = c.payload ?? c.id.objectPath();
  } else if (c.type === "external-noverity") {
    path = c.payload;
  }
  list.push(table.intern(table.name(XATTR_METACOPY), metacopy));
  if (path) list.push(table.intern(table.name(XATTR_REDIRECT), "/" + path));
}

/** Sizes and data layout of one inode (before padding). */
function layoutInode(ino: WInode, maxShared: number, epoch1: boolean, minSec: number, minNsec: number): void {
  const [xattrSize, nShared] = ibodySize(ino.xattrs, maxShared);
  ino.xattrSize = xattrSize;
  ino.nShared = nShared;
  let chunked = false;
  const c = ino.content;
  if (ino.type === S_IFDIR) {
    // Pack "." ".." and the entries into 4 KiB blocks; a tail over 2 KiB becomes a block too.
    let blocks = 0;
    let used = 0;
    const names = ino.names!;
    for (let i = 0; i < names.length; i++) {
      const len = DIRENT_SIZE + names[i].length;
      if (used + len > BLOCK_SIZE) {
        blocks++;
        used = 0;
        ino.tailFrom = i;
      }
      used += len;
    }
    if (used > MAX_INLINE_TAIL) {
      blocks++;
      used = 0;
    }
    ino.nBlocks = blocks;
    ino.tail = used;
    ino.size = blocks * BLOCK_SIZE + used;
  } else if (ino.type === S_IFLNK) {
    const target = (c as { target: string }).target;
    if (target.length === 0 || target.length > MAX_SYMLINK) {
      throw new FormatError(`symlink target length ${target.length} out of range 1..${MAX_SYMLINK}`);
    }
    ino.tail = target.length;
    ino.size = target.length;
  } else if (ino.type === S_IFREG && c!.type === "inline" && c!.data.length > 0) {
    const len = c!.data.length;
    if (len > MAX_INLINE_CONTENT_C) {
      throw new FormatError(`inline file content of ${len} bytes (at most ${MAX_INLINE_CONTENT_C})`);
    }
    ino.size = len;
    if (!epoch1 && INODE_EXTENDED_SIZE + xattrSize + len <= BLOCK_SIZE) {
      ino.tail = len; // composefs-rs keeps the whole content inline
    } else {
      ino.nBlocks = Math.floor(len / BLOCK_SIZE);
      ino.tail = len % BLOCK_SIZE;
      if (ino.tail > MAX_INLINE_TAIL) {
        ino.nBlocks++;
        ino.tail = 0;
      }
    }
  } else if (ino.type === S_IFREG && externalSize(c!) >= 0 && (externalSize(c!) > 0 || !epoch1)) {
    // External file: chunk-based with null chunks (overlayfs reads the data via the redirect).
    // composefs-rs (V2) always uses 2^43-byte chunks.
    const size = externalSize(c!);
    const bits = epoch1 ? chunkBits(size) : MAX_CHUNK_BITS;
    const count = Math.max(1, Math.ceil(size / 2 ** bits));
    if (count > MAX_CHUNKS) {
      throw new FormatError(`external file of ${size} bytes is too large (more than ${MAX_CHUNKS} chunks)`);
    }
    ino.size = size;
    ino.chunkFormat = (bits - BLOCK_SIZE_BITS) & CHUNK_FORMAT_BLKBITS_MASK;
    ino.chunkCount = count;
    ino.tail = count * CHUNK_BLOCKMAP_ENTRY_SIZE;
    chunked = true;
  } else if (ino.type === S_IFCHR || ino.type === S_IFBLK) {
    const rdev = (c as { rdev: number }).rdev;
    if (!(Number.isInteger(rdev) && rdev >= 0 && rdev <= U32_MAX)) {
      throw new FormatError(`device number ${rdev} does not fit the 32-bit EROFS encoding`);
    }
  }
  ino.layout = chunked
    ? DATALAYOUT_CHUNK_BASED
    : ino.tail > 0
    ? DATALAYOUT_FLAT_INLINE
    : DATALAYOUT_FLAT_PLAIN;
  if (epoch1) {
    const s = ino.stat;
    ino.compact = s.mtimeSec === minSec && s.mtimeNsec === minNsec && ino.nlink <= U16_MAX &&
      s.uid <= U16_MAX && s.gid <= U16_MAX && ino.size <= U32_MAX;
  }
}

/** Moves an inode's inline tail to one more data block. */
function tailToBlock(ino: WInode): void {
  ino.nBlocks++;
  ino.tail = 0;
  if (ino.layout === DATALAYOUT_FLAT_INLINE) ino.layout = DATALAYOUT_FLAT_PLAIN;
  if (ino.type === S_IFDIR) ino.size = ino.nBlocks * BLOCK_SIZE;
}

/**
 * Epoch 1 padding before an inode (C mkcomposefs): inline data must not cross a block boundary.
 * May move the tail to a data block. Returns the inode's start offset.
 */
function padEpoch1(ino: WInode, pos: number, headerSize: number): number {
  if (ino.type === S_IFLNK) {
    // A fast symlink's inode and target share one block (kernels < 6.12 insist); a target that
    // cannot fit one block with its inode goes to a data block.
    const total = headerSize + ino.tail;
    const crosses = Math.floor(pos / BLOCK_SIZE) !== Math.floor((pos + total - 1) / BLOCK_SIZE);
    if (total >= BLOCK_SIZE) tailToBlock(ino);
    return crosses ? roundUp(pos, BLOCK_SIZE) : pos;
  }
  const remainder = BLOCK_SIZE - ((pos + headerSize) % BLOCK_SIZE);
  if (remainder < ino.tail) {
    const extra = roundUp(remainder, INODE_SLOT_SIZE);
    if (ino.tail <= BLOCK_SIZE - ((pos + headerSize + extra) % BLOCK_SIZE)) return pos + extra;
    // Even after padding the tail does not fit: it becomes a data block.
    tailToBlock(ino);
    return roundUp(pos, BLOCK_SIZE);
  }
  return pos;
}

/** V2 padding (composefs-rs legacy rule): inline data starts past the metadata's last block. */
function padV2(ino: WInode, pos: number, headerSize: number): number {
  if (ino.type === S_IFLNK && headerSize + ino.tail > BLOCK_SIZE) {
    tailToBlock(ino); // longer than composefs-rs allows: the target goes to a data block
  }
  if (ino.layout !== DATALAYOUT_FLAT_INLINE) return pos;
  const endOfMeta = pos + headerSize - 1;
  const inlineEnd = pos + headerSize + ino.tail;
  if (Math.floor(endOfMeta / BLOCK_SIZE) !== Math.floor(inlineEnd / BLOCK_SIZE)) {
    return roundUp(pos + BLOCK_SIZE - (endOfMeta % BLOCK_SIZE), INODE_SLOT_SIZE);
  }
  return pos;
}

function writeBstr(out: Uint8Array, off: number, s: string): number {
  for (let i = 0; i < s.length; i++) out[off + i] = s.charCodeAt(i);
  return off + s.length;
}

function emitInode(
  out: Uint8Array,
  dv: DataView,
  off: number,
  ino: WInode,
  index: number,
  epoch1: boolean,
  sharedBase: number,
  maxShared: number,
): number {
  const s = ino.stat;
  const mode = ino.type | (s.mode & 0o7777);
  const c = ino.content;
  let iU = 0;
  if (ino.type === S_IFCHR || ino.type === S_IFBLK) iU = (c as { rdev: number }).rdev;
  else if (ino.nBlocks > 0) iU = ino.blkaddr;
  // i_u is a union: the chunk format overwrites its low 16 bits only (as C does).
  if (ino.layout === DATALAYOUT_CHUNK_BASED) iU = ((iU & 0xffff0000) | ino.chunkFormat) >>> 0;
  const format = inodeFormat(!ino.compact, ino.layout);
  const icount = xattrIcount(ino.xattrSize);
  if (icount > U16_MAX) throw new FormatError("too many xattrs on one inode");
  if (ino.compact) {
    dv.setUint16(off + INODE_COMPACT.format, format, true);
    dv.setUint16(off + INODE_COMPACT.xattrIcount, icount, true);
    dv.setUint16(off + INODE_COMPACT.mode, mode, true);
    dv.setUint16(off + INODE_COMPACT.nlink, ino.nlink, true);
    dv.setUint32(off + INODE_COMPACT.size, ino.size, true);
    dv.setUint32(off + INODE_COMPACT.iU, iU, true);
    dv.setUint32(off + INODE_COMPACT.ino, index, true);
    dv.setUint16(off + INODE_COMPACT.uid, s.uid, true);
    dv.setUint16(off + INODE_COMPACT.gid, s.gid, true);
    off += INODE_COMPACT_SIZE;
  } else {
    dv.setUint16(off + INODE_EXTENDED.format, format, true);
    dv.setUint16(off + INODE_EXTENDED.xattrIcount, icount, true);
    dv.setUint16(off + INODE_EXTENDED.mode, mode, true);
    setU64(dv, off + INODE_EXTENDED.size, ino.size);
    dv.setUint32(off + INODE_EXTENDED.iU, iU, true);
    // Epoch 1: i_ino = table index (C); V2: the nid (composefs-rs).
    dv.setUint32(off + INODE_EXTENDED.ino, epoch1 ? index : ino.nid, true);
    dv.setUint32(off + INODE_EXTENDED.uid, s.uid, true);
    dv.setUint32(off + INODE_EXTENDED.gid, s.gid, true);
    setI64(dv, off + INODE_EXTENDED.mtime, s.mtimeSec);
    dv.setUint32(off + INODE_EXTENDED.mtimeNsec, epoch1 ? s.mtimeNsec : 0, true);
    dv.setUint32(off + INODE_EXTENDED.nlink, ino.nlink, true);
    off += INODE_EXTENDED_SIZE;
  }

  if (ino.xattrSize > 0) {
    const start = off;
    dv.setUint32(off, nameFilter(ino.xattrs), true);
    out[off + 4] = ino.nShared;
    off += XATTR_IBODY_HEADER_SIZE;
    // Shared references first (in list order), then the local entries.
    let n = 0;
    for (const e of ino.xattrs) {
      if (e.sharedOffset >= 0 && n < maxShared) {
        dv.setUint32(off, (sharedBase + e.sharedOffset) / 4, true);
        off += 4;
        n++;
      }
    }
    n = 0;
    for (const e of ino.xattrs) {
      if (e.sharedOffset >= 0 && n < maxShared) n++;
      else off = emitXattr(out, off, e);
    }
    if (off - start !== ino.xattrSize) throw new Error("erofs writer: xattr size mismatch");
  }

  if (ino.tail > 0) {
    if (ino.type === S_IFDIR) {
      writeDirents(out, dv, off, ino, ino.tailFrom, ino.names!.length);
    } else if (ino.type === S_IFLNK) {
      writeBstr(out, off, (c as { target: string }).target);
    } else if (ino.layout === DATALAYOUT_CHUNK_BASED) {
      out.fill(0xff, off, off + ino.tail); // null chunk entries
    } else if (c !== null && c.type === "inline") {
      out.set(c.data.subarray(c.data.length - ino.tail), off);
    }
    off += ino.tail;
  }
  return off;
}

/** Writes entries [from, to) of a directory as one dirent block (headers, then names) at `off`. */
function writeDirents(
  out: Uint8Array,
  dv: DataView,
  off: number,
  dir: WInode,
  from: number,
  to: number,
): void {
  const names = dir.names!;
  const targets = dir.targets as WInode[];
  let nameOff = (to - from) * DIRENT_SIZE;
  let h = off;
  for (let i = from; i < to; i++) {
    const t = targets[i];
    setU64(dv, h + DIRENT.nid, t.nid);
    dv.setUint16(h + DIRENT.nameoff, nameOff, true);
    out[h + DIRENT.fileType] = direntFileType(t.type);
    h += DIRENT_SIZE;
    nameOff += names[i].length;
  }
  for (let i = from; i < to; i++) h = writeBstr(out, h, names[i]);
}

/** Writes an inode's full data blocks at `off` (block-aligned); returns the offset after them. */
function emitBlocks(out: Uint8Array, dv: DataView, off: number, ino: WInode): number {
  const c = ino.content;
  if (ino.type === S_IFDIR) {
    const names = ino.names!;
    let used = 0;
    let first = 0;
    let written = 0;
    for (let i = 0; i < names.length; i++) {
      const len = DIRENT_SIZE + names[i].length;
      if (used + len > BLOCK_SIZE) {
        writeDirents(out, dv, off + written * BLOCK_SIZE, ino, first, i);
        written++;
        used = 0;
        first = i;
      }
      used += len;
    }
    if (written < ino.nBlocks) writeDirents(out, dv, off + written * BLOCK_SIZE, ino, first, names.length);
  } else if (ino.type === S_IFLNK) {
    writeBstr(out, off, (c as { target: string }).target);
  } else if (ino.layout === DATALAYOUT_CHUNK_BASED) {
    out.fill(0xff, off, off + BLOCK_SIZE); // C writes a whole block of null chunk entries
  } else if (c !== null && c.type === "inline") {
    out.set(c.data.subarray(0, ino.nBlocks * BLOCK_SIZE), off);
  }
  return off + ino.nBlocks * BLOCK_SIZE;
}
