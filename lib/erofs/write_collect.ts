// Turns a file tree into the EROFS inode table (spec §5.10): one record per inode in table order,
// with the xattrs the image will carry (overlay escaping, metacopy/redirect, whiteout handling) and
// directory entries. The caller's tree is never modified: stubs and escapes live in the records.
//
// Epoch 1 (V0/V1) reproduces C mkcomposefs 1.0.8: BFS order, whiteout stubs 00..ff in the root,
// user whiteouts escaped; hard-linked leaves get their inode where the canonical occurrence is.
// V2 reproduces composefs-rs: DFS pre-order, no stubs, whiteouts stay character devices.
import { FormatError } from "../errors.ts";
import { KERNEL_ALG_ID } from "../fsverity/object_id.ts";
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
  METACOPY_HEADER_SIZE,
  METACOPY_VERSION,
  OPAQUE_ROOT_VALUE,
  OPAQUE_WHITEOUTS_VALUE,
  OVERLAY_ESCAPED_PREFIX,
  OVERLAY_XATTR_PREFIX,
  XATTR_ESCAPED_OPAQUE,
  XATTR_ESCAPED_WHITEOUT,
  XATTR_ESCAPED_WHITEOUTS,
  XATTR_METACOPY,
  XATTR_OPAQUE,
  XATTR_REDIRECT,
  XATTR_SELINUX,
  XATTR_USER_OPAQUE,
  XATTR_USER_WHITEOUT,
  XATTR_USER_WHITEOUTS,
} from "./format.ts";

/** A directory entry of the image: target is resolved to a record once every inode exists. */
export interface WDirent {
  name: string;
  target: WInode | Leaf;
}

/** One inode of the image, in table order. */
export interface WInode {
  /** S_IF* file-type bits as written (an escaped whiteout is S_IFREG). */
  type: number;
  stat: Stat;
  nlink: number;
  /** xattrs by name (escaped), as they will be stored; turned into a list by the writer. */
  xattrs: Map<string, Uint8Array>;
  /** V2 only: the insertion order of `xattrs` is the on-disk local order. */
  content: LeafContent | null; // null for directories
  dirents: WDirent[] | null; // directories only, sorted by name, with "." and ".."
  /** Filled by the writer's layout pass. */
  nid: number;
}

export interface Collected {
  inodes: WInode[];
  /** Some user whiteout (chr 0:0) exists (drives the V0 → 1 version bump). */
  hasWhiteout: boolean;
}

const EMPTY = new Uint8Array(0);
const HEX = "0123456789abcdef";

