// On-disk constants and struct offsets of composefs EROFS images (docs/erofs.md). Shared by the writer and
// the reader: every number that describes the format lives here, nothing else does.
// All integers are little-endian. Each struct is declared once (lib/util/struct_codec.ts): field names,
// widths and order as in the kernel's erofs_fs.h; offsets and sizes follow from the declaration.
import { bytes, struct } from "../util/struct_codec.ts";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from "../tree/tree.ts";

// ---------------------------------------------------------------------------------------------------
// Blocks and overall layout (docs/erofs.md#layout)

export const BLOCK_SIZE_BITS = 12;
export const BLOCK_SIZE = 1 << BLOCK_SIZE_BITS; // 4096
/** Inodes start 32-byte aligned; nid = byte offset / 32 (meta_blkaddr is always 0). */
export const INODE_SLOT_BITS = 5;
export const INODE_SLOT_SIZE = 1 << INODE_SLOT_BITS; // 32
/** Byte offset of the superblock. */
export const SUPERBLOCK_OFFSET = 1024;

// ---------------------------------------------------------------------------------------------------
// Composefs header (32 bytes at offset 0, docs/erofs.md#layout)

export const COMPOSEFS_MAGIC = 0xd078629a;
/** Header layout version (always 1). */
export const COMPOSEFS_HEADER_VERSION = 1;
/** struct lcfs_erofs_header_s. */
export const LcfsErofsHeader = struct("lcfs_erofs_header_s", {
  magic: "u32",
  version: "u32", // COMPOSEFS_HEADER_VERSION
  flags: "u32", // COMPOSEFS_FLAGS_*
  composefsVersion: "u32", // 0, 1 or 2 (docs/erofs.md#versions)
  unused: bytes(16), // u32[4]
}, 32);
/** Field offsets of LcfsErofsHeader. */
export const CFS_HDR = LcfsErofsHeader.offset;
/** Header flag: some inode carries a POSIX ACL xattr (epoch 1 only). */
export const COMPOSEFS_FLAGS_HAS_ACL = 1 << 0;

/** The image format versions this project writes (docs/erofs.md#versions). */
export type FormatVersion = 0 | 1 | 2;

// ---------------------------------------------------------------------------------------------------
// EROFS superblock (128 bytes at offset 1024, docs/erofs.md#layout)

export const EROFS_MAGIC = 0xe0f5e1e2;
/** struct erofs_super_block. */
export const ErofsSuperBlock = struct("erofs_super_block", {
  magic: "u32",
  checksum: "u32",
  featureCompat: "u32",
  blkszbits: "u8",
  extslots: "u8",
  rootNid: "u16",
  inos: "u64",
  buildTime: "i64", // seconds (signed in practice: C writes the smallest mtime)
  buildTimeNsec: "u32",
  blocks: "u32",
  metaBlkaddr: "u32",
  xattrBlkaddr: "u32",
  uuid: bytes(16),
  volumeName: bytes(16),
  featureIncompat: "u32",
  availableComprAlgs: "u16",
  extraDevices: "u16",
  devtSlotoff: "u16",
  dirblkbits: "u8",
  xattrPrefixCount: "u8",
  xattrPrefixStart: "u32",
  packedNid: "u64",
  xattrFilterReserved: "u8",
  reserved: bytes(23),
}, 128);
export const SUPERBLOCK_SIZE = ErofsSuperBlock.size;
/** Field offsets of ErofsSuperBlock. */
export const SB = ErofsSuperBlock.offset;
/** First byte after the superblock: where the inode table starts (nid 36). */
export const INODE_TABLE_START = SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE; // 1152

export const FEATURE_COMPAT_SB_CHKSUM = 0x1;
export const FEATURE_COMPAT_MTIME = 0x2;
export const FEATURE_COMPAT_XATTR_FILTER = 0x4;
/** What composefs writers set in feature_compat. */
export const COMPOSEFS_FEATURE_COMPAT = FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER; // 6

export const FEATURE_INCOMPAT_ZERO_PADDING = 0x1;
export const FEATURE_INCOMPAT_COMPR_CFGS = 0x2;
export const FEATURE_INCOMPAT_BIG_PCLUSTER = 0x2;
export const FEATURE_INCOMPAT_CHUNKED_FILE = 0x4;
export const FEATURE_INCOMPAT_DEVICE_TABLE = 0x8;
export const FEATURE_INCOMPAT_ZTAILPACKING = 0x10;
export const FEATURE_INCOMPAT_FRAGMENTS = 0x20;
export const FEATURE_INCOMPAT_XATTR_PREFIXES = 0x40;

// ---------------------------------------------------------------------------------------------------
// Inodes (docs/erofs.md#inodes)

/** Bit 0 of i_format: 0 compact, 1 extended. */
export const INODE_VERSION_COMPACT = 0;
export const INODE_VERSION_EXTENDED = 1;
export const INODE_VERSION_MASK = 0x1;
/** Bits 1..3 of i_format: the data layout. */
export const INODE_DATALAYOUT_BIT = 1;
export const INODE_DATALAYOUT_MASK = 0x7;
export const DATALAYOUT_FLAT_PLAIN = 0;
export const DATALAYOUT_COMPRESSED_FULL = 1;
export const DATALAYOUT_FLAT_INLINE = 2;
export const DATALAYOUT_COMPRESSED_COMPACT = 3;
export const DATALAYOUT_CHUNK_BASED = 4;

