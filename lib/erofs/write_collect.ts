// Turns a file tree into the EROFS inode table (spec §5.10): one record per inode in table order,
// with the synthetic xattrs the image adds (metacopy/redirect, whiteout markers, root opaque) and
// the directory entries. The caller's tree is never modified: stubs and escapes live in records.
//
// Epoch 1 (V0/V1) reproduces C mkcomposefs 1.0.8: BFS order, whiteout stubs 00..ff in the root,
// user whiteouts escaped; hard-linked leaves get their inode where the canonical occurrence is.
// V2 reproduces composefs-rs: DFS pre-order, no stubs, whiteouts stay character devices.
import { FormatError } from "../errors.ts";
import { bstrToBytes } from "../util/bytes.ts";
import type { Directory, Inode, Leaf, LeafContent, Stat } from "../tree/tree.ts";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from "../tree/tree.ts";
import {
  FT_BLKDEV,
  FT_CHRDEV,
  FT_DIR,
  FT_FIFO,
  FT_REG_FILE,
  FT_SOCK,
  FT_SYMLINK,
  OPAQUE_ROOT_VALUE,
  OPAQUE_WHITEOUTS_VALUE,
  XATTR_ESCAPED_OPAQUE,
  XATTR_ESCAPED_WHITEOUT,
  XATTR_ESCAPED_WHITEOUTS,
  XATTR_OPAQUE,
  XATTR_SELINUX,
  XATTR_USER_OPAQUE,
  XATTR_USER_WHITEOUT,
  XATTR_USER_WHITEOUTS,
} from "./format.ts";
import type { XattrEntry, XattrValue } from "./write_xattrs.ts";

/** One inode of the image, in table order, with the writer's layout results. */
export interface WInode {
  /** S_IF* file-type bits as written (an escaped whiteout is S_IFREG). */
  type: number;
  /** stat.xattrs are the node's own xattrs (escaped when written). */
  stat: Stat;
  nlink: number;
  content: LeafContent | null; // null for directories
  /** Synthetic xattrs (final names) other than an external file's metacopy/redirect (the writer
   *  derives those from `content`); they replace own xattrs of the same escaped name. */
  extra: [string, XattrValue][] | null;
  /** Directories: entry names sorted bytewise (with "." and "..") and their targets; a Leaf
   *  target is a hard link whose inode is resolved once the table is complete. */
  names: string[] | null;
  targets: (WInode | Leaf)[] | null;

  // ---- filled by the writer's layout pass
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
  /** Directories: index of the first dirent of the inline tail. */
  tailFrom: number;
  /** Chunk-based files: chunkbits − 12 and number of chunk entries. */
  chunkFormat: number;
  chunkCount: number;
  /** Zero bytes before the inode, its nid, its first data block (if nBlocks > 0). */
  pad: number;
  nid: number;
  blkaddr: number;
}

export interface Collected {
  inodes: WInode[];
  /** Some user whiteout (chr 0:0) exists (drives the V0 → 1 version bump). */
  hasWhiteout: boolean;
}

const HEX = "0123456789abcdef";
// Synthetic values that may meet equal user values under the same escaped name: always bytes.
const EMPTY = new Uint8Array(0);
const OPAQUE_Y = bstrToBytes(OPAQUE_ROOT_VALUE);
const OPAQUE_X = bstrToBytes(OPAQUE_WHITEOUTS_VALUE);

function newInode(type: number, stat: Stat, nlink: number, content: LeafContent | null): WInode {
  return {
    type,
    stat,
    nlink,
    content,
    extra: null,
    names: null,
    targets: null,
    xattrs: [],
    xattrSize: 0,
    nShared: 0,
    compact: false,
    layout: 0,
    size: 0,
    nBlocks: 0,
    tail: 0,
    tailFrom: 0,
    chunkFormat: 0,
    chunkCount: 0,
    pad: 0,
    nid: 0,
    blkaddr: 0,
  };
}

function isWhiteout(c: LeafContent): boolean {
  return c.type === "chardev" && c.rdev === 0;
}

