// Composefs EROFS image → file tree (docs/erofs.md#reader): walks the directories from the root with an
// explicit stack, validates the structure (dot entries, sort order, nlink counts, file types, depth, cycles)
// and undoes the writer's encodings (escaped xattrs, V1 escaped whiteouts, whiteout stub table, metacopy).
// With `fsck`, also checks the invariants of the layout epoch (fsck_metadata).
import { FormatError } from "../errors.ts";
import { algorithmFromKernelId, DIGEST_SIZE, type HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import {
  type Directory,
  type Leaf,
  type LeafContent,
  newDirectory,
  newLeaf,
  NO_XATTRS,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  type Stat,
} from "../tree/tree.ts";
import {
  BLOCK_SIZE,
  DATALAYOUT_CHUNK_BASED,
  DATALAYOUT_FLAT_INLINE,
  direntFileType,
  FEATURE_COMPAT_XATTR_FILTER,
  FT_DIR,
  MAX_INLINE_CONTENT_C,
  MAX_SYMLINK_TARGET_C,
  METACOPY_HEADER_SIZE,
  METACOPY_VERSION,
  OVERLAY_ESCAPED_PREFIX,
  OVERLAY_XATTR_PREFIX,
  OvlMetacopy,
  XATTR_BLOOM_SEED,
  XATTR_ESCAPED_WHITEOUT,
  XATTR_FILTER_BITS,
  XATTR_METACOPY,
  XATTR_REDIRECT,
  XATTR_USER_OPAQUE,
  XATTR_USER_WHITEOUT,
  XATTR_USER_WHITEOUTS,
} from "./format.ts";
import {
  ErofsImage,
  imageError,
  inodeTypeName,
  type RawDirent,
  type RawInode,
  type RawXattr,
} from "./read_image.ts";
import { xxh32Bstr } from "./xxh32.ts";
import { viewOf } from "../util/struct_codec.ts";

/** PATH_MAX / 2: each level needs at least one name byte and a '/'. */
export const MAX_DIRECTORY_DEPTH = 2048;

export interface ReadOptions {
  /** Digest algorithm expected in metacopy xattrs; default: whatever the image uses (consistently). */
  alg?: HashAlgorithm;
  /** Also check the layout-epoch invariants (fsck_metadata). */
  fsck?: boolean;
}

/**
 * Xattrs the writer adds for overlayfs bookkeeping, by where it adds them (docs/erofs.md#reader). Unescaped
 * trusted.overlay.* names (metacopy, redirect, the root's opaque) are always the writer's: an entry's
 * own ones are escaped. The others are user.* or escaped names an entry may also carry itself; they
 * are dropped only where the writer puts them (the writer refuses an entry whose own xattr would
 * collide there), so whatever else the image holds is what the reader returns.
 */
/** On an escaped (V0/V1) whiteout, stored names. */
const WHITEOUT_XATTRS = [XATTR_ESCAPED_WHITEOUT, XATTR_USER_WHITEOUT];
/** On a directory holding escaped whiteouts, names after unescaping; the opaque pair from
 *  composefs_version 1 on, with value "x". */
const WHITEOUT_DIR_XATTRS = [OVERLAY_XATTR_PREFIX + "whiteouts", XATTR_USER_WHITEOUTS];
const WHITEOUT_DIR_OPAQUE_XATTRS = [OVERLAY_XATTR_PREFIX + "opaque", XATTR_USER_OPAQUE];

const HEX2_ANY_CASE = /^[0-9a-fA-F]{2}$/;
const HEX2_LOWER = /^[0-9a-f]{2}$/;

type Whiteout = "none" | "native" | "escaped";

/** A directory waiting to be read; `parent` and `name` rebuild its path for error messages. */
interface Frame {
  nid: number;
  parentNid: number;
  inode: RawInode;
  dir: Directory;
  depth: number;
  name: string;
  parent?: Frame;
}

function framePath(f: Frame): string {
  const parts: string[] = [];
  for (let p: Frame | undefined = f; p && p.parent; p = p.parent) parts.push(p.name);
  return "/" + parts.reverse().join("/");
}

function childPath(f: Frame, name: string): string {
  const p = framePath(f);
  return (p === "/" ? "" : p) + "/" + name;
}

/** Quoted path of entry `name` of the directory of frame `f` (built only for error messages). */
function q(f: Frame, name: string): string {
  return JSON.stringify(childPath(f, name));
}

/** Reverses the writer's xattr escaping and drops its unescaped trusted.overlay.* xattrs, and on
 *  an escaped whiteout its whiteout markers (docs/erofs.md#reader). */
function userXattrs(raw: RawXattr[], whiteout = false): Map<string, Uint8Array> {
  // Most inodes of a composefs image carry only the writer's overlay xattrs: they share the empty map
  // (an empty Map per inode was ~10 MiB of the tree of 100,000 files).
  let out: Map<string, Uint8Array> | undefined;
  for (const x of raw) {
    if (whiteout && WHITEOUT_XATTRS.includes(x.name)) continue;
    if (x.name.startsWith(OVERLAY_ESCAPED_PREFIX)) {
      (out ??= new Map()).set(
        OVERLAY_XATTR_PREFIX + x.name.slice(OVERLAY_ESCAPED_PREFIX.length),
        x.copy ??= x.value.slice(),
      );
    } else if (!x.name.startsWith(OVERLAY_XATTR_PREFIX)) {
      (out ??= new Map()).set(x.name, x.copy ??= x.value.slice());
    }
  }
  return out ?? NO_XATTRS;
}

function statOf(inode: RawInode, raw: RawXattr[], whiteout = false): Stat {
  const st: Stat = {
    mode: inode.mode & 0o7777,
    uid: inode.uid,
    gid: inode.gid,
    mtimeSec: inode.mtimeSec,
    mtimeNsec: inode.mtimeNsec,
    xattrs: userXattrs(raw, whiteout),
  };
  if (inode.mtimeSecExact !== undefined) st.mtimeSecExact = inode.mtimeSecExact;
  return st;
}

function find(raw: RawXattr[], name: string): RawXattr | undefined {
  for (const x of raw) if (x.name === name) return x;
  return undefined;
}

function whiteoutKind(inode: RawInode, raw: RawXattr[]): Whiteout {
  if (inode.type === S_IFCHR && inode.iU === 0) return "native";
  if (inode.type === S_IFREG && find(raw, XATTR_ESCAPED_WHITEOUT)) return "escaped";
  return "none";
}

const HEX_DIGITS = "0123456789abcdef";

/** Whether a redirect value is exactly `/XX/rest` for the digest (the writer's default payload). */
function isObjectRedirect(v: Uint8Array, digest: Uint8Array): boolean {
  if (v.length !== 2 + 2 * digest.length || v[0] !== 0x2f || v[3] !== 0x2f) return false;
  for (let i = 0, o = 1; i < digest.length; i++) {
    if (o === 3) o++;
    if (
      v[o++] !== HEX_DIGITS.charCodeAt(digest[i] >> 4) || v[o++] !== HEX_DIGITS.charCodeAt(digest[i] & 15)
    ) {
      return false;
    }
  }
  return true;
}

/** The dumpfile payload of a redirect: its value without the leading '/'. */
function redirectPayload(v: Uint8Array): string {
  return String.fromCharCode.apply(null, v.subarray(v[0] === 0x2f ? 1 : 0) as unknown as number[]);
}

/** Names strictly increase within a directory. */
function checkOrder(f: Frame, prev: string | undefined, e: RawDirent): void {
  if (prev !== undefined && !(prev < e.name)) {
    throw imageError(
      prev === e.name
        ? `duplicate name ${JSON.stringify(e.name)}`
        : `names not sorted (${JSON.stringify(e.name)} after ${JSON.stringify(prev)})`,
      { nid: f.nid, offset: e.at },
    );
  }
}

/** "." names the directory itself, ".." its parent (the root's own for the root); both FT_DIR. */
function checkDot(f: Frame, e: RawDirent): void {
  const want = e.name === "." ? f.nid : f.parentNid;
  if (e.nid !== want) {
    throw imageError(`'${e.name}' points to nid ${e.nid}, expected ${want}`, { nid: f.nid, offset: e.at });
  }
  if (e.fileType !== FT_DIR) {
    throw imageError(`'${e.name}' has file type ${e.fileType}`, { nid: f.nid, offset: e.at });
  }
}

/** Walks an image and builds its tree; one instance per read. */
export class TreeReader {
  readonly img: ErofsImage;
  readonly opts: ReadOptions;
  #alg: HashAlgorithm | undefined;
  /** nid → leaf built for it (undefined for skipped whiteout stubs) and the references seen. */
  #leaves = new Map<number, { leaf?: Leaf; nlink: number; refs: number; f: Frame; name: string }>();
  #dirs = new Set<number>();
  #rootHexSlots = new Set<string>();

  constructor(img: ErofsImage, opts: ReadOptions = {}) {
    this.img = img;
    this.opts = opts;
    this.#alg = opts.alg;
  }

  read(): Directory {
    const img = this.img;
    const rootNid = img.header.rootNid;
    const rootInode = img.inode(rootNid);
    if (rootInode.type !== S_IFDIR) {
      throw imageError(`root inode is a ${inodeTypeName(rootInode.type)}`, { nid: rootNid });
    }
    const rootRaw = img.xattrs(rootInode);
    if (this.opts.fsck) this.#fsckInode(rootInode, rootRaw, undefined, "");
    const root = newDirectory(statOf(rootInode, rootRaw));
    this.#dirs.add(rootNid);
    const stack: Frame[] = [{
      nid: rootNid,
      parentNid: rootNid,
      inode: rootInode,
      dir: root,
      depth: 0,
      name: "",
    }];
    while (stack.length > 0) {
      const f = stack.pop()!;
      try {
        this.#readDirectory(f, stack);
      } catch (e) {
        if (e instanceof FormatError && !e.context.length) {
          e.within(`directory ${JSON.stringify(framePath(f))}`);
        }
        throw e;
      }
    }
    for (const [nid, rec] of this.#leaves) {
      if (rec.refs !== rec.nlink) {
        throw imageError(
          `${q(rec.f, rec.name)} has nlink ${rec.nlink} but ${rec.refs} directory entries`,
          { nid },
        );
      }
    }
    if (this.opts.fsck) this.#fsckEnd();
    return root;
  }

  #readDirectory(f: Frame, stack: Frame[]): void {
    const img = this.img;
    if (f.depth >= MAX_DIRECTORY_DEPTH) {
      throw imageError(`directories nested deeper than ${MAX_DIRECTORY_DEPTH}`, { nid: f.nid });
    }
    const isRoot = f.nid === img.header.rootNid;
    let prev: string | undefined;
    let dots = 0;
    let subdirs = 0;
    let escapedWhiteouts = false;
    for (const e of img.dirents(f.inode)) {
      checkOrder(f, prev, e);
      prev = e.name;
      if (e.name === "." || e.name === "..") {
        checkDot(f, e);
        dots++;
        continue;
      }
      const child = img.inode(e.nid);
      if (direntFileType(child.type) !== e.fileType) {
        throw imageError(
          `dirent ${JSON.stringify(e.name)} has file type ${e.fileType} but the inode is a ${
            inodeTypeName(child.type)
          }`,
          { nid: f.nid, offset: e.at },
        );
      }
      if (isRoot && HEX2_LOWER.test(e.name)) this.#rootHexSlots.add(e.name);
      if (child.type === S_IFDIR) {
        subdirs++;
        stack.push(this.#subdirectory(f, e, child));
      } else if (this.#leafEntry(f, e, child, isRoot)) {
        escapedWhiteouts = true;
      }
    }
    if (dots !== 2) throw imageError(`directory lacks '.' or '..'`, { nid: f.nid });
    if (escapedWhiteouts) this.#dropWhiteoutDirMarkers(f.dir);
    if (f.inode.nlink !== 2 + subdirs) {
      throw imageError(
        `directory nlink ${f.inode.nlink}, expected ${2 + subdirs} (2 + ${subdirs} subdirectories)`,
        { nid: f.nid },
      );
    }
  }

  /** Enters subdirectory entry `e` of frame `f` into the tree; returns the frame that reads it. */
  #subdirectory(f: Frame, e: RawDirent, child: RawInode): Frame {
    if (this.#dirs.has(e.nid)) {
      throw imageError(`directory ${q(f, e.name)} is linked more than once (cycle?)`, { nid: e.nid });
    }
    this.#dirs.add(e.nid);
    const raw = this.img.xattrs(child);
    if (this.opts.fsck) this.#fsckInode(child, raw, f, e.name);
    const dir = newDirectory(statOf(child, raw));
    f.dir.entries.set(e.name, dir);
    return { nid: e.nid, parentNid: f.nid, inode: child, dir, depth: f.depth + 1, name: e.name, parent: f };
  }

  /** Enters non-directory entry `e` (a leaf, once per nid; hard links share it). Returns whether
   *  it is an escaped whiteout met for the first time. */
  #leafEntry(f: Frame, e: RawDirent, child: RawInode, isRoot: boolean): boolean {
    let rec = this.#leaves.get(e.nid);
    let escaped = false;
    if (!rec) {
      const raw = this.img.xattrs(child);
      const wo = whiteoutKind(child, raw);
      if (wo !== "none" && child.nlink !== 1) {
        throw imageError(`whiteout ${q(f, e.name)} has nlink ${child.nlink} (hard-linked whiteout)`, {
          nid: e.nid,
        });
      }
      if (this.opts.fsck) this.#fsckInode(child, raw, f, e.name, wo, isRoot);
      escaped = wo === "escaped";
      // Root entries named like a stub slot that are whiteouts form the overlay stub table.
      const skip = isRoot && wo !== "none" && HEX2_ANY_CASE.test(e.name);
      rec = {
        leaf: skip ? undefined : this.#leaf(child, raw, wo, f, e.name),
        nlink: child.nlink,
        refs: 0,
        f,
        name: e.name,
      };
      this.#leaves.set(e.nid, rec);
    }
    rec.refs++;
    if (rec.leaf) f.dir.entries.set(e.name, rec.leaf);
    return escaped;
  }

  /** The markers the writer puts on a directory holding escaped whiteouts (C add_overlayfs_xattrs). */
  #dropWhiteoutDirMarkers(dir: Directory): void {
    const x = dir.stat.xattrs;
    for (const name of WHITEOUT_DIR_XATTRS) x.delete(name);
    if (this.img.header.composefsVersion >= 1) {
      for (const name of WHITEOUT_DIR_OPAQUE_XATTRS) {
        const v = x.get(name);
        if (v !== undefined && v.length === 1 && v[0] === 0x78) x.delete(name);
      }
    }
  }

  #leaf(inode: RawInode, raw: RawXattr[], wo: Whiteout, f: Frame, name: string): Leaf {
    const nid = inode.nid;
    let content: LeafContent;
    switch (inode.type) {
      case S_IFREG:
        content = wo === "escaped" ? { type: "chardev", rdev: 0 } : this.#regular(inode, raw, f, name);
        break;
      case S_IFLNK: {
        if (inode.size === 0 || inode.size > MAX_SYMLINK_TARGET_C) {
          throw imageError(`symlink ${q(f, name)} has a target of ${inode.size} bytes`, { nid });
        }
        const data = this.img.data(inode);
        if (data.includes(0)) {
          throw imageError(`symlink ${q(f, name)} target contains a NUL byte`, { nid });
        }
        content = { type: "symlink", target: String.fromCharCode.apply(null, data as unknown as number[]) };
        break;
      }
      case S_IFCHR:
        content = { type: "chardev", rdev: inode.iU };
        break;
      case S_IFBLK:
        content = { type: "blockdev", rdev: inode.iU };
        break;
      case S_IFIFO:
        content = { type: "fifo" };
        break;
      default:
        content = { type: "socket" };
    }
    return newLeaf(statOf(inode, raw, wo === "escaped"), content);
  }

  #regular(inode: RawInode, raw: RawXattr[], f: Frame, name: string): LeafContent {
    const nid = inode.nid;
    const meta = find(raw, XATTR_METACOPY);
    const redirect = find(raw, XATTR_REDIRECT);
    const v = redirect?.value;
    if (v && (v.length <= (v[0] === 0x2f ? 1 : 0) || v.includes(0))) {
      throw imageError(`${q(f, name)} has an empty or NUL-containing overlay redirect`, { nid });
    }
    if (meta || inode.layout === DATALAYOUT_CHUNK_BASED) {
      // Stored outside the image: a metacopy digest makes it an object; without one (C mkcomposefs
      // accepts dumpfiles without digests) only the size and the redirect target are known.
      if (meta && meta.value.length > 0) {
        const id = this.#metacopy(meta.value, f, name, nid);
        return v && !isObjectRedirect(v, id.bytes)
          ? { type: "external", id, size: inode.size, payload: redirectPayload(v) }
          : { type: "external", id, size: inode.size };
      }
      return v
        ? { type: "external-noverity", size: inode.size, payload: redirectPayload(v) }
        : { type: "external-noverity", size: inode.size };
    }
    if (redirect) {
      throw imageError(`${q(f, name)} has an overlay redirect but inline data`, { nid });
    }
    if (inode.size > MAX_INLINE_CONTENT_C) {
      throw imageError(
        `inline file ${q(f, name)} is ${inode.size} bytes (max ${MAX_INLINE_CONTENT_C})`,
        {
          nid,
        },
      );
    }
    return { type: "inline", data: this.img.data(inode) };
  }

  #metacopy(v: Uint8Array, f: Frame, name: string, nid: number): ObjectId {
    const bad = (why: string) =>
      imageError(`malformed trusted.overlay.metacopy on ${q(f, name)}: ${why}`, { nid });
    if (v.length < METACOPY_HEADER_SIZE) throw bad(`${v.length} bytes`);
    const m = OvlMetacopy.read(viewOf(v), 0);
    if (m.version !== METACOPY_VERSION) throw bad(`version ${m.version}`);
    if (m.flags !== 0) throw bad(`flags ${m.flags}`);
    let alg: HashAlgorithm;
    try {
      alg = algorithmFromKernelId(m.digestAlgo);
    } catch {
      throw bad(`digest algorithm ${m.digestAlgo}`);
    }
    const len = METACOPY_HEADER_SIZE + DIGEST_SIZE[alg];
    if (m.len !== len || v.length !== len) {
      throw bad(`length ${m.len}/${v.length}, expected ${len}`);
    }
    if (this.#alg === undefined) this.#alg = alg;
    else if (alg !== this.#alg) throw bad(`${alg} digest where ${this.#alg} is expected`);
    return new ObjectId(alg, v.slice(METACOPY_HEADER_SIZE));
  }

  // -------------------------------------------------------------------------------------------
  // fsck_metadata: layout-epoch invariants

  #fsckInode(
    inode: RawInode,
    raw: RawXattr[],
    f: Frame | undefined,
    name: string,
    wo: Whiteout = "none",
    inRoot = false,
  ): void {
    const path = () => (f ? q(f, name) : '"/"');
    const img = this.img;
    const nid = inode.nid;
    const epoch = img.header.epoch;
    if (epoch === 1 && wo === "native" && !inRoot) {
      throw imageError(
        `epoch 1 image has a native whiteout outside the root stub table: ${path()}`,
        { nid },
      );
    }
    if (epoch === 2 && wo === "escaped") {
      throw imageError(`V2 image has an escaped (V1-style) whiteout: ${path()}`, { nid });
    }
    // Kernels before 6.12 refuse a fast symlink whose inode, xattrs and target cross a block.
    if (epoch === 1 && inode.type === S_IFLNK && inode.layout === DATALAYOUT_FLAT_INLINE) {
      const tail = inode.size % BLOCK_SIZE;
      const end = (inode.offset % BLOCK_SIZE) + inode.headerSize + inode.xattrSize + tail;
      if (tail > 0 && end > BLOCK_SIZE) {
        throw imageError(
          `symlink ${path()} inode and target cross a block boundary (${end} > ${BLOCK_SIZE})`,
          {
            nid,
            offset: inode.offset,
          },
        );
      }
    }
    // The xattr bloom filter: a set bit promises the kernel the xattr is absent.
    if ((img.header.featureCompat & FEATURE_COMPAT_XATTR_FILTER) !== 0 && inode.xattrSize > 0) {
      const filter = img.nameFilter(inode);
      for (const x of raw) {
        const bit = x.bloomBit ??= xxh32Bstr(x.suffix, (XATTR_BLOOM_SEED + x.index) >>> 0) %
          XATTR_FILTER_BITS;
        if ((filter >>> bit) & 1) {
          throw imageError(`xattr bloom filter of ${path()} hides ${JSON.stringify(x.name)}`, {
            nid,
          });
        }
      }
    }
  }

  #fsckEnd(): void {
    if (this.img.header.epoch === 1 && this.#rootHexSlots.size !== 256) {
      throw imageError(`epoch 1 root has ${this.#rootHexSlots.size} of the 256 whiteout stub slots 00..ff`);
    }
  }
}
