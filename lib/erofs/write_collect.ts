// Turns a file tree into the EROFS inode table (docs/erofs.md#order): inodes in table order with their file
// type, link count, synthetic xattrs (whiteout markers, root opaque) and directory entries. The
// caller's tree is never modified: stubs and escapes live in the table.
//
// Epoch 1 (V0/V1) reproduces C mkcomposefs 1.0.8: BFS order, whiteout stubs 00..ff in the root,
// user whiteouts escaped; hard-linked leaves get their inode where the canonical occurrence is.
// V2 reproduces composefs-rs: DFS pre-order, no stubs, whiteouts stay character devices.
//
// The table is column-oriented (typed arrays indexed by inode number) so that trees with hundreds
// of thousands of inodes cost a few arrays, not an object per inode.
import { FormatError } from "../errors.ts";
import type { Directory, Inode, Leaf, LeafContent, Stat } from "../tree/tree.ts";
import { leafTypeBits, S_IFDIR, S_IFREG } from "../tree/tree.ts";
import { bstrToBytes } from "../util/bytes.ts";
import {
  OPAQUE_ROOT_VALUE,
  OPAQUE_WHITEOUTS_VALUE,
  OVERLAY_ESCAPED_PREFIX,
  OVERLAY_XATTR_PREFIX,
  XATTR_ESCAPED_OPAQUE,
  XATTR_ESCAPED_WHITEOUT,
  XATTR_ESCAPED_WHITEOUTS,
  XATTR_OPAQUE,
  XATTR_SELINUX,
  XATTR_USER_OPAQUE,
  XATTR_USER_WHITEOUT,
  XATTR_USER_WHITEOUTS,
} from "./format.ts";

/** The inode table: one slot per inode, in table order (slot 0 = root). */
export class InodeTable {
  count = 0;
  /** S_IF* file-type bits as written (an escaped whiteout is S_IFREG). */
  readonly type: Uint16Array;
  readonly nlink: Uint32Array;
  /** stat.xattrs are the inode's own xattrs (escaped when written). */
  readonly stat: Stat[];
  readonly content: (LeafContent | null)[];
  /** Synthetic xattrs other than an external file's metacopy/redirect (derived from `content`):
   *  final names; an own xattr of the same escaped name is refused when collecting. */
  readonly extra = new Map<number, [string, Uint8Array][]>();
  /** Directories: entry names sorted bytewise (with "." and "..") and the inode of each. */
  readonly dirNames = new Map<number, string[]>();
  readonly dirTargets = new Map<number, number[]>();

  constructor(capacity: number) {
    this.type = new Uint16Array(capacity);
    this.nlink = new Uint32Array(capacity);
    this.stat = new Array(capacity);
    this.content = new Array(capacity);
  }

  add(type: number, stat: Stat, nlink: number, content: LeafContent | null): number {
    const i = this.count++;
    this.type[i] = type;
    this.nlink[i] = nlink;
    this.stat[i] = stat;
    this.content[i] = content;
    return i;
  }

  /** Sets a synthetic xattr, replacing an earlier one of the same name. */
  setExtra(i: number, name: string, value: Uint8Array): void {
    let x = this.extra.get(i);
    if (x === undefined) this.extra.set(i, x = []);
    for (const kv of x) {
      if (kv[0] === name) {
        kv[1] = value;
        return;
      }
    }
    x.push([name, value]);
  }
}

export interface Collected {
  table: InodeTable;
  /** Some user whiteout (chr 0:0) exists (drives the V0 → 1 version bump). */
  hasWhiteout: boolean;
  /** The header's composefs_version. */
  composefsVersion: number;
}

const HEX = "0123456789abcdef";
/** Longest file name (EROFS_NAME_LEN); names never hold "/" or NUL. */
const MAX_NAME = 255;
// Synthetic values that may meet equal user values under the same escaped name: always bytes.
const EMPTY = new Uint8Array(0);
const OPAQUE_Y = bstrToBytes(OPAQUE_ROOT_VALUE);
const OPAQUE_X = bstrToBytes(OPAQUE_WHITEOUTS_VALUE);

