// The file tree as columns (docs/dumpfile.md#flat): what the dumpfile parser builds and the EROFS writer
// reads. A tree of 64k entries as objects (node, stat, content, a Map per directory) costs ~25 MiB of
// heap and the allocation work with it; as typed arrays it costs a few MiB. flatToTree/treeToFlat
// convert to and from the object tree of tree.ts, which every other part of the program uses.
//
// Entry e (0 = the root) is one directory entry: its parent, its name, and the entry owning its inode
// (ino[e]: e itself, or another entry for a hard link). An inode's fields live at its owner's index.
// The owner of a hard-linked inode is its canonical entry: the C mkcomposefs places the inode there
// (a dumpfile's full, non-`@` line; in a tree, Leaf.canonicalPath or the first in name order).
import type { ObjectId } from "../fsverity/object_id.ts";
import {
  type Directory,
  type Inode,
  type Leaf,
  type LeafContent,
  leafTypeBits,
  NO_XATTRS,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  type Stat,
} from "./tree.ts";

/** How a regular file's content is held (FlatTree.kind). */
export const REG_INLINE = 0;
export const REG_EXTERNAL = 1;
export const REG_NOVERITY = 2;

const INITIAL = 1024;

function grown<T extends Int32Array | Uint32Array | Uint8Array | Float64Array>(a: T, n: number): T {
  if (n <= a.length) return a;
  const b = new (a.constructor as { new (n: number): T })(Math.max(n, a.length * 2));
  b.set(a);
  return b;
}

export class FlatTree {
  count = 0;
  /** Every name is a valid file name (1..255 bytes, no "/" or NUL, not "." or ".."): the dumpfile
   *  parser checks them; the EROFS writer checks the others. */
  namesChecked = false;
  /** Parent entry (-1 for the root). */
  parent = new Int32Array(INITIAL);
  /** Entry name (byte string), "" for the root. */
  name: string[] = [];
  /** Entry owning this entry's inode. */
  ino = new Int32Array(INITIAL);
  // Children of directory entries, in the order added; `unsorted` when not in byte order of names.
  firstChild = new Int32Array(INITIAL);
  lastChild = new Int32Array(INITIAL);
  nextSibling = new Int32Array(INITIAL);
  unsorted = new Uint8Array(INITIAL);
  /** Entries left out (mkcomposefs --skip-devices); they and their hard links are not written. */
  removed = new Uint8Array(INITIAL);
  // ---- inode fields, at the owner's index
  /** Full st_mode: file type and permission bits. */
  mode = new Uint32Array(INITIAL);
  uid = new Uint32Array(INITIAL);
  gid = new Uint32Array(INITIAL);
  /** Seconds; beyond ±(2^53 − 1) the nearest double, the exact value in mtimeExact. */
  mtimeSec = new Float64Array(INITIAL);
  mtimeExact = new Map<number, bigint>();
  mtimeNsec = new Uint32Array(INITIAL);
  /** Regular files: REG_INLINE, REG_EXTERNAL (id, text = backing path when not id's) or REG_NOVERITY. */
  kind = new Uint8Array(INITIAL);
  /** Regular files: size in bytes. */
  size = new Float64Array(INITIAL);
  /** Character and block devices. */
  rdev = new Float64Array(INITIAL);
  /** Symlink target; an external file's backing path (dumpfile PAYLOAD) when given. */
  text: (string | undefined)[] = [];
  id: (ObjectId | undefined)[] = [];
  /** Inline content of regular files that have some. */
  inline: (Uint8Array | undefined)[] = [];
  /** Own xattrs (NO_XATTRS when none). */
  xattrs: Map<string, Uint8Array>[] = [];

  /** Adds an entry under `parent` (-1: the root) owning its own inode; returns its index. */
  add(parent: number, name: string, mode: number): number {
    const e = this.count++;
    if (e >= this.parent.length) this.#grow(e + 1);
    this.parent[e] = parent;
    this.name.push(name);
    this.ino[e] = e;
    this.firstChild[e] = -1;
    this.lastChild[e] = -1;
    this.nextSibling[e] = -1;
    this.mode[e] = mode;
    this.text.push(undefined);
    this.id.push(undefined);
    this.inline.push(undefined);
    this.xattrs.push(NO_XATTRS);
    if (parent >= 0) {
      const last = this.lastChild[parent];
      if (last < 0) this.firstChild[parent] = e;
      else {
        this.nextSibling[last] = e;
        if (!(this.name[last] < name)) this.unsorted[parent] = 1;
      }
      this.lastChild[parent] = e;
    }
    return e;
  }

