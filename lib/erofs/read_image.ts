// Low-level, bounds-checked access to a composefs EROFS image (docs/erofs.md#layout, #reader): header and
// superblock validation, inode headers, xattrs, directory entries and file data. Every read checks
// its range against the image first, and every region of the image handed out (inode, shared xattr,
// data or directory block) is charged to a budget equal to the image length: in a valid image these
// regions never overlap, so a hostile image that points many inodes at the same bytes cannot make
// the reader do (or allocate) more than a small multiple of its own size.
import { FormatError } from "../errors.ts";
import {
  BLOCK_SIZE,
  BLOCK_SIZE_BITS,
  CFS_HDR,
  CHUNK_BLOCKMAP_ENTRY_SIZE,
  CHUNK_FORMAT_BLKBITS_MASK,
  COMPOSEFS_HEADER_VERSION,
  COMPOSEFS_MAGIC,
  DATALAYOUT_CHUNK_BASED,
  DATALAYOUT_FLAT_INLINE,
  DATALAYOUT_FLAT_PLAIN,
  DIRENT,
  DIRENT_SIZE,
  EROFS_MAGIC,
  ErofsDirent,
  ErofsInodeCompact,
  ErofsInodeExtended,
  ErofsSuperBlock,
  ErofsXattrEntry,
  FEATURE_COMPAT_MTIME,
  FEATURE_COMPAT_SB_CHKSUM,
  FEATURE_COMPAT_XATTR_FILTER,
  FEATURE_INCOMPAT_CHUNKED_FILE,
  INODE_COMPACT,
  INODE_COMPACT_SIZE,
  INODE_EXTENDED,
  INODE_EXTENDED_SIZE,
  INODE_SLOT_SIZE,
  INODE_TABLE_START,
  inodeDataLayout,
  inodeIsExtended,
  LcfsErofsHeader,
  SB,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  XATTR_ENTRY_ALIGN,
  XATTR_ENTRY_HEADER_SIZE,
  XATTR_IBODY,
  XATTR_IBODY_HEADER_SIZE,
  XATTR_PREFIXES,
  XATTR_SHARED_REF_SIZE,
  xattrIbodySize,
} from "./format.ts";
import { type StructValue, viewOf } from "../util/struct_codec.ts";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "../tree/tree.ts";

/** composefs images are metadata only; anything bigger is refused before looking further. */
export const MAX_IMAGE_SIZE = 1 << 30;
/** Longest name an EROFS dirent may carry (EROFS_NAME_LEN). */
export const MAX_NAME_LEN = 255;
/** Longest xattr name Linux accepts (XATTR_NAME_MAX). */
export const MAX_XATTR_NAME_LEN = 255;

const COMPAT_KNOWN = FEATURE_COMPAT_SB_CHKSUM | FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER;
/** i_format bits other than the version bit and the 3 data-layout bits. */
const I_FORMAT_RESERVED = ~0xf & 0xffff;

export interface ImageHeader {
  /** composefs header composefs_version (0 and 1 = layout epoch 1, 2 = composefs-rs V2). */
  composefsVersion: 0 | 1 | 2;
  epoch: 1 | 2;
  /** composefs header flags (bit 0 HAS_ACL). */
  flags: number;
  featureCompat: number;
  featureIncompat: number;
  rootNid: number;
  inos: number;
  /** Superblock build_time, read as a signed 64-bit number of seconds (nearest double beyond ±2^53). */
  buildTimeSec: number;
  /** build_time exactly, only when it is outside the safe-integer range. */
  buildTimeSecExact?: bigint;
  buildTimeNsec: number;
  blocks: number;
  xattrBlkaddr: number;
}

/** One inode header as stored, with the derived positions of its xattr body and inline payload. */
export interface RawInode {
  nid: number;
  /** Byte offset of the inode in the image (nid × 32). */
  offset: number;
  extended: boolean;
  headerSize: number;
  layout: number;
  /** Full st_mode (type and permission bits). */
  mode: number;
  /** S_IF* bits of mode. */
  type: number;
  nlink: number;
  size: number;
  /** i_u: raw block address, rdev or chunk format, depending on type and layout. */
  iU: number;
  uid: number;
  gid: number;
  /** Nearest double beyond ±2^53; then mtimeSecExact holds the exact value. */
  mtimeSec: number;
  mtimeSecExact?: bigint;
  mtimeNsec: number;
  xattrIcount: number;
  /** Offset and size of the xattr body (0 bytes when the inode has none). */
  xattrStart: number;
  xattrSize: number;
  /** Offset and size of what follows the xattrs: the inline tail or the chunk index array. */
  inlineStart: number;
  inlineSize: number;
}