function leafType(c: LeafContent): number {
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

/** Size of an external regular file, or -1 when the content is not external. */
export function externalSize(c: LeafContent): number {
  return c.type === "external" || c.type === "external-noverity" ? c.size : -1;
}

/** Sets a synthetic xattr, replacing an earlier one of the same name. */
function setExtra(ino: WInode, name: string, value: XattrValue): void {
  const x = ino.extra ??= [];
  for (const kv of x) {
    if (kv[0] === name) {
      kv[1] = value;
      return;
    }
  }
  x.push([name, value]);
}

/** A directory's entries in byte order of their names, as parallel arrays. */
interface Sorted {
  names: string[];
  nodes: Inode[];
}

function sortedEntries(dir: Directory): Sorted {
  const names = [...dir.entries.keys()];
  for (let i = 1; i < names.length; i++) {
    if (names[i - 1] > names[i]) {
      names.sort();
      return { names, nodes: names.map((n) => dir.entries.get(n)!) };
    }
  }
  return { names, nodes: [...dir.entries.values()] };
}

interface Prepass {
  /** Number of directory entries referencing each leaf referenced more than once. */
  refs: Map<Leaf, number>;
  /** Each directory's sorted entries (computed once). */
  sorted: Map<Directory, Sorted>;
  hasWhiteout: boolean;
}

/** Walk over the tree: sorted entries, leaves referenced more than once, whiteouts. */
function prepass(root: Directory): Prepass {
  const seen = new Set<Leaf>();
  const refs = new Map<Leaf, number>();
  const sorted = new Map<Directory, Sorted>();
  let hasWhiteout = false;
  const stack: Directory[] = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const entries = sortedEntries(dir);
    sorted.set(dir, entries);
    const nodes = entries.nodes;
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i];
      if (node.kind === "dir") {
        stack.push(node);
      } else if (!seen.has(node)) {
        seen.add(node);
        if (isWhiteout(node.content)) hasWhiteout = true;
      } else {
        refs.set(node, (refs.get(node) ?? 1) + 1);
      }
    }
  }
  for (const leaf of refs.keys()) {
    if (isWhiteout(leaf.content)) {
      throw new FormatError("invalid composefs filesystem: a whiteout (char device 0:0) is hard-linked");
    }
  }
  return { refs, sorted, hasWhiteout };
}

/**
 * The canonical entry of each hard-linked leaf: the one at `leaf.canonicalPath` when given, else
 * the first in a name-ordered depth-first walk.
 */
function canonicalEntries(root: Directory, pre: Prepass): Map<Leaf, { dir: Directory; name: string }> {
  const first = new Map<Leaf, { dir: Directory; name: string }>();
  const byPath = new Map<Leaf, { dir: Directory; name: string }>();
  const walk = (dir: Directory, path: string): void => {
    const { names, nodes } = pre.sorted.get(dir)!;
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i], name = names[i];
      if (node.kind === "dir") {
        walk(node, path + "/" + name);
      } else if (pre.refs.has(node)) {
        if (!first.has(node)) first.set(node, { dir, name });
        if (node.canonicalPath !== undefined && node.canonicalPath === path + "/" + name) {
          byPath.set(node, { dir, name });
        }
      }
    }
  };
  walk(root, "");
  for (const [leaf, loc] of byPath) first.set(leaf, loc);
  return first;
}

/** Inserts "." and ".." into a sorted name list at their byte-order positions. */
function withDots(
  entryNames: string[],
  me: WInode,
  parent: WInode,
  children: (WInode | Leaf)[],
): [string[], (WInode | Leaf)[]] {
  const n = entryNames.length;
  const names: string[] = new Array(n + 2);
  const targets: (WInode | Leaf)[] = new Array(n + 2);
  let o = 0;
  let dot = false, dotdot = false;
  for (let i = 0; i < n; i++) {
    const name = entryNames[i];
    if (!dot && name > ".") {
      names[o] = ".";
      targets[o++] = me;
      dot = true;
    }
    if (!dotdot && name > "..") {
      names[o] = "..";
      targets[o++] = parent;
      dotdot = true;
    }
    names[o] = name;
    targets[o++] = children[i];
  }
  if (!dot) {
    names[o] = ".";
    targets[o++] = me;
  }
  if (!dotdot) {
    names[o] = "..";
    targets[o++] = parent;
  }
  return [names, targets];
}

/**
 * Epoch 1 collection (C `lcfs_compute_tree` order). `composefsVersion` ≥ 1 adds the opaque=x
 * markers to directories holding escaped whiteouts.
 */