  #grow(n: number): void {
    this.parent = grown(this.parent, n);
    this.ino = grown(this.ino, n);
    this.firstChild = grown(this.firstChild, n);
    this.lastChild = grown(this.lastChild, n);
    this.nextSibling = grown(this.nextSibling, n);
    this.unsorted = grown(this.unsorted, n);
    this.removed = grown(this.removed, n);
    this.mode = grown(this.mode, n);
    this.uid = grown(this.uid, n);
    this.gid = grown(this.gid, n);
    this.mtimeSec = grown(this.mtimeSec, n);
    this.mtimeNsec = grown(this.mtimeNsec, n);
    this.kind = grown(this.kind, n);
    this.size = grown(this.size, n);
    this.rdev = grown(this.rdev, n);
  }

  /** File-type bits of entry e's inode. */
  type(e: number): number {
    return this.mode[this.ino[e]] & S_IFMT;
  }

  /** Children of directory entry e (removed ones included), in byte order of their names. */
  children(e: number): number[] {
    const out: number[] = [];
    for (let c = this.firstChild[e]; c >= 0; c = this.nextSibling[c]) out.push(c);
    if (this.unsorted[e]) out.sort((a, b) => (this.name[a] < this.name[b] ? -1 : 1));
    return out;
  }

  /** The child of directory entry e named `name`, or -1 (a walk over its children). */
  child(e: number, name: string): number {
    for (let c = this.firstChild[e]; c >= 0; c = this.nextSibling[c]) if (this.name[c] === name) return c;
    return -1;
  }

  /** Absolute path of entry e (byte string; "/" for the root). */
  path(e: number): string {
    const parts: string[] = [];
    for (let x = e; x > 0; x = this.parent[x]) parts.push(this.name[x]);
    return "/" + parts.reverse().join("/");
  }

  /** Exact mtime seconds of the inode owned by entry e. */
  mtimeSeconds(e: number): bigint {
    return this.mtimeExact.get(e) ?? BigInt(this.mtimeSec[e]);
  }
}

// ---- object tree ↔ columns ------------------------------------------------------------------------

function statOf(t: FlatTree, e: number): Stat {
  const exact = t.mtimeExact.get(e);
  const xattrs = t.xattrs[e];
  const mode = t.mode[e] & 0o7777, uid = t.uid[e], gid = t.gid[e], mtimeNsec = t.mtimeNsec[e];
  return exact === undefined
    ? { mode, uid, gid, mtimeSec: t.mtimeSec[e], mtimeNsec, xattrs }
    : { mode, uid, gid, mtimeSec: t.mtimeSec[e], mtimeSecExact: exact, mtimeNsec, xattrs };
}

function contentOf(t: FlatTree, e: number): LeafContent {
  switch (t.mode[e] & S_IFMT) {
    case S_IFREG: {
      const size = t.size[e], payload = t.text[e];
      if (t.kind[e] === REG_INLINE) return { type: "inline", data: t.inline[e] ?? new Uint8Array(0) };
      if (t.kind[e] === REG_EXTERNAL) {
        const id = t.id[e]!;
        return payload === undefined
          ? { type: "external", id, size }
          : { type: "external", id, size, payload };
      }
      return payload === undefined
        ? { type: "external-noverity", size }
        : { type: "external-noverity", size, payload };
    }
    case S_IFLNK:
      return { type: "symlink", target: t.text[e]! };
    case S_IFCHR:
      return { type: "chardev", rdev: t.rdev[e] };
    case S_IFBLK:
      return { type: "blockdev", rdev: t.rdev[e] };
    case S_IFIFO:
      return { type: "fifo" };
    default:
      return { type: "socket" };
  }
}

/**
 * The object tree of a flat one. Directory entries keep the order they were added in; a leaf owned
 * by an entry that other entries link to gets canonicalPath = its owner's path. Removed entries are
 * left out.
 */
export function flatToTree(t: FlatTree): Directory {
  const nodes: (Inode | undefined)[] = new Array(t.count);
  const linked = new Uint8Array(t.count);
  for (let e = 0; e < t.count; e++) {
    if (t.ino[e] !== e) linked[t.ino[e]] = 1;
  }
  for (let e = 0; e < t.count; e++) {
    if (t.ino[e] !== e) continue;
    const stat = statOf(t, e);
    if ((t.mode[e] & S_IFMT) === S_IFDIR) {
      nodes[e] = { kind: "dir", stat, entries: new Map() };
    } else {
      const leaf: Leaf = { kind: "leaf", stat, content: contentOf(t, e) };
      if (linked[e]) leaf.canonicalPath = t.path(e);
      nodes[e] = leaf;
    }
  }
  for (let e = 1; e < t.count; e++) {
    if (t.removed[e] || t.removed[t.ino[e]]) continue;
    (nodes[t.parent[e]] as Directory).entries.set(t.name[e], nodes[t.ino[e]]!);
  }
  return nodes[0] as Directory;
}