/** A decoded xattr: full name as a byte string and its value. */
export interface RawXattr {
  name: string;
  /** A view into the image (no copy: most values are only inspected, see userValue). */
  value: Uint8Array;
  /** The copy handed to the tree, made once even when the xattr is shared by many inodes. */
  copy?: Uint8Array;
  /** As stored: prefix index and name suffix (the bloom filter hashes these). */
  index: number;
  suffix: string;
  /** fsck: the xattr's bit in the bloom filter, computed once (shared xattrs recur on many inodes). */
  bloomBit?: number;
}

export interface RawDirent {
  name: string;
  nid: number;
  fileType: number;
  /** Byte offset of the dirent record, for error messages. */
  at: number;
}

const U32_MAX = 0xffff_ffff;

const hex = (n: number) => "0x" + n.toString(16);

/** Thrown errors name the nid and byte offset so a hostile or broken image can be diagnosed. */
export function imageError(what: string, where?: { nid?: number; offset?: number }): FormatError {
  const parts: string[] = [];
  if (where?.nid !== undefined) parts.push(`nid ${where.nid}`);
  if (where?.offset !== undefined) parts.push(`offset ${hex(where.offset)}`);
  return new FormatError(parts.length ? `EROFS image: ${parts.join(", ")}: ${what}` : `EROFS image: ${what}`);
}

/** Decodes a byte range as a byte string (one char per byte). */
export function bytesToBstrRange(b: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i += 8192) {
    const stop = Math.min(end, i + 8192);
    s += String.fromCharCode.apply(null, b.subarray(i, stop) as unknown as number[]);
  }
  return s;
}

export function inodeTypeName(type: number): string {
  switch (type) {
    case S_IFDIR:
      return "directory";
    case S_IFREG:
      return "regular file";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
  }
  return `type ${type.toString(8)}`;
}

/** The superblock rules of docs/erofs.md#reader: magic, block size, known features, nothing composefs
 *  never writes, a block count that fits the image (`n` bytes). */
function checkSuperblock(sb: StructValue<typeof ErofsSuperBlock.fields>, n: number): void {
  const at = (field: keyof typeof SB) => ({ offset: SUPERBLOCK_OFFSET + SB[field] });
  if (sb.magic !== EROFS_MAGIC) {
    throw imageError(`bad EROFS magic ${hex(sb.magic)} (expected ${hex(EROFS_MAGIC)})`, at("magic"));
  }
  if (sb.blkszbits !== BLOCK_SIZE_BITS) {
    throw imageError(`blkszbits ${sb.blkszbits} is not ${BLOCK_SIZE_BITS}`, at("blkszbits"));
  }
  if ((sb.featureCompat & ~COMPAT_KNOWN) !== 0) {
    throw imageError(
      `unknown feature_compat bits ${hex(sb.featureCompat & ~COMPAT_KNOWN)}`,
      at("featureCompat"),
    );
  }
  const incompat = sb.featureIncompat & ~FEATURE_INCOMPAT_CHUNKED_FILE;
  if (incompat !== 0) {
    throw imageError(`unsupported feature_incompat bits ${hex(incompat)}`, at("featureIncompat"));
  }
  const none: [number | bigint, keyof typeof SB, string][] = [
    [sb.extslots, "extslots", "extslots"],
    [sb.metaBlkaddr, "metaBlkaddr", "meta_blkaddr"],
    [sb.availableComprAlgs, "availableComprAlgs", "compression algorithms"],
    [sb.extraDevices, "extraDevices", "extra_devices"],
    [sb.dirblkbits, "dirblkbits", "dirblkbits"],
    [sb.xattrPrefixCount, "xattrPrefixCount", "custom xattr prefixes"],
    [sb.packedNid, "packedNid", "packed_nid"],
  ];
  for (const [value, field, what] of none) {
    if (value !== 0) throw imageError(`${what} is ${value}; composefs images have none`, at(field));
  }
  if (sb.blocks * BLOCK_SIZE > n) {
    throw imageError(
      `superblock says ${sb.blocks} blocks but the image has only ${n} bytes (truncated?)`,
      at("blocks"),
    );
  }
  if (sb.buildTimeNsec > 999_999_999) {
    throw imageError(`build_time_nsec ${sb.buildTimeNsec} is not below 10^9`, at("buildTimeNsec"));
  }
}