export function collectEpoch1(root: Directory, composefsVersion: number): Collected {
  const pre = prepass(root);
  const canonical = pre.refs.size > 0 ? canonicalEntries(root, pre) : new Map();
  const inodes: WInode[] = [];
  const leafInode = new Map<Leaf, WInode>();
  let deferred = false;

  const rootInode = newInode(S_IFDIR, root.stat, 2, null);
  setExtra(rootInode, XATTR_OPAQUE, OPAQUE_Y);
  inodes.push(rootInode);

  // Whiteout stubs 00..ff for names the root does not already use (never escaped).
  const stubs = new Set<Leaf>();
  const stubByName = new Map<string, Leaf>();
  const stubNames: string[] = [];
  const selinux = root.stat.xattrs.get(XATTR_SELINUX);
  for (let i = 0; i < 256; i++) {
    const name = HEX[i >> 4] + HEX[i & 15];
    if (root.entries.has(name)) continue;
    const s = root.stat;
    const xattrs = new Map<string, Uint8Array>();
    if (selinux !== undefined) xattrs.set(XATTR_SELINUX, selinux);
    const stat: Stat = {
      mode: 0o644,
      uid: s.uid,
      gid: s.gid,
      mtimeSec: s.mtimeSec,
      mtimeNsec: s.mtimeNsec,
      xattrs,
    };
    const stub: Leaf = { kind: "leaf", stat, content: { type: "chardev", rdev: 0 } };
    stubs.add(stub);
    stubNames.push(name);
    stubByName.set(name, stub);
  }

  const queue: [Directory, WInode, WInode][] = [[root, rootInode, rootInode]];
  for (let qi = 0; qi < queue.length; qi++) {
    const [dir, me, parent] = queue[qi];
    let { names, nodes } = pre.sorted.get(dir)!;
    if (dir === root && stubNames.length > 0) {
      names = [...names, ...stubNames].sort();
      nodes = names.map((n) => root.entries.get(n) ?? stubByName.get(n)!);
    }
    const children: (WInode | Leaf)[] = new Array(names.length);
    let hasWhiteoutChild = false;
    for (let i = 0; i < names.length; i++) {
      const name = names[i], node = nodes[i];
      if (node.kind === "dir") {
        const child = newInode(S_IFDIR, node.stat, 2, null);
        inodes.push(child);
        me.nlink++;
        queue.push([node, child, me]);
        children[i] = child;
        continue;
      }
      const refs = pre.refs.get(node);
      if (refs !== undefined) {
        const canon = canonical.get(node)!;
        if (canon.dir !== dir || canon.name !== name) {
          const known = leafInode.get(node);
          if (known === undefined) deferred = true;
          children[i] = known ?? node;
          continue;
        }
      }
      const content = node.content;
      const child = newInode(leafType(content), node.stat, refs ?? 1, content);
      if (!stubs.has(node)) {
        if (isWhiteout(content)) {
          child.type = S_IFREG;
          setExtra(child, XATTR_ESCAPED_WHITEOUT, EMPTY);
          setExtra(child, XATTR_USER_WHITEOUT, EMPTY);
          hasWhiteoutChild = true;
        }
      }
      inodes.push(child);
      if (refs !== undefined) leafInode.set(node, child);
      children[i] = child;
    }
    if (hasWhiteoutChild) {
      setExtra(me, XATTR_ESCAPED_WHITEOUTS, EMPTY);
      setExtra(me, XATTR_USER_WHITEOUTS, EMPTY);
      if (composefsVersion >= 1) {
        setExtra(me, XATTR_ESCAPED_OPAQUE, OPAQUE_X);
        setExtra(me, XATTR_USER_OPAQUE, OPAQUE_X);
      }
    }
    [me.names, me.targets] = withDots(names, me, parent, children);
  }
  if (deferred) resolveDeferred(inodes, leafInode);
  return { inodes, hasWhiteout: pre.hasWhiteout };
}

/** V2 collection (composefs-rs): DFS pre-order; a hard-linked leaf's inode comes at first sight. */
export function collectV2(root: Directory): Collected {
  const pre = prepass(root);
  const inodes: WInode[] = [];
  const leafInode = new Map<Leaf, WInode>();

  const visit = (dir: Directory, parent: WInode | null): WInode => {
    const me = newInode(S_IFDIR, dir.stat, 2, null);
    inodes.push(me);
    const { names, nodes } = pre.sorted.get(dir)!;
    const children: WInode[] = new Array(nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i];
      if (node.kind === "dir") {
        me.nlink++;
        children[i] = visit(node, me);
        continue;
      }
      let child = leafInode.get(node);
      if (child === undefined) {
        const refs = pre.refs.get(node) ?? 1;
        child = newInode(leafType(node.content), node.stat, refs, node.content);
        inodes.push(child);
        if (refs > 1) leafInode.set(node, child);
      }
      children[i] = child;
    }
    [me.names, me.targets] = withDots(names, me, parent ?? me, children);
    return me;
  };
  visit(root, null);
  return { inodes, hasWhiteout: pre.hasWhiteout };
}

function resolveDeferred(inodes: WInode[], leafInode: Map<Leaf, WInode>): void {
  for (const ino of inodes) {
    const t = ino.targets;
    if (t === null) continue;
    for (let i = 0; i < t.length; i++) {
      const x = t[i];
      if ("kind" in x) {
        const r = leafInode.get(x);
        if (r === undefined) throw new FormatError(`hard link ${JSON.stringify(ino.names![i])} has no inode`);
        t[i] = r;
      }
    }
  }
}