/** i_format value for a version (compact/extended) and data layout. */
export function inodeFormat(extended: boolean, layout: number): number {
  return (layout << INODE_DATALAYOUT_BIT) | (extended ? INODE_VERSION_EXTENDED : INODE_VERSION_COMPACT);
}
export function inodeIsExtended(format: number): boolean {
  return (format & INODE_VERSION_MASK) === INODE_VERSION_EXTENDED;
}
export function inodeDataLayout(format: number): number {
  return (format >> INODE_DATALAYOUT_BIT) & INODE_DATALAYOUT_MASK;
}

/** struct erofs_inode_compact. i_u: raw_blkaddr, rdev or chunk format, by type and data layout. */
export const ErofsInodeCompact = struct("erofs_inode_compact", {
  format: "u16",
  xattrIcount: "u16",
  mode: "u16",
  nlink: "u16",
  size: "u32",
  reserved: "u32",
  iU: "u32",
  ino: "u32",
  uid: "u16",
  gid: "u16",
  reserved2: "u32",
}, 32);
export const INODE_COMPACT_SIZE = ErofsInodeCompact.size;
/** Field offsets of ErofsInodeCompact. */
export const INODE_COMPACT = ErofsInodeCompact.offset;

/** struct erofs_inode_extended. */
export const ErofsInodeExtended = struct("erofs_inode_extended", {
  format: "u16",
  xattrIcount: "u16",
  mode: "u16",
  reserved: "u16",
  size: "u64",
  iU: "u32",
  ino: "u32",
  uid: "u32",
  gid: "u32",
  mtime: "i64", // seconds (signed in practice)
  mtimeNsec: "u32",
  nlink: "u32",
  reserved2: bytes(16),
}, 64);
export const INODE_EXTENDED_SIZE = ErofsInodeExtended.size;
/** Field offsets of ErofsInodeExtended. */
export const INODE_EXTENDED = ErofsInodeExtended.offset;

/** Chunk-based files: i_u holds chunk format; its low 5 bits = chunkbits − blkszbits. */
export const CHUNK_FORMAT_BLKBITS_MASK = 0x1f;
/** Chunk format flag: 8-byte chunk indexes instead of 4-byte block map entries (composefs never sets it). */
export const CHUNK_FORMAT_INDEXES = 0x20;
/** Block map entry of a chunk with no data (a hole). */
export const NULL_ADDR = 0xffffffff;
/** Size of one block-map chunk entry (u32 blkaddr). */
export const CHUNK_BLOCKMAP_ENTRY_SIZE = 4;
/** Largest chunkbits expressible: blkszbits + CHUNK_FORMAT_BLKBITS_MASK. */
export const MAX_CHUNK_BITS = BLOCK_SIZE_BITS + CHUNK_FORMAT_BLKBITS_MASK; // 43

// ---------------------------------------------------------------------------------------------------
// Extended attributes (docs/erofs.md#xattrs)

/** struct erofs_xattr_ibody_header; h_shared_count u32 references follow it. */
export const ErofsXattrIbodyHeader = struct("erofs_xattr_ibody_header", {
  nameFilter: "u32", // bit set = xattr absent (see XATTR_BLOOM_SEED)
  sharedCount: "u8",
  reserved: bytes(7),
}, 12);
export const XATTR_IBODY_HEADER_SIZE = ErofsXattrIbodyHeader.size;
/** Field offsets of ErofsXattrIbodyHeader. */
export const XATTR_IBODY = ErofsXattrIbodyHeader.offset;
/** Size of one shared-xattr reference in the ibody. */
export const XATTR_SHARED_REF_SIZE = 4;

/** struct erofs_xattr_entry: then the name suffix, the value, and padding to XATTR_ENTRY_ALIGN. */
export const ErofsXattrEntry = struct("erofs_xattr_entry", {
  nameLen: "u8", // length of the suffix after the prefix
  nameIndex: "u8", // XATTR_PREFIXES index
  valueSize: "u16",
}, 4);
export const XATTR_ENTRY_HEADER_SIZE = ErofsXattrEntry.size;
/** Entries (in the ibody and in the shared table) are padded to this alignment. */
export const XATTR_ENTRY_ALIGN = 4;

/** xattr_icount for an ibody of `bytes` bytes (header included); 0 means no xattrs. */
export function xattrIcount(bytes: number): number {
  return bytes === 0 ? 0 : 1 + (bytes - XATTR_IBODY_HEADER_SIZE) / 4;
}
/** ibody size in bytes for an xattr_icount. */
export function xattrIbodySize(icount: number): number {
  return icount === 0 ? 0 : XATTR_IBODY_HEADER_SIZE + (icount - 1) * 4;
}

