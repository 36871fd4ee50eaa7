// The in-memory composefs file tree (docs/dumpfile.md#tree): a root directory owning subdirectories, and
// leaves that may be shared by several directory entries (hard links = the same Leaf object twice).
// Names, symlink targets and xattr names are byte strings (see lib/util/bytes.ts); xattr values are bytes.
import type { ObjectId } from "../fsverity/object_id.ts";
import { InternalError } from "../errors.ts";

export interface Stat {
  /** Permission bits only: st_mode & 0o7777. The file type lives in the node's kind/content. */
  mode: number;
  uid: number;
  gid: number;
  /**
   * Seconds since the epoch; may be negative. Exact within ±(2^53 − 1); EROFS and dumpfiles hold any
   * signed 64-bit value: beyond the safe range `mtimeSecExact` holds it and this is the nearest double.
   * Read exact seconds with mtimeSeconds(), set them with setMtimeSeconds().
   */
  mtimeSec: number;
  /** Only for seconds outside the safe-integer range: the exact value (a signed 64-bit integer). */
  mtimeSecExact?: bigint;
  /** 0..999999999 */
  mtimeNsec: number;
  /** xattr name (byte string) → value. Order of insertion is not significant: writers sort. */
  xattrs: Map<string, Uint8Array>;
}

export type LeafContent =
  | { type: "inline"; data: Uint8Array } // regular file stored in the image (may be empty)
  // Regular file stored as an object. `payload` (dumpfiles only): a backing path that differs from
  // id.objectPath() (C images keep it verbatim in trusted.overlay.redirect); absent = id.objectPath().
  | { type: "external"; id: ObjectId; size: number; payload?: string }
  // Regular file outside the image without a known fs-verity digest (C mkcomposefs accepts these from
  // dumpfiles): `payload` = the dumpfile PAYLOAD (backing path, redirect target); none = sparse (size only).
  | { type: "external-noverity"; size: number; payload?: string }
  | { type: "symlink"; target: string }
  | { type: "chardev"; rdev: number }
  | { type: "blockdev"; rdev: number }
  | { type: "fifo" }
  | { type: "socket" };

export interface Leaf {
  kind: "leaf";
  stat: Stat;
  content: LeafContent;
  /**
   * For hard-linked leaves read from a dumpfile: the absolute path (byte string) of the full,
   * non-`@` line. The C mkcomposefs assigns the inode where that path is met; writers that must be
   * C-identical use it, otherwise the first occurrence in a name-ordered DFS walk is canonical.
   */
  canonicalPath?: string;
}

export interface Directory {
  kind: "dir";
  stat: Stat;
  entries: Map<string, Inode>;
}

export type Inode = Leaf | Directory;

// The file type bits of a mode, re-exported for the rooms that work on trees.
import {
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from "../linux/constants.ts";
export { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK };

/**
 * The xattr map of inodes without xattrs, shared by all of them: a Map per inode costs ~150 bytes
 * and noticeable allocation time on trees of 100k inodes. It is immutable (set/clear throw); code
 * that adds xattrs to a stat it did not create gives it a fresh Map instead.
 */
export const NO_XATTRS: Map<string, Uint8Array> = Object.freeze(
  new (class EmptyXattrs extends Map<string, Uint8Array> {
    override set(name: string): this {
      throw new InternalError(`cannot add xattr ${JSON.stringify(name)} to the shared empty xattr map`);
    }
    override clear(): void {}
  })(),
);

export function newStat(partial: Partial<Stat> = {}): Stat {
  const st: Stat = {
    mode: partial.mode ?? 0,
    uid: partial.uid ?? 0,
    gid: partial.gid ?? 0,
    mtimeSec: partial.mtimeSec ?? 0,
    mtimeNsec: partial.mtimeNsec ?? 0,
    xattrs: partial.xattrs ?? new Map(),
  };
  if (partial.mtimeSecExact !== undefined) setMtimeSeconds(st, partial.mtimeSecExact);
  return st;
}

/** Exact mtime seconds of a stat. */
export function mtimeSeconds(st: Stat): bigint {
  return st.mtimeSecExact ?? BigInt(st.mtimeSec);
}

/** Sets mtime seconds, keeping `mtimeSec`/`mtimeSecExact` consistent. */
export function setMtimeSeconds(st: Stat, sec: number | bigint): void {
  if (typeof sec === "number" || (sec >= -MAX_SAFE_BIG && sec <= MAX_SAFE_BIG)) {
    st.mtimeSec = Number(sec);
    if (st.mtimeSecExact !== undefined) delete st.mtimeSecExact;
  } else {
    st.mtimeSec = Number(sec);
    st.mtimeSecExact = sec;
  }
}

/** Copies the mtime (seconds and nanoseconds) of `from` to `to`. */
export function copyMtime(to: Stat, from: Stat): void {
  setMtimeSeconds(to, mtimeSeconds(from));
  to.mtimeNsec = from.mtimeNsec;
}

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

export function newDirectory(stat: Stat = newStat({ mode: 0o755 })): Directory {
  return { kind: "dir", stat, entries: new Map() };
}

export function newLeaf(stat: Stat, content: LeafContent): Leaf {
  return { kind: "leaf", stat, content };
}

/** File-type bits (S_IF*) of a node. */
export function fileTypeBits(node: Inode): number {
  return node.kind === "dir" ? S_IFDIR : leafTypeBits(node.content);
}

/** File-type bits (S_IF*) of a leaf's content. */
export function leafTypeBits(c: LeafContent): number {
  switch (c.type) {
    case "inline":
    case "external":
    case "external-noverity":
      return S_IFREG;
    case "symlink":
      return S_IFLNK;
    case "chardev":
      return S_IFCHR;
    case "blockdev":
      return S_IFBLK;
    case "fifo":
      return S_IFIFO;
    case "socket":
      return S_IFSOCK;
  }
}

/** Full st_mode (type | permissions). */
export function fullMode(node: Inode): number {
  return fileTypeBits(node) | node.stat.mode;
}

/** Size as stat() reports it for leaves (regular: byte size, symlink: target length, others 0). */
export function leafSize(leaf: Leaf): number {
  const c = leaf.content;
  if (c.type === "inline") return c.data.length;
  if (c.type === "external" || c.type === "external-noverity") return c.size;
  if (c.type === "symlink") return c.target.length;
  return 0;
}

/** Entries of a directory sorted by name in byte order. */
export function sortedEntries(dir: Directory): [string, Inode][] {
  return [...dir.entries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** The root of a tree. A FileSystem is just its root directory. */
export interface FileSystem {
  root: Directory;
}

/** Looks up a path of byte-string components ("/" separated, leading "/" optional). */
export function lookup(root: Directory, path: string): Inode | undefined {
  let node: Inode = root;
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (node.kind !== "dir") return undefined;
    const next: Inode | undefined = node.entries.get(part);
    if (!next) return undefined;
    node = next;
  }
  return node;
}