/** The per-entry inode columns a stat and a leaf's content fill: FlatTree's and the EROFS inode table's. */
export interface InodeColumns {
  uid: Uint32Array;
  gid: Uint32Array;
  mtimeSec: Float64Array;
  mtimeExact: Map<number, bigint>;
  mtimeNsec: Uint32Array;
  xattrs: Map<string, Uint8Array>[];
  kind: Uint8Array;
  size: Float64Array;
  rdev: Float64Array;
  text: (string | undefined)[];
  id: (ObjectId | undefined)[];
  inline: (Uint8Array | undefined)[];
}

/** Copies a stat (owner, mtime, xattrs) and a leaf's content into the inode columns of entry e. */
export function setInodeColumns(t: InodeColumns, e: number, stat: Stat, content: LeafContent | null): void {
  t.uid[e] = stat.uid;
  t.gid[e] = stat.gid;
  t.mtimeSec[e] = stat.mtimeSec;
  if (stat.mtimeSecExact !== undefined) t.mtimeExact.set(e, stat.mtimeSecExact);
  t.mtimeNsec[e] = stat.mtimeNsec;
  t.xattrs[e] = stat.xattrs;
  if (content === null) return;
  switch (content.type) {
    case "inline":
      t.kind[e] = REG_INLINE;
      t.size[e] = content.data.length;
      if (content.data.length > 0) t.inline[e] = content.data;
      return;
    case "external":
      t.kind[e] = REG_EXTERNAL;
      t.size[e] = content.size;
      t.id[e] = content.id;
      t.text[e] = content.payload;
      return;
    case "external-noverity":
      t.kind[e] = REG_NOVERITY;
      t.size[e] = content.size;
      t.text[e] = content.payload;
      return;
    case "symlink":
      t.text[e] = content.target;
      return;
    case "chardev":
    case "blockdev":
      t.rdev[e] = content.rdev;
  }
}

/** The leaves referenced by more than one entry, with the entry that is to own each (see top). */
function canonicalOwners(
  t: FlatTree,
  leafOf: Map<number, Leaf>,
  shared: Map<Leaf, number[]>,
): Map<Leaf, number> {
  const owner = new Map<Leaf, number>();
  const walk = (dir: number, path: string): void => {
    for (const c of t.children(dir)) {
      const p = path + "/" + t.name[c];
      if ((t.mode[c] & S_IFMT) === S_IFDIR) {
        walk(c, p);
        continue;
      }
      const leaf = leafOf.get(c);
      if (leaf === undefined || !shared.has(leaf)) continue;
      if (!owner.has(leaf)) owner.set(leaf, c);
      if (leaf.canonicalPath === p) owner.set(leaf, -1 - c); // marked: found by path, final
    }
  };
  walk(0, "");
  for (const [leaf, o] of owner) owner.set(leaf, o < 0 ? -1 - o : o);
  return owner;
}

/** The flat form of an object tree (hard links: one inode, owned by the canonical entry). */
export function treeToFlat(root: Directory): FlatTree {
  const t = new FlatTree();
  const first = new Map<Leaf, number>();
  const shared = new Map<Leaf, number[]>();
  const leafOf = new Map<number, Leaf>();
  t.add(-1, "", S_IFDIR | root.stat.mode);
  setInodeColumns(t, 0, root.stat, null);
  const stack: [Directory, number][] = [[root, 0]];
  while (stack.length > 0) {
    const [dir, de] = stack.pop()!;
    for (const [name, node] of dir.entries) {
      if (node.kind === "dir") {
        const e = t.add(de, name, S_IFDIR | node.stat.mode);
        setInodeColumns(t, e, node.stat, null);
        stack.push([node, e]);
        continue;
      }
      const e = t.add(de, name, leafTypeBits(node.content) | node.stat.mode);
      const seen = first.get(node);
      if (seen === undefined) {
        first.set(node, e);
        setInodeColumns(t, e, node.stat, node.content);
        continue;
      }
      let list = shared.get(node);
      if (list === undefined) shared.set(node, list = [seen]);
      list.push(e);
      leafOf.set(seen, node).set(e, node);
    }
  }
  if (shared.size > 0) {
    for (const [leaf, o] of canonicalOwners(t, leafOf, shared)) {
      for (const e of shared.get(leaf)!) t.ino[e] = o;
      setInodeColumns(t, o, leaf.stat, leaf.content);
    }
  }
  return t;
}