/** File type against data layout, and the size of data stored in an image of `imageSize` bytes. */
function checkInodeType(inode: RawInode, imageSize: number): void {
  const { type, layout, nid, offset } = inode;
  switch (type) {
    case S_IFDIR:
    case S_IFLNK:
      if (layout === DATALAYOUT_CHUNK_BASED) {
        throw imageError(`chunk-based ${inodeTypeName(type)}`, { nid, offset });
      }
      break;
    case S_IFREG:
      break;
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
    case S_IFSOCK:
      if (layout !== DATALAYOUT_FLAT_PLAIN) {
        throw imageError(`${inodeTypeName(type)} with data layout ${layout}`, { nid, offset });
      }
      break;
    default:
      throw imageError(`invalid file type in mode ${inode.mode.toString(8)}`, { nid, offset });
  }
  // Data stored in the image (not chunk-based) cannot be larger than the image.
  if (
    layout !== DATALAYOUT_CHUNK_BASED && inode.size > imageSize &&
    (type === S_IFDIR || type === S_IFREG || type === S_IFLNK)
  ) {
    throw imageError(`inode size ${inode.size} exceeds the image size`, { nid, offset });
  }
}

/**
 * A validated image (header and superblock checked in the constructor) with bounds-checked
 * accessors. Shared xattrs, and inodes that several directory entries may name (hard-linked files),
 * are decoded once and cached; the rest are decoded when asked for, since a reader asks once: caching
 * every inode and its xattrs held ~50 MiB for an image of 100,000 files while gc and fsck read it
 * (docs/performance.md#fsck).
 */
