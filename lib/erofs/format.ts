// On-disk constants and struct offsets of composefs EROFS images (docs/erofs.md). Shared by the writer and
// the reader: every number that describes the format lives here, nothing else does.
// All integers are little-endian. Offsets are relative to the start of their struct.

// ---------------------------------------------------------------------------------------------------
// Blocks and overall layout (docs/erofs.md#layout)

export const BLOCK_SIZE_BITS = 12;
export const BLOCK_SIZE = 1 << BLOCK_SIZE_BITS; // 4096
/** Inodes start 32-byte aligned; nid = byte offset / 32 (meta_blkaddr is always 0). */
export const INODE_SLOT_BITS = 5;
export const INODE_SLOT_SIZE = 1 << INODE_SLOT_BITS; // 32
/** Byte offset of the superblock. */
export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 128;
/** First byte after the superblock: where the inode table starts (nid 36). */
export const INODE_TABLE_START = SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE; // 1152

// ---------------------------------------------------------------------------------------------------
// Composefs header (32 bytes at offset 0, docs/erofs.md#layout)

export const COMPOSEFS_MAGIC = 0xd078629a;
/** Header layout version (always 1). */
export const COMPOSEFS_HEADER_VERSION = 1;
export const COMPOSEFS_HEADER_SIZE = 32;
export const CFS_HDR = {
  magic: 0, // u32
  version: 4, // u32: COMPOSEFS_HEADER_VERSION
  flags: 8, // u32: COMPOSEFS_FLAGS_*
  composefsVersion: 12, // u32: 0, 1 or 2 (docs/erofs.md#versions)
  unused: 16, // u32[4]
} as const;
/** Header flag: some inode carries a POSIX ACL xattr (epoch 1 only). */
export const COMPOSEFS_FLAGS_HAS_ACL = 1 << 0;

/** The image format versions this project writes (docs/erofs.md#versions). */
export type FormatVersion = 0 | 1 | 2;

// ---------------------------------------------------------------------------------------------------
// EROFS superblock (128 bytes at offset 1024, docs/erofs.md#layout)

export const EROFS_MAGIC = 0xe0f5e1e2;
export const SB = {
  magic: 0, // u32
  checksum: 4, // u32
  featureCompat: 8, // u32
  blkszbits: 12, // u8
  extslots: 13, // u8
  rootNid: 14, // u16
  inos: 16, // u64
  buildTime: 24, // u64 (seconds)
  buildTimeNsec: 32, // u32
  blocks: 36, // u32
  metaBlkaddr: 40, // u32
  xattrBlkaddr: 44, // u32
  uuid: 48, // u8[16]
  volumeName: 64, // u8[16]
  featureIncompat: 80, // u32
  availableComprAlgs: 84, // u16
  extraDevices: 86, // u16
  devtSlotoff: 88, // u16
  dirblkbits: 90, // u8
  xattrPrefixCount: 91, // u8
  xattrPrefixStart: 92, // u32
  packedNid: 96, // u64
  xattrFilterReserved: 104, // u8
  reserved: 105, // u8[23]
} as const;

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

export const INODE_COMPACT_SIZE = 32;
export const INODE_EXTENDED_SIZE = 64;

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

/** Compact inode (32 bytes). */
export const INODE_COMPACT = {
  format: 0, // u16
  xattrIcount: 2, // u16
  mode: 4, // u16
  nlink: 6, // u16
  size: 8, // u32
  reserved: 12, // u32
  iU: 16, // u32: raw_blkaddr / rdev / chunk info
  ino: 20, // u32
  uid: 24, // u16
  gid: 26, // u16
  reserved2: 28, // u32
} as const;

/** Extended inode (64 bytes). */
export const INODE_EXTENDED = {
  format: 0, // u16
  xattrIcount: 2, // u16
  mode: 4, // u16
  reserved: 6, // u16
  size: 8, // u64
  iU: 16, // u32
  ino: 20, // u32
  uid: 24, // u32
  gid: 28, // u32
  mtime: 32, // u64 (seconds, signed in practice)
  mtimeNsec: 40, // u32
  nlink: 44, // u32
  reserved2: 48, // u8[16]
} as const;

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

/** In-inode xattr header: name_filter u32, shared_count u8, reserved[7]; then shared_count u32 refs. */
export const XATTR_IBODY_HEADER_SIZE = 12;
export const XATTR_IBODY = {
  nameFilter: 0, // u32
  sharedCount: 4, // u8
  reserved: 5, // u8[7]
  sharedRefs: 12, // u32[sharedCount]
} as const;
/** Size of one shared-xattr reference in the ibody. */
export const XATTR_SHARED_REF_SIZE = 4;

/** xattr entry: name_len u8 (suffix length), name_index u8, value_size u16, suffix, value, pad to 4. */
export const XATTR_ENTRY_HEADER_SIZE = 4;
export const XATTR_ENTRY = {
  nameLen: 0, // u8
  nameIndex: 1, // u8
  valueSize: 2, // u16
  name: 4,
} as const;
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

/** Dirent: nid u64, nameoff u16, file_type u8, reserved u8. Names follow all dirents (no NUL). */
export const DIRENT_SIZE = 12;
export const DIRENT = {
  nid: 0, // u64
  nameoff: 8, // u16
  fileType: 10, // u8
  reserved: 11, // u8
} as const;

export const FT_UNKNOWN = 0;
export const FT_REG_FILE = 1;
export const FT_DIR = 2;
export const FT_CHRDEV = 3;
export const FT_BLKDEV = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;

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

/** trusted.overlay.metacopy value: version u8, len u8, flags u8, digest_algo u8, digest bytes. */
export const METACOPY_HEADER_SIZE = 4;
export const METACOPY = {
  version: 0, // u8: 0
  len: 1, // u8: METACOPY_HEADER_SIZE + digest size
  flags: 2, // u8: 0
  digestAlgo: 3, // u8: 1 sha256, 2 sha512 (fs-verity algorithm numbers)
  digest: 4,
} as const;
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
