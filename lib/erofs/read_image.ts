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
  SB,
  SUPERBLOCK_OFFSET,
  XATTR_ENTRY,
  XATTR_ENTRY_ALIGN,
  XATTR_ENTRY_HEADER_SIZE,
  XATTR_IBODY,
  XATTR_IBODY_HEADER_SIZE,
  XATTR_PREFIXES,
  XATTR_SHARED_REF_SIZE,
  xattrIbodySize,
} from "./format.ts";
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
const TWO_POW_32 = 0x1_0000_0000;
/** Largest high word of a u64 that still makes a safe JS integer. */
const SAFE_HIGH_WORD = 0x1f_ffff;

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

/**
 * A validated image (header and superblock checked in the constructor) with bounds-checked
 * accessors. Inodes and shared xattrs are decoded once and cached.
 */
export class ErofsImage {
  readonly bytes: Uint8Array;
  readonly header: ImageHeader;
  #budget: number;
  #inodes = new Map<number, RawInode>();
  #shared = new Map<number, RawXattr>();
  #xattrs = new Map<number, RawXattr[]>();

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
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
  /** An unsigned u64 of at most 2^53 (exact as a double: the largest file C mkcomposefs writes). */
  #u64(o: number, what: string, nid?: number): number {
    const hi = this.u32(o + 4);
    if (hi > SAFE_HIGH_WORD && !(hi === SAFE_HIGH_WORD + 1 && this.u32(o) === 0)) {
      throw imageError(`${what} is too large (high word ${hex(hi)})`, { nid, offset: o });
    }
    return hi * TWO_POW_32 + this.u32(o);
  }
  /** A signed i64 (times): a number when it is a safe integer, else the exact bigint. */
  #i64(o: number): number | bigint {
    const hi = this.u32(o + 4) | 0;
    if (hi > SAFE_HIGH_WORD || hi < -SAFE_HIGH_WORD - 1) {
      return (BigInt(hi) << 32n) | BigInt(this.u32(o));
    }
    return hi * TWO_POW_32 + this.u32(o);
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
    if (n < SUPERBLOCK_OFFSET + 128) throw imageError(`image is too short (${n} bytes) for a superblock`);
    const magic = this.u32(CFS_HDR.magic);
    if (magic !== COMPOSEFS_MAGIC) {
      throw imageError(`bad composefs magic ${hex(magic)} (expected ${hex(COMPOSEFS_MAGIC)})`, { offset: 0 });
    }
    const version = this.u32(CFS_HDR.version);
    if (version !== COMPOSEFS_HEADER_VERSION) {
      throw imageError(`unsupported composefs header version ${version}`, { offset: CFS_HDR.version });
    }
    const flags = this.u32(CFS_HDR.flags);
    const cv = this.u32(CFS_HDR.composefsVersion);
    if (cv !== 0 && cv !== 1 && cv !== 2) {
      throw imageError(`unknown composefs_version ${cv} (expected 0, 1 or 2)`, {
        offset: CFS_HDR.composefsVersion,
      });
    }
    const sb = SUPERBLOCK_OFFSET;
    const emagic = this.u32(sb + SB.magic);
    if (emagic !== EROFS_MAGIC) {
      throw imageError(`bad EROFS magic ${hex(emagic)} (expected ${hex(EROFS_MAGIC)})`, { offset: sb });
    }
    const blkszbits = this.u8(sb + SB.blkszbits);
    if (blkszbits !== BLOCK_SIZE_BITS) {
      throw imageError(`blkszbits ${blkszbits} is not ${BLOCK_SIZE_BITS}`, { offset: sb + SB.blkszbits });
    }
    const compat = this.u32(sb + SB.featureCompat);
    if ((compat & ~COMPAT_KNOWN) !== 0) {
      throw imageError(`unknown feature_compat bits ${hex(compat & ~COMPAT_KNOWN)}`, {
        offset: sb + SB.featureCompat,
      });
    }
    const incompat = this.u32(sb + SB.featureIncompat);
    if ((incompat & ~FEATURE_INCOMPAT_CHUNKED_FILE) !== 0) {
      throw imageError(
        `unsupported feature_incompat bits ${hex(incompat & ~FEATURE_INCOMPAT_CHUNKED_FILE)}`,
        {
          offset: sb + SB.featureIncompat,
        },
      );
    }
    const checks: [number, number, string][] = [
      [this.u8(sb + SB.extslots), sb + SB.extslots, "extslots"],
      [this.u32(sb + SB.metaBlkaddr), sb + SB.metaBlkaddr, "meta_blkaddr"],
      [this.u16(sb + SB.availableComprAlgs), sb + SB.availableComprAlgs, "compression algorithms"],
      [this.u16(sb + SB.extraDevices), sb + SB.extraDevices, "extra_devices"],
      [this.u8(sb + SB.dirblkbits), sb + SB.dirblkbits, "dirblkbits"],
      [this.u8(sb + SB.xattrPrefixCount), sb + SB.xattrPrefixCount, "custom xattr prefixes"],
      [this.u32(sb + SB.packedNid) | this.u32(sb + SB.packedNid + 4), sb + SB.packedNid, "packed_nid"],
    ];
    for (const [value, offset, what] of checks) {
      if (value !== 0) throw imageError(`${what} is ${value}; composefs images have none`, { offset });
    }
    const blocks = this.u32(sb + SB.blocks);
    if (blocks * BLOCK_SIZE > n) {
      throw imageError(`superblock says ${blocks} blocks but the image has only ${n} bytes (truncated?)`, {
        offset: sb + SB.blocks,
      });
    }
    const buildTimeNsec = this.u32(sb + SB.buildTimeNsec);
    const buildTime = this.#i64(sb + SB.buildTime);
    if (buildTimeNsec > 999_999_999) {
      throw imageError(`build_time_nsec ${buildTimeNsec} is not below 10^9`, {
        offset: sb + SB.buildTimeNsec,
      });
    }
    return {
      composefsVersion: cv,
      epoch: cv === 2 ? 2 : 1,
      flags,
      featureCompat: compat,
      featureIncompat: incompat,
      rootNid: this.u16(sb + SB.rootNid),
      inos: this.#u64(sb + SB.inos, "inos"),
      buildTimeSec: Number(buildTime),
      ...(typeof buildTime === "bigint" ? { buildTimeSecExact: buildTime } : {}),
      buildTimeNsec,
      blocks,
      xattrBlkaddr: this.u32(sb + SB.xattrBlkaddr),
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
    const format = this.u16(offset);
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
    let mode: number, nlink: number, size: number, iU: number, uid: number, gid: number;
    let mtimeSec: number, mtimeNsec: number;
    let mtimeSecExact: bigint | undefined;
    const xattrIcount = this.u16(offset + INODE_COMPACT.xattrIcount);
    if (extended) {
      const F = INODE_EXTENDED;
      mode = this.u16(offset + F.mode);
      size = this.#u64(offset + F.size, "inode size", nid);
      iU = this.u32(offset + F.iU);
      uid = this.u32(offset + F.uid);
      gid = this.u32(offset + F.gid);
      const t = this.#i64(offset + F.mtime);
      mtimeSec = Number(t);
      if (typeof t === "bigint") mtimeSecExact = t;
      mtimeNsec = this.u32(offset + F.mtimeNsec);
      nlink = this.u32(offset + F.nlink);
      if (mtimeNsec > 999_999_999) {
        throw imageError(`mtime_nsec ${mtimeNsec} is not below 10^9`, { nid, offset });
      }
    } else {
      const F = INODE_COMPACT;
      mode = this.u16(offset + F.mode);
      nlink = this.u16(offset + F.nlink);
      size = this.u32(offset + F.size);
      iU = this.u32(offset + F.iU);
      uid = this.u16(offset + F.uid);
      gid = this.u16(offset + F.gid);
      // Compact inodes have no mtime of their own: they all share the superblock build_time.
      mtimeSec = this.header.buildTimeSec;
      mtimeSecExact = this.header.buildTimeSecExact;
      mtimeNsec = this.header.buildTimeNsec;
    }
    const type = mode & S_IFMT;
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
        throw imageError(`invalid file type in mode ${mode.toString(8)}`, { nid, offset });
    }
    // Data stored in the image (not chunk-based) cannot be larger than the image.
    if (
      layout !== DATALAYOUT_CHUNK_BASED && size > this.bytes.length &&
      (type === S_IFDIR || type === S_IFREG || type === S_IFLNK)
    ) {
      throw imageError(`inode size ${size} exceeds the image size`, { nid, offset });
    }
    const xattrStart = offset + headerSize;
    const xattrSize = xattrIbodySize(xattrIcount);
    const inlineStart = xattrStart + xattrSize;
    let inlineSize = 0;
    if (layout === DATALAYOUT_FLAT_INLINE) {
      inlineSize = size % BLOCK_SIZE;
      // The kernel refuses inline tails that straddle a block boundary.
      if (inlineSize > 0 && (inlineStart % BLOCK_SIZE) + inlineSize > BLOCK_SIZE) {
        throw imageError(`inline data (${inlineSize} bytes) crosses a block boundary`, {
          nid,
          offset: inlineStart,
        });
      }
    } else if (layout === DATALAYOUT_CHUNK_BASED) {
      // Only the 4-byte block map (no 8-byte chunk indexes) is used by composefs.
      if ((iU & ~CHUNK_FORMAT_BLKBITS_MASK) !== 0) {
        throw imageError(`unsupported chunk format ${hex(iU)}`, { nid, offset });
      }
      const chunkBits = BLOCK_SIZE_BITS + (iU & CHUNK_FORMAT_BLKBITS_MASK);
      const chunks = Math.ceil(size / 2 ** chunkBits);
      if (chunks * CHUNK_BLOCKMAP_ENTRY_SIZE > this.bytes.length) {
        throw imageError(`chunk map of ${chunks} entries does not fit the image`, { nid, offset });
      }
      inlineSize = chunks * CHUNK_BLOCKMAP_ENTRY_SIZE;
    }
    const total = headerSize + xattrSize + inlineSize;
    this.#need(offset, total, "inode", nid);
    this.charge(total, "inode", { nid, offset });
    const inode: RawInode = {
      nid,
      offset,
      extended,
      headerSize,
      layout,
      mode,
      type,
      nlink,
      size,
      iU,
      uid,
      gid,
      mtimeSec,
      ...(mtimeSecExact !== undefined ? { mtimeSecExact } : {}),
      mtimeNsec,
      xattrIcount,
      xattrStart,
      xattrSize,
      inlineStart,
      inlineSize,
    };
    this.#inodes.set(nid, inode);
    return inode;
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
    const nameLen = this.u8(at + XATTR_ENTRY.nameLen);
    const index = this.u8(at + XATTR_ENTRY.nameIndex);
    const valueSize = this.u16(at + XATTR_ENTRY.valueSize);
    const nameStart = at + XATTR_ENTRY.name;
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
    const cached = this.#xattrs.get(inode.nid);
    if (cached) return cached;
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
    this.#xattrs.set(inode.nid, out);
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
      const lo = this.u32(at + DIRENT.nid);
      const hi = this.u32(at + DIRENT.nid + 4);
      if (hi !== 0) throw imageError(`dirent nid out of range`, { nid, offset: at });
      out.push({ name, nid: lo, fileType: this.u8(at + DIRENT.fileType), at });
    }
  }
}