export class ErofsImage {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly header: ImageHeader;
  #budget: number;
  #inodes = new Map<number, RawInode>();
  #shared = new Map<number, RawXattr>();

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.view = viewOf(bytes);
    this.#budget = bytes.length;
    this.header = this.#readHeader();
  }

  get length(): number {
    return this.bytes.length;
  }

  // -------------------------------------------------------------------------------------------
  // Bounds-checked little-endian reads

  #need(offset: number, len: number, what: string, nid?: number): void {
    if (!(offset >= 0 && len >= 0 && offset + len <= this.bytes.length)) {
      throw imageError(`${what} (${len} bytes) lies outside the image (${this.bytes.length} bytes)`, {
        nid,
        offset,
      });
    }
  }
  u8(o: number): number {
    return this.bytes[o];
  }
  u16(o: number): number {
    const b = this.bytes;
    return b[o] | (b[o + 1] << 8);
  }
  u32(o: number): number {
    const b = this.bytes;
    return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
  }
  /** Accounts for `len` bytes of the image being interpreted (see the file comment). */
  charge(len: number, what: string, where?: { nid?: number; offset?: number }): void {
    this.#budget -= len;
    if (this.#budget < 0) {
      throw imageError(
        `${what}: the image refers to the same bytes more than once (overlapping inodes or blocks)`,
        where,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Header and superblock (docs/erofs.md#layout, strict rules of #reader)

  #readHeader(): ImageHeader {
    const n = this.bytes.length;
    if (n > MAX_IMAGE_SIZE) throw imageError(`image is ${n} bytes, larger than the 1 GiB limit`);
    if (n < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) {
      throw imageError(`image is too short (${n} bytes) for a superblock`);
    }
    const h = LcfsErofsHeader.read(this.view, 0);
    if (h.magic !== COMPOSEFS_MAGIC) {
      throw imageError(`bad composefs magic ${hex(h.magic)} (expected ${hex(COMPOSEFS_MAGIC)})`, {
        offset: 0,
      });
    }
    if (h.version !== COMPOSEFS_HEADER_VERSION) {
      throw imageError(`unsupported composefs header version ${h.version}`, { offset: CFS_HDR.version });
    }
    const cv = h.composefsVersion;
    if (cv !== 0 && cv !== 1 && cv !== 2) {
      throw imageError(`unknown composefs_version ${cv} (expected 0, 1 or 2)`, {
        offset: CFS_HDR.composefsVersion,
      });
    }
    const sb = ErofsSuperBlock.read(this.view, SUPERBLOCK_OFFSET);
    checkSuperblock(sb, n);
    if (typeof sb.inos === "bigint") {
      throw imageError(`inos is too large (${sb.inos})`, { offset: SUPERBLOCK_OFFSET + SB.inos });
    }
    return {
      composefsVersion: cv,
      epoch: cv === 2 ? 2 : 1,
      flags: h.flags,
      featureCompat: sb.featureCompat,
      featureIncompat: sb.featureIncompat,
      rootNid: sb.rootNid,
      inos: sb.inos,
      buildTimeSec: Number(sb.buildTime),
      ...(typeof sb.buildTime === "bigint" ? { buildTimeSecExact: sb.buildTime } : {}),
      buildTimeNsec: sb.buildTimeNsec,
      blocks: sb.blocks,
      xattrBlkaddr: sb.xattrBlkaddr,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Inodes (docs/erofs.md#inodes)

  /** Decodes (once) the inode at `nid`, checking that its header, xattrs and inline part fit. */
  inode(nid: number): RawInode {
    const cached = this.#inodes.get(nid);
    if (cached) return cached;
    const offset = nid * INODE_SLOT_SIZE;
    if (!Number.isSafeInteger(offset) || offset < INODE_TABLE_START) {
      throw imageError(`nid does not point into the inode table`, { nid });
    }
    this.#need(offset, INODE_COMPACT_SIZE, "inode header", nid);
    const inode = this.#inodeHeader(nid, offset);
    checkInodeType(inode, this.bytes.length);
    const inlineSize = this.#inlineSize(inode);
    inode.inlineSize = inlineSize;
    const total = inode.headerSize + inode.xattrSize + inlineSize;
    this.#need(offset, total, "inode", nid);
    this.charge(total, "inode", { nid, offset });
    // Asked for again only through another hard link (each lookup is charged, so this also keeps a
    // valid image with many links within the budget).
    if (inode.type !== S_IFDIR && inode.nlink > 1) this.#inodes.set(nid, inode);
    return inode;
  }

  /** The compact or extended inode header at `offset` (inlineSize still 0). */
  #inodeHeader(nid: number, offset: number): RawInode {
    const format = this.u16(offset + INODE_COMPACT.format);
    if ((format & I_FORMAT_RESERVED) !== 0) {
      throw imageError(`unsupported i_format ${hex(format)}`, { nid, offset });
    }
    const extended = inodeIsExtended(format);
    const headerSize = extended ? INODE_EXTENDED_SIZE : INODE_COMPACT_SIZE;
    this.#need(offset, headerSize, "inode header", nid);
    const layout = inodeDataLayout(format);
    if (
      layout !== DATALAYOUT_FLAT_PLAIN && layout !== DATALAYOUT_FLAT_INLINE &&
      layout !== DATALAYOUT_CHUNK_BASED
    ) {
      throw imageError(`unsupported data layout ${layout} (compressed?)`, { nid, offset });
    }
    let mtimeSec: number | bigint, mtimeNsec: number;
    let i: StructValue<typeof ErofsInodeCompact.fields> | StructValue<typeof ErofsInodeExtended.fields>;
    if (extended) {
      const x = ErofsInodeExtended.read(this.view, offset);
      if (typeof x.size === "bigint") {
        throw imageError(`inode size is too large (${x.size})`, {
          nid,
          offset: offset + INODE_EXTENDED.size,
        });
      }
      if (x.mtimeNsec > 999_999_999) {
        throw imageError(`mtime_nsec ${x.mtimeNsec} is not below 10^9`, { nid, offset });
      }
      mtimeSec = x.mtime;
      mtimeNsec = x.mtimeNsec;
      i = x;
    } else {
      // Compact inodes have no mtime of their own: they all share the superblock build_time.
      i = ErofsInodeCompact.read(this.view, offset);
      mtimeSec = this.header.buildTimeSecExact ?? this.header.buildTimeSec;
      mtimeNsec = this.header.buildTimeNsec;
    }
    const xattrStart = offset + headerSize;
    const xattrSize = xattrIbodySize(i.xattrIcount);
    return {
      nid,
      offset,
      extended,
      headerSize,
      layout,
      mode: i.mode,
      type: i.mode & S_IFMT,
      nlink: i.nlink,
      size: i.size as number,
      iU: i.iU,
      uid: i.uid,
      gid: i.gid,
      mtimeSec: Number(mtimeSec),
      ...(typeof mtimeSec === "bigint" ? { mtimeSecExact: mtimeSec } : {}),
      mtimeNsec,
      xattrIcount: i.xattrIcount,
      xattrStart,
      xattrSize,
      inlineStart: xattrStart + xattrSize,
      inlineSize: 0,
    };
  }

  /** Bytes after the xattrs: the inline tail (FLAT_INLINE) or the chunk block map (CHUNK_BASED). */
  #inlineSize(inode: RawInode): number {
    const { nid, offset, size, iU } = inode;
    if (inode.layout === DATALAYOUT_FLAT_INLINE) {
      const inlineSize = size % BLOCK_SIZE;
      // The kernel refuses inline tails that straddle a block boundary.
      if (inlineSize > 0 && (inode.inlineStart % BLOCK_SIZE) + inlineSize > BLOCK_SIZE) {
        throw imageError(`inline data (${inlineSize} bytes) crosses a block boundary`, {
          nid,
          offset: inode.inlineStart,
        });
      }
      return inlineSize;
    }
    if (inode.layout === DATALAYOUT_CHUNK_BASED) {
      // Only the 4-byte block map (no 8-byte chunk indexes) is used by composefs.
      if ((iU & ~CHUNK_FORMAT_BLKBITS_MASK) !== 0) {
        throw imageError(`unsupported chunk format ${hex(iU)}`, { nid, offset });
      }
      const chunkBits = BLOCK_SIZE_BITS + (iU & CHUNK_FORMAT_BLKBITS_MASK);
      const chunks = Math.ceil(size / 2 ** chunkBits);
      if (chunks * CHUNK_BLOCKMAP_ENTRY_SIZE > this.bytes.length) {
        throw imageError(`chunk map of ${chunks} entries does not fit the image`, { nid, offset });
      }
      return chunks * CHUNK_BLOCKMAP_ENTRY_SIZE;
    }
    return 0;
  }

  /** First block and number of blocks of the inode's out-of-line data (FLAT_PLAIN / FLAT_INLINE). */
  blockRange(inode: RawInode): { start: number; count: number } {
    if (inode.layout === DATALAYOUT_CHUNK_BASED) return { start: 0, count: 0 };
    const count = inode.layout === DATALAYOUT_FLAT_PLAIN
      ? Math.ceil(inode.size / BLOCK_SIZE)
      : Math.floor(inode.size / BLOCK_SIZE);
    if (count === 0) return { start: 0, count };
    const start = inode.iU;
    if ((start + count) * BLOCK_SIZE > this.bytes.length) {
      throw imageError(`data blocks ${start}..${start + count} lie outside the image`, {
        nid: inode.nid,
        offset: inode.offset,
      });
    }
    if (start * BLOCK_SIZE < INODE_TABLE_START) {
      throw imageError(`data block ${start} overlaps the superblock`, {
        nid: inode.nid,
        offset: inode.offset,
      });
    }
    return { start, count };
  }

  /**
   * The inode's data as a list of byte ranges (full blocks, then the inline tail), covering exactly
   * `size` bytes. Charges the block bytes to the budget.
   */
  dataRanges(inode: RawInode): [number, number][] {
    const { start, count } = this.blockRange(inode);
    const ranges: [number, number][] = [];
    let left = inode.size;
    if (count > 0) {
      this.charge(count * BLOCK_SIZE, "data blocks", { nid: inode.nid, offset: start * BLOCK_SIZE });
      for (let i = 0; i < count; i++) {
        const len = Math.min(left, BLOCK_SIZE);
        ranges.push([(start + i) * BLOCK_SIZE, len]);
        left -= len;
      }
    }
    if (inode.layout === DATALAYOUT_FLAT_INLINE && left > 0) {
      ranges.push([inode.inlineStart, left]);
      left = 0;
    }
    if (left !== 0) {
      throw imageError(`data layout leaves ${left} of ${inode.size} bytes unaccounted`, { nid: inode.nid });
    }
    return ranges;
  }

  /** The inode's data bytes (a copy). Callers cap `size` before calling. */
  data(inode: RawInode): Uint8Array {
    const ranges = this.dataRanges(inode);
    if (ranges.length === 1) return this.bytes.slice(ranges[0][0], ranges[0][0] + ranges[0][1]);
    const out = new Uint8Array(inode.size);
    let o = 0;
    for (const [at, len] of ranges) {
      out.set(this.bytes.subarray(at, at + len), o);
      o += len;
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Extended attributes (docs/erofs.md#xattrs)

  /** Decodes one xattr entry at `at`, which must end at or before `limit`. Returns it and its padded end. */
  #xattrEntry(at: number, limit: number, nid?: number): { x: RawXattr; end: number } {
    if (at + XATTR_ENTRY_HEADER_SIZE > limit) throw imageError(`truncated xattr entry`, { nid, offset: at });
    const { nameLen, nameIndex: index, valueSize } = ErofsXattrEntry.read(this.view, at);
    const nameStart = at + XATTR_ENTRY_HEADER_SIZE;
    const valueStart = nameStart + nameLen;
    const valueEnd = valueStart + valueSize;
    const end = at +
      Math.ceil((XATTR_ENTRY_HEADER_SIZE + nameLen + valueSize) / XATTR_ENTRY_ALIGN) * XATTR_ENTRY_ALIGN;
    if (end > limit) {
      throw imageError(`xattr entry (${nameLen}+${valueSize} bytes) overruns its area`, { nid, offset: at });
    }
    if (index >= XATTR_PREFIXES.length) {
      // Index values ≥ 0x80 would name custom (long) prefixes, which composefs never uses.
      throw imageError(`xattr name index ${index} is not a known prefix`, { nid, offset: at });
    }
    const suffix = bytesToBstrRange(this.bytes, nameStart, valueStart);
    const name = XATTR_PREFIXES[index] + suffix;
    if (name.length === 0) throw imageError(`empty xattr name`, { nid, offset: at });
    if (name.length > MAX_XATTR_NAME_LEN) {
      throw imageError(`xattr name longer than 255 bytes`, { nid, offset: at });
    }
    if (name.includes("\0")) throw imageError(`xattr name contains a NUL byte`, { nid, offset: at });
    return { x: { name, value: this.bytes.subarray(valueStart, valueEnd), index, suffix }, end };
  }

  #sharedXattr(ref: number, nid: number): RawXattr {
    const cached = this.#shared.get(ref);
    if (cached) return cached;
    const at = this.header.xattrBlkaddr * BLOCK_SIZE + ref * XATTR_SHARED_REF_SIZE;
    if (at < INODE_TABLE_START || at >= this.bytes.length) {
      throw imageError(`shared xattr reference ${ref} points outside the image`, { nid, offset: at });
    }
    const { x, end } = this.#xattrEntry(at, this.bytes.length, nid);
    this.charge(end - at, "shared xattr", { nid, offset: at });
    this.#shared.set(ref, x);
    return x;
  }

  /** Shared xattr refs (raw) of an inode, for checks that need them (bloom filter). */
  nameFilter(inode: RawInode): number {
    return inode.xattrSize === 0 ? 0xffffffff : this.u32(inode.xattrStart + XATTR_IBODY.nameFilter);
  }

  /** All xattrs of an inode as stored (shared first, then inline), names unique. */
  xattrs(inode: RawInode): RawXattr[] {
    const out: RawXattr[] = [];
    if (inode.xattrSize > 0) {
      const nid = inode.nid;
      const base = inode.xattrStart;
      const limit = base + inode.xattrSize;
      const sharedCount = this.u8(base + XATTR_IBODY.sharedCount);
      let at = base + XATTR_IBODY_HEADER_SIZE;
      if (at + sharedCount * XATTR_SHARED_REF_SIZE > limit) {
        throw imageError(`${sharedCount} shared xattr refs do not fit xattr_icount ${inode.xattrIcount}`, {
          nid,
          offset: base,
        });
      }
      for (let i = 0; i < sharedCount; i++, at += XATTR_SHARED_REF_SIZE) {
        out.push(this.#sharedXattr(this.u32(at), nid));
      }
      while (at < limit) {
        const { x, end } = this.#xattrEntry(at, limit, nid);
        out.push(x);
        at = end;
      }
      // Few xattrs per inode: pairwise is cheaper than a Set; many (hostile) are bounded by the budget.
      if (out.length > 16) {
        const seen = new Set<string>();
        for (const x of out) {
          if (seen.has(x.name)) {
            throw imageError(`duplicate xattr ${JSON.stringify(x.name)}`, { nid, offset: base });
          }
          seen.add(x.name);
        }
      } else {
        for (let i = 1; i < out.length; i++) {
          for (let j = 0; j < i; j++) {
            if (out[i].name === out[j].name) {
              throw imageError(`duplicate xattr ${JSON.stringify(out[i].name)}`, { nid, offset: base });
            }
          }
        }
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Directories (docs/erofs.md#directories)

  /** All entries of a directory inode in on-disk order ('.' and '..' included), fully validated. */
  dirents(inode: RawInode): RawDirent[] {
    const out: RawDirent[] = [];
    for (const [at, len] of this.dataRanges(inode)) this.#direntBlock(at, len, inode.nid, out);
    return out;
  }

  #direntBlock(base: number, len: number, nid: number, out: RawDirent[]): void {
    if (len < DIRENT_SIZE) {
      throw imageError(`directory block of ${len} bytes holds no dirent`, { nid, offset: base });
    }
    const first = this.u16(base + DIRENT.nameoff);
    if (first < DIRENT_SIZE || first % DIRENT_SIZE !== 0 || first >= len) {
      throw imageError(`bad first nameoff ${first} in a ${len}-byte directory block`, { nid, offset: base });
    }
    const n = first / DIRENT_SIZE;
    const b = this.bytes;
    for (let i = 0; i < n; i++) {
      const at = base + i * DIRENT_SIZE;
      const nameoff = this.u16(at + DIRENT.nameoff);
      let nameEnd: number;
      if (i + 1 < n) {
        nameEnd = this.u16(at + DIRENT_SIZE + DIRENT.nameoff);
        if (nameEnd <= nameoff || nameEnd > len) {
          throw imageError(`dirent names out of order or outside the block (${nameoff}..${nameEnd})`, {
            nid,
            offset: at,
          });
        }
      } else {
        if (nameoff >= len) {
          throw imageError(`last dirent name starts outside the block`, { nid, offset: at });
        }
        // The last name runs to the first NUL (padding) or the end of the block.
        nameEnd = nameoff;
        while (nameEnd < len && b[base + nameEnd] !== 0) nameEnd++;
      }
      if (nameoff < first) throw imageError(`dirent name overlaps the dirent table`, { nid, offset: at });
      const nameLen = nameEnd - nameoff;
      if (nameLen === 0) throw imageError(`empty name in directory`, { nid, offset: at });
      if (nameLen > MAX_NAME_LEN) {
        throw imageError(`name of ${nameLen} bytes is too long`, { nid, offset: at });
      }
      const name = bytesToBstrRange(b, base + nameoff, base + nameEnd);
      if (name.includes("\0")) throw imageError(`name contains a NUL byte`, { nid, offset: base + nameoff });
      if (name.includes("/")) {
        throw imageError(`name ${JSON.stringify(name)} contains '/'`, { nid, offset: at });
      }
      const d = ErofsDirent.read(this.view, at);
      if (!(typeof d.nid === "number" && d.nid <= U32_MAX)) {
        throw imageError(`dirent nid out of range`, { nid, offset: at });
      }
      out.push({ name, nid: d.nid, fileType: d.fileType, at });
    }
  }
}