/** Name prefixes by index (EROFS_XATTR_INDEX_*). Index 0 = no prefix (full name stored). */
export const XATTR_PREFIXES: readonly string[] = [
  "",
  "user.",
  "system.posix_acl_access",
  "system.posix_acl_default",
  "trusted.",
  "lustre.",
  "security.",
];
export const XATTR_INDEX_USER = 1;
export const XATTR_INDEX_POSIX_ACL_ACCESS = 2;
export const XATTR_INDEX_POSIX_ACL_DEFAULT = 3;
export const XATTR_INDEX_TRUSTED = 4;
export const XATTR_INDEX_LUSTRE = 5;
export const XATTR_INDEX_SECURITY = 6;

/** Bloom filter (feature XATTR_FILTER): bit = xxh32(suffix, SEED + index) % 32; stored inverted. */
export const XATTR_BLOOM_SEED = 0x25bbe08f;
export const XATTR_FILTER_BITS = 32;

// ---------------------------------------------------------------------------------------------------
// Directories (docs/erofs.md#directories)

/** struct erofs_dirent. Names follow all dirents of a block (no NUL; the last one runs to the block's
 *  end or its first NUL). */
export const ErofsDirent = struct("erofs_dirent", {
  nid: "u64",
  nameoff: "u16",
  fileType: "u8", // FT_*
  reserved: "u8",
}, 12);
export const DIRENT_SIZE = ErofsDirent.size;
/** Field offsets of ErofsDirent. */
export const DIRENT = ErofsDirent.offset;

export const FT_UNKNOWN = 0;
export const FT_REG_FILE = 1;
export const FT_DIR = 2;
export const FT_CHRDEV = 3;
export const FT_BLKDEV = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;

/** EROFS dirent file type for S_IF* bits. */
export function direntFileType(type: number): number {
  switch (type) {
    case S_IFREG:
      return FT_REG_FILE;
    case S_IFDIR:
      return FT_DIR;
    case S_IFCHR:
      return FT_CHRDEV;
    case S_IFBLK:
      return FT_BLKDEV;
    case S_IFIFO:
      return FT_FIFO;
    case S_IFSOCK:
      return FT_SOCK;
    case S_IFLNK:
      return FT_SYMLINK;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// overlayfs xattrs used by composefs

export const OVERLAY_XATTR_PREFIX = "trusted.overlay.";
/** A user's own trusted.overlay.X is stored as trusted.overlay.overlay.X. */
export const OVERLAY_ESCAPED_PREFIX = "trusted.overlay.overlay.";
export const XATTR_METACOPY = "trusted.overlay.metacopy";
export const XATTR_REDIRECT = "trusted.overlay.redirect";
export const XATTR_OPAQUE = "trusted.overlay.opaque";

/** Escaped whiteout (epoch 1: a user chr 0:0 becomes a regular file with these). */
export const XATTR_ESCAPED_WHITEOUT = "trusted.overlay.overlay.whiteout";
export const XATTR_USER_WHITEOUT = "user.overlay.whiteout";
/** Parent-directory markers for a directory holding escaped whiteouts. */
export const XATTR_ESCAPED_WHITEOUTS = "trusted.overlay.overlay.whiteouts";
export const XATTR_USER_WHITEOUTS = "user.overlay.whiteouts";
export const XATTR_ESCAPED_OPAQUE = "trusted.overlay.overlay.opaque";
export const XATTR_USER_OPAQUE = "user.overlay.opaque";

/** Value of trusted.overlay.opaque on an epoch-1 root; of the *.opaque markers on whiteout parents. */
export const OPAQUE_ROOT_VALUE = "y";
export const OPAQUE_WHITEOUTS_VALUE = "x";

/** The trusted.overlay.metacopy value (overlayfs struct ovl_metacopy): then the digest bytes. */
export const OvlMetacopy = struct("ovl_metacopy", {
  version: "u8", // METACOPY_VERSION
  len: "u8", // METACOPY_HEADER_SIZE + digest size
  flags: "u8", // 0
  digestAlgo: "u8", // 1 sha256, 2 sha512 (fs-verity algorithm numbers)
}, 4);
export const METACOPY_HEADER_SIZE = OvlMetacopy.size;
export const METACOPY_VERSION = 0;

/** The selinux label is the only xattr a generated whiteout stub copies from the root. */
export const XATTR_SELINUX = "security.selinux";
export const XATTR_POSIX_ACL_ACCESS = "system.posix_acl_access";
export const XATTR_POSIX_ACL_DEFAULT = "system.posix_acl_default";

// ---------------------------------------------------------------------------------------------------
// Limits

/** C mkcomposefs accepts symlink targets up to PATH_MAX − 1 bytes (long ones go to a data block). */
export const MAX_SYMLINK_TARGET_C = 4095;
/** C mkcomposefs accepts inline content up to this size in dumpfiles. */
export const MAX_INLINE_CONTENT_C = 5000;
/** Epoch 1: an inline tail larger than this goes to a data block (C mkcomposefs behaviour). */
export const MAX_INLINE_TAIL = BLOCK_SIZE / 2; // 2048