function isWhiteout(c: LeafContent): boolean {
  return c.type === "chardev" && c.rdev === 0;
}

/**
 * Refuses an inode whose own xattr, once escaped (trusted.overlay.X → trusted.overlay.overlay.X;
 * user.* as is), has the name of an xattr the writer adds to it (`added`). C 1.0.8 writes such an
 * image, the writer's value silently replacing the entry's own (a directory's own opaque "y"
 * becomes "x"); we refuse, so an image never holds other xattrs than its tree (docs/c-compatibility.md).
 */
function checkAddedXattrs(stat: Stat, path: string, added: readonly string[]): void {
  if (stat.xattrs.size === 0) return;
  for (const own of stat.xattrs.keys()) {
    const stored = own.startsWith(OVERLAY_XATTR_PREFIX)
      ? OVERLAY_ESCAPED_PREFIX + own.slice(OVERLAY_XATTR_PREFIX.length)
      : own;
    if (added.includes(stored)) {
      const why = stored === own ? "" : ` (stored as ${JSON.stringify(stored)})`;
      throw new FormatError(
        `${JSON.stringify(path)}: its own xattr ${JSON.stringify(own)}${why} collides with the one ` +
          `the image format adds there for overlayfs; refusing to write an image that would lose it`,
      );
    }
  }
}

const WHITEOUT_ADDED = [XATTR_ESCAPED_WHITEOUT, XATTR_USER_WHITEOUT];
const WHITEOUT_DIR_ADDED = [XATTR_ESCAPED_WHITEOUTS, XATTR_USER_WHITEOUTS];
const WHITEOUT_DIR_ADDED_V1 = [...WHITEOUT_DIR_ADDED, XATTR_ESCAPED_OPAQUE, XATTR_USER_OPAQUE];

/** Size of an external regular file, or -1 when the content is not external. */
export function externalSize(c: LeafContent): number {
  return c.type === "external" || c.type === "external-noverity" ? c.size : -1;
}

/** Names of a directory in byte order (sorted only when the tree did not already keep them so). */
function sortedNames(dir: Directory): string[] {
  const names = [...dir.entries.keys()];
  for (let i = 1; i < names.length; i++) {
    if (names[i - 1] > names[i]) return names.sort();
  }
  return names;
}

interface Prepass {
  /** Number of directory entries referencing each leaf referenced more than once. */
  refs: Map<Leaf, number>;
  /** Inodes the table will hold (without epoch 1 stubs). */
  inodes: number;
  hasWhiteout: boolean;
}