function escapeName(name: string): string {
  return name.startsWith(OVERLAY_XATTR_PREFIX)
    ? OVERLAY_ESCAPED_PREFIX + name.slice(OVERLAY_XATTR_PREFIX.length)
    : name;
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

/** Size of an external regular file, or -1 when the leaf is not external. */
export function externalSize(c: LeafContent): number {
  return c.type === "external" || c.type === "external-noverity" ? c.size : -1;
}

/** Synthetic overlay xattrs of an external file: metacopy (digest, or empty without one), redirect. */
function overlayDataXattrs(c: LeafContent): [string, Uint8Array][] {
  if (c.type === "external") {
    const d = c.id.bytes;
    const v = new Uint8Array(METACOPY_HEADER_SIZE + d.length);
    v[0] = METACOPY_VERSION;
    v[1] = v.length;
    v[2] = 0;
    v[3] = KERNEL_ALG_ID[c.id.alg];
    v.set(d, METACOPY_HEADER_SIZE);
    const path = c.payload ?? c.id.objectPath();
    const out: [string, Uint8Array][] = [[XATTR_METACOPY, v]];
    if (path.length > 0) out.push([XATTR_REDIRECT, bstrToBytes("/" + path)]);
    return out;
  }
  if (c.type === "external-noverity") {
    const out: [string, Uint8Array][] = [[XATTR_METACOPY, EMPTY]];
    if (c.payload) out.push([XATTR_REDIRECT, bstrToBytes("/" + c.payload)]);
    return out;
  }
  return [];
}

interface Prepass {
  /** Number of directory entries referencing each leaf that is referenced more than once. */
  refs: Map<Leaf, number>;
  /** Where the inode of a multi-referenced leaf is created (epoch 1): its canonical entry. */
  canonical: Map<Leaf, { dir: Directory; name: string }>;
  /** Each directory's entries sorted by name (computed once). */
  sorted: Map<Directory, [string, Inode][]>;
  hasWhiteout: boolean;
}

function byName(a: [string, unknown], b: [string, unknown]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

/**
 * Name-ordered DFS over the tree: reference counts, the canonical occurrence of hard-linked
 * leaves (the entry at `leaf.canonicalPath` when given, else the first in DFS order), whiteouts.
 */
function prepass(root: Directory): Prepass {
  const seen = new Map<Leaf, number>();
  const first = new Map<Leaf, { dir: Directory; name: string }>();
  const byPath = new Map<Leaf, { dir: Directory; name: string }>();
  const sorted = new Map<Directory, [string, Inode][]>();
  let hasWhiteout = false;
  const walk = (dir: Directory, path: string): void => {
    const entries = [...dir.entries].sort(byName);
    sorted.set(dir, entries);
    for (const [name, node] of entries) {
      if (node.kind === "dir") {
        walk(node, path + "/" + name);
        continue;
      }
      const n = seen.get(node);
      if (n === undefined) {
        seen.set(node, 1);
        first.set(node, { dir, name });
        if (isWhiteout(node.content)) hasWhiteout = true;
      } else {
        seen.set(node, n + 1);
      }
      if (node.canonicalPath !== undefined && node.canonicalPath === path + "/" + name) {
        byPath.set(node, { dir, name });
      }
    }
  };
  walk(root, "");
  const refs = new Map<Leaf, number>();
  const canonical = new Map<Leaf, { dir: Directory; name: string }>();
  for (const [leaf, n] of seen) {
    if (n < 2) continue;
    if (isWhiteout(leaf.content)) {
      throw new FormatError("invalid composefs filesystem: a whiteout (char device 0:0) is hard-linked");
    }
    refs.set(leaf, n);
    canonical.set(leaf, byPath.get(leaf) ?? first.get(leaf)!);
  }
  return { refs, canonical, sorted, hasWhiteout };
}

function dirInode(stat: Stat, xattrs: Map<string, Uint8Array>): WInode {
  return { type: S_IFDIR, stat, nlink: 2, xattrs, content: null, dirents: null, nid: 0 };
}

function sortDirents(d: WDirent[]): WDirent[] {
  return d.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Epoch 1 xattrs of a node: own xattrs escaped, then the synthetic ones (they win on a clash). */
function epoch1Xattrs(stat: Stat, content: LeafContent | null): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  for (const [k, v] of stat.xattrs) m.set(escapeName(k), v);
  if (content !== null && externalSize(content) > 0) {
    for (const [k, v] of overlayDataXattrs(content)) m.set(k, v);
  }
  return m;
}

/**
 * Epoch 1 collection (C `lcfs_compute_tree` order). `composefsVersion` ≥ 1 adds the opaque=x
 * markers to directories holding escaped whiteouts.
 */
export function collectEpoch1(root: Directory, composefsVersion: number): Collected {
  const pre = prepass(root);
  const inodes: WInode[] = [];
  const leafInode = new Map<Leaf, WInode>();
  let deferred = false;

  const rootInode = dirInode(root.stat, epoch1Xattrs(root.stat, null));
  rootInode.xattrs.set(XATTR_OPAQUE, bstrToBytes(OPAQUE_ROOT_VALUE));
  inodes.push(rootInode);

  // Whiteout stubs 00..ff for names the root does not already use (never escaped).
  const stubs: [string, Inode][] = [];
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
    stubs.push([name, { kind: "leaf", stat, content: { type: "chardev", rdev: 0 } }]);
  }
  const stubSet = new Set(stubs.map((s) => s[1]));

  const queue: [Directory, WInode, WInode][] = [[root, rootInode, rootInode]];
  for (let qi = 0; qi < queue.length; qi++) {
    const [dir, me, parent] = queue[qi];
    let entries = pre.sorted.get(dir)!;
    if (dir === root && stubs.length > 0) entries = [...entries, ...stubs].sort(byName);
    const dirents: WDirent[] = [{ name: ".", target: me }, { name: "..", target: parent }];
    let hasWhiteoutChild = false;
    for (const [name, node] of entries) {
      if (node.kind === "dir") {
        const child = dirInode(node.stat, epoch1Xattrs(node.stat, null));
        inodes.push(child);
        me.nlink++;
        queue.push([node, child, me]);
        dirents.push({ name, target: child });
        continue;
      }
      const refs = pre.refs.get(node);
      if (refs !== undefined) {
        const canon = pre.canonical.get(node)!;
        if (canon.dir !== dir || canon.name !== name) {
          const known = leafInode.get(node);
          if (known === undefined) deferred = true;
          dirents.push({ name, target: known ?? node });
          continue;
        }
      }
      let type = leafType(node.content);
      const xattrs = stubSet.has(node) ? new Map(node.stat.xattrs) : epoch1Xattrs(node.stat, node.content);
      if (type === S_IFCHR && isWhiteout(node.content) && !stubSet.has(node)) {
        type = S_IFREG;
        xattrs.set(XATTR_ESCAPED_WHITEOUT, EMPTY);
        xattrs.set(XATTR_USER_WHITEOUT, EMPTY);
        hasWhiteoutChild = true;
      }
      const child: WInode = {
        type,
        stat: node.stat,
        nlink: refs ?? 1,
        xattrs,
        content: node.content,
        dirents: null,
        nid: 0,
      };
      inodes.push(child);
      if (refs !== undefined) leafInode.set(node, child);
      dirents.push({ name, target: child });
    }
    if (hasWhiteoutChild) {
      me.xattrs.set(XATTR_ESCAPED_WHITEOUTS, EMPTY);
      me.xattrs.set(XATTR_USER_WHITEOUTS, EMPTY);
      if (composefsVersion >= 1) {
        const x = bstrToBytes(OPAQUE_WHITEOUTS_VALUE);
        me.xattrs.set(XATTR_ESCAPED_OPAQUE, x);
        me.xattrs.set(XATTR_USER_OPAQUE, x);
      }
    }
    me.dirents = sortDirents(dirents);
  }
  if (deferred) resolveDeferred(inodes, leafInode);
  return { inodes, hasWhiteout: pre.hasWhiteout };
}

/** V2 collection (composefs-rs): DFS pre-order; a hard-linked leaf's inode comes at first sight. */
export function collectV2(root: Directory): Collected {
  const pre = prepass(root);
  const inodes: WInode[] = [];
  const leafInode = new Map<Leaf, WInode>();

  const v2Xattrs = (stat: Stat, content: LeafContent | null): Map<string, Uint8Array> => {
    const m = new Map<string, Uint8Array>();
    if (content !== null) { for (const [k, v] of overlayDataXattrs(content)) m.set(k, v); }
    const own = [...stat.xattrs].sort(byName);
    for (const [k, v] of own) m.set(escapeName(k), v);
    return m;
  };

  const visit = (dir: Directory, parent: WInode | null): WInode => {
    const me = dirInode(dir.stat, v2Xattrs(dir.stat, null));
    inodes.push(me);
    const dirents: WDirent[] = [{ name: ".", target: me }, { name: "..", target: parent ?? me }];
    for (const [name, node] of pre.sorted.get(dir)!) {
      if (node.kind === "dir") {
        me.nlink++;
        dirents.push({ name, target: visit(node, me) });
        continue;
      }
      let child = leafInode.get(node);
      if (child === undefined) {
        const refs = pre.refs.get(node) ?? 1;
        child = {
          type: leafType(node.content),
          stat: node.stat,
          nlink: refs,
          xattrs: v2Xattrs(node.stat, node.content),
          content: node.content,
          dirents: null,
          nid: 0,
        };
        inodes.push(child);
        if (refs > 1) leafInode.set(node, child);
      }
      dirents.push({ name, target: child });
    }
    me.dirents = sortDirents(dirents);
    return me;
  };
  visit(root, null);
  return { inodes, hasWhiteout: pre.hasWhiteout };
}

function resolveDeferred(inodes: WInode[], leafInode: Map<Leaf, WInode>): void {
  for (const ino of inodes) {
    if (ino.dirents === null) continue;
    for (const d of ino.dirents) {
      if ("kind" in d.target) {
        const t = leafInode.get(d.target);
        if (t === undefined) throw new FormatError(`hard link ${JSON.stringify(d.name)} has no inode`);
        d.target = t;
      }
    }
  }
}