/** Walk over the tree: inode count, leaves referenced more than once, whiteouts. */
function prepass(root: Directory): Prepass {
  const seen = new Set<Leaf>();
  const refs = new Map<Leaf, number>();
  let dirs = 0;
  let hasWhiteout = false;
  const stack: Directory[] = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    dirs++;
    for (const node of dir.entries.values()) {
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
  return { refs, inodes: dirs + seen.size, hasWhiteout };
}

/**
 * The canonical entry of each hard-linked leaf: the one at `leaf.canonicalPath` when given, else
 * the first in a name-ordered depth-first walk.
 */
function canonicalEntries(
  root: Directory,
  refs: Map<Leaf, number>,
): Map<Leaf, { dir: Directory; name: string }> {
  const first = new Map<Leaf, { dir: Directory; name: string }>();
  const byPath = new Map<Leaf, { dir: Directory; name: string }>();
  const walk = (dir: Directory, path: string): void => {
    for (const name of sortedNames(dir)) {
      const node = dir.entries.get(name)!;
      if (node.kind === "dir") {
        walk(node, path + "/" + name);
      } else if (refs.has(node)) {
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

/** Stores a directory's entries with "." and ".." inserted at their byte-order positions. */
function setDirents(
  table: InodeTable,
  me: number,
  parent: number,
  names: string[],
  targets: number[],
): void {
  const n = names.length;
  const allNames: string[] = new Array(n + 2);
  const all: number[] = new Array(n + 2);
  let o = 0;
  let dot = false, dotdot = false;
  for (let i = 0; i < n; i++) {
    const name = names[i];
    if (
      name.length === 0 || name.length > MAX_NAME || name === "." || name === ".." ||
      name.indexOf("/") >= 0 ||
      name.indexOf("\0") >= 0
    ) {
      throw new FormatError(`invalid file name ${JSON.stringify(name)} in a directory`);
    }
    if (!dot && name > ".") {
      allNames[o] = ".";
      all[o++] = me;
      dot = true;
    }
    if (!dotdot && name > "..") {
      allNames[o] = "..";
      all[o++] = parent;
      dotdot = true;
    }
    allNames[o] = name;
    all[o++] = targets[i];
  }
  if (!dot) {
    allNames[o] = ".";
    all[o++] = me;
  }
  if (!dotdot) {
    allNames[o] = "..";
    all[o++] = parent;
  }
  table.dirNames.set(me, allNames);
  table.dirTargets.set(me, all);
}

/** Whiteout stubs 00..ff for the names the root does not already use (never escaped). */
function whiteoutStubs(root: Directory): Map<string, Leaf> {
  const stubs = new Map<string, Leaf>();
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
    if (s.mtimeSecExact !== undefined) stat.mtimeSecExact = s.mtimeSecExact;
    stubs.set(name, { kind: "leaf", stat, content: { type: "chardev", rdev: 0 } });
  }
  return stubs;
}

/** Entries met before their canonical occurrence were stored as -1: points them at its inode. */
function patchDeferred(
  table: InodeTable,
  deferred: { dir: number; name: string; leaf: Leaf }[],
  leafInode: Map<Leaf, number>,
): void {
  for (const d of deferred) {
    const ino = leafInode.get(d.leaf);
    if (ino === undefined) throw new FormatError("hard link to a file that is not in the tree");
    const names = table.dirNames.get(d.dir)!;
    let lo = 0, hi = names.length - 1;
    while (names[lo + ((hi - lo) >> 1)] !== d.name) {
      const mid = lo + ((hi - lo) >> 1);
      if (names[mid] < d.name) lo = mid + 1;
      else hi = mid - 1;
    }
    table.dirTargets.get(d.dir)![lo + ((hi - lo) >> 1)] = ino;
  }
}

/** Marks the directories holding escaped whiteouts; opaque=x only from composefs_version 1 on. */
function markWhiteoutDirs(table: InodeTable, dirs: number[], paths: string[], cfsVersion: number): void {
  const dirAdded = cfsVersion >= 1 ? WHITEOUT_DIR_ADDED_V1 : WHITEOUT_DIR_ADDED;
  for (let w = 0; w < dirs.length; w++) checkAddedXattrs(table.stat[dirs[w]], paths[w], dirAdded);
  for (const me of dirs) {
    table.setExtra(me, XATTR_ESCAPED_WHITEOUTS, EMPTY);
    table.setExtra(me, XATTR_USER_WHITEOUTS, EMPTY);
    if (cfsVersion >= 1) {
      table.setExtra(me, XATTR_ESCAPED_OPAQUE, OPAQUE_X);
      table.setExtra(me, XATTR_USER_OPAQUE, OPAQUE_X);
    }
  }
}

/**
 * Epoch 1 collection (C `lcfs_compute_tree` order). `composefsVersion` maps "the tree holds a user
 * whiteout" to the image's composefs_version (C promotes V0 to 1 when allowed).
 */
export function collectEpoch1(
  root: Directory,
  composefsVersion: (hasWhiteout: boolean) => number,
): Collected {
  const pre = prepass(root);
  const canonical = pre.refs.size > 0 ? canonicalEntries(root, pre.refs) : null;
  const table = new InodeTable(pre.inodes + 256);
  /** Inode of each hard-linked leaf once created; entries met earlier wait in `deferred`. */
  const leafInode = new Map<Leaf, number>();
  const deferred: { dir: number; name: string; leaf: Leaf }[] = [];
  const whiteoutDirs: number[] = [];
  /** Path (byte string) of each directory holding escaped whiteouts, for error messages. */
  const whiteoutDirPaths: string[] = [];

  const rootIno = table.add(S_IFDIR, root.stat, 2, null);
  table.setExtra(rootIno, XATTR_OPAQUE, OPAQUE_Y);

  const stubs = whiteoutStubs(root);

  const queueDirs: Directory[] = [root];
  const queueIno: number[] = [rootIno];
  const queueParent: number[] = [rootIno];
  const queuePath: string[] = [""]; // "" = the root ("/" in messages)
  for (let qi = 0; qi < queueDirs.length; qi++) {
    const dir = queueDirs[qi], me = queueIno[qi];
    let names = sortedNames(dir);
    if (dir === root && stubs.size > 0) names = [...names, ...stubs.keys()].sort();
    const targets: number[] = new Array(names.length);
    let hasWhiteoutChild = false;
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      const node: Inode = dir.entries.get(name) ?? stubs.get(name)!;
      if (node.kind === "dir") {
        const child = table.add(S_IFDIR, node.stat, 2, null);
        table.nlink[me]++;
        queueDirs.push(node);
        queueIno.push(child);
        queueParent.push(me);
        queuePath.push(queuePath[qi] + "/" + name);
        targets[i] = child;
        continue;
      }
      const refs = pre.refs.get(node);
      if (refs !== undefined) {
        const canon = canonical!.get(node)!;
        if (canon.dir !== dir || canon.name !== name) {
          const known = leafInode.get(node);
          if (known === undefined) deferred.push({ dir: me, name, leaf: node });
          targets[i] = known ?? -1;
          continue;
        }
      }
      const content = node.content;
      const child = table.add(leafTypeBits(content), node.stat, refs ?? 1, content);
      if (isWhiteout(content) && !(dir === root && stubs.get(name) === node)) {
        checkAddedXattrs(node.stat, queuePath[qi] + "/" + name, WHITEOUT_ADDED);
        table.type[child] = S_IFREG;
        table.setExtra(child, XATTR_ESCAPED_WHITEOUT, EMPTY);
        table.setExtra(child, XATTR_USER_WHITEOUT, EMPTY);
        hasWhiteoutChild = true;
      }
      if (refs !== undefined) leafInode.set(node, child);
      targets[i] = child;
    }
    if (hasWhiteoutChild) {
      whiteoutDirs.push(me);
      whiteoutDirPaths.push(queuePath[qi] || "/");
    }
    setDirents(table, me, queueParent[qi], names, targets);
  }
  patchDeferred(table, deferred, leafInode);
  const cfsVersion = composefsVersion(pre.hasWhiteout);
  markWhiteoutDirs(table, whiteoutDirs, whiteoutDirPaths, cfsVersion);
  return { table, hasWhiteout: pre.hasWhiteout, composefsVersion: cfsVersion };
}

/** V2 collection (composefs-rs): DFS pre-order; a hard-linked leaf's inode comes at first sight. */
export function collectV2(root: Directory): Collected {
  const pre = prepass(root);
  const table = new InodeTable(pre.inodes);
  const leafInode = new Map<Leaf, number>();

  const visit = (dir: Directory, parent: number): number => {
    const me = table.add(S_IFDIR, dir.stat, 2, null);
    const names = sortedNames(dir);
    const targets: number[] = new Array(names.length);
    for (let i = 0; i < names.length; i++) {
      const node = dir.entries.get(names[i])!;
      if (node.kind === "dir") {
        table.nlink[me]++;
        targets[i] = visit(node, me);
        continue;
      }
      let child = leafInode.get(node);
      if (child === undefined) {
        const refs = pre.refs.get(node) ?? 1;
        child = table.add(leafTypeBits(node.content), node.stat, refs, node.content);
        if (refs > 1) leafInode.set(node, child);
      }
      targets[i] = child;
    }
    setDirents(table, me, parent < 0 ? me : parent, names, targets);
    return me;
  };
  visit(root, -1);
  return { table, hasWhiteout: pre.hasWhiteout, composefsVersion: 2 };
}
