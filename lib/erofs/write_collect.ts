// Turns a file tree into the EROFS inode table (docs/erofs.md#order): inodes in table order with their file
// type, link count, synthetic xattrs (whiteout markers, root opaque) and directory entries. The
// caller's tree is never modified: stubs and escapes live in the table.
//
// Epoch 1 (V0/V1) reproduces C mkcomposefs 1.0.8: BFS order, whiteout stubs 00..ff in the root,
// user whiteouts escaped; hard-linked leaves get their inode where the canonical occurrence is.
// V2 reproduces composefs-rs: DFS pre-order, no stubs, whiteouts stay character devices.
//
// The input here is the columns of lib/tree/flat.ts (write_collect_tree.ts reads object trees into the
// same table) and so is the table (typed arrays indexed by inode number, each inode's fields copied from
// its owner entry) so that trees with hundreds of thousands of inodes cost a few arrays, not an object
// per inode.
import { FormatError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { type LeafContent, NO_XATTRS, S_IFCHR, S_IFDIR, S_IFMT, S_IFREG, type Stat } from "../tree/tree.ts";
import { type FlatTree, REG_INLINE, setInodeColumns } from "../tree/flat.ts";
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
  // The inode's own fields (FlatTree's, at its owner entry).
  readonly mode: Uint16Array;
  readonly uid: Uint32Array;
  readonly gid: Uint32Array;
  readonly mtimeSec: Float64Array;
  readonly mtimeExact = new Map<number, bigint>();
  readonly mtimeNsec: Uint32Array;
  /** Regular files: REG_* of lib/tree/flat.ts (an escaped whiteout: REG_INLINE, empty). */
  readonly kind: Uint8Array;
  readonly size: Float64Array;
  readonly rdev: Float64Array;
  readonly text: (string | undefined)[];
  readonly id: (ObjectId | undefined)[];
  readonly inline: (Uint8Array | undefined)[];
  /** The inode's own xattrs (escaped when written). */
  readonly xattrs: Map<string, Uint8Array>[];
  /** Synthetic xattrs other than an external file's metacopy/redirect (derived from the content):
   *  final names; an own xattr of the same escaped name is refused when collecting. */
  readonly extra = new Map<number, [string, Uint8Array][]>();
  /** Directories: entries [dirStart, dirStart + dirCount) of direntName/direntTarget, sorted
   *  bytewise (with "." and ".."), each with its inode. */
  readonly dirStart: Uint32Array;
  readonly dirCount: Uint32Array;
  readonly direntName: string[] = [];
  direntTarget = new Int32Array(1024);

  constructor(capacity: number) {
    this.type = new Uint16Array(capacity);
    this.nlink = new Uint32Array(capacity);
    this.mode = new Uint16Array(capacity);
    this.uid = new Uint32Array(capacity);
    this.gid = new Uint32Array(capacity);
    this.mtimeSec = new Float64Array(capacity);
    this.mtimeNsec = new Uint32Array(capacity);
    this.kind = new Uint8Array(capacity);
    this.size = new Float64Array(capacity);
    this.rdev = new Float64Array(capacity);
    this.text = new Array(capacity);
    this.id = new Array(capacity);
    this.inline = new Array(capacity);
    this.xattrs = new Array(capacity);
    this.dirStart = new Uint32Array(capacity);
    this.dirCount = new Uint32Array(capacity);
  }

  /** A new inode of the given type and link count with the fields of the inode owned by entry e. */
  addFrom(t: FlatTree, e: number, type: number, nlink: number): number {
    const i = this.count++;
    this.type[i] = type;
    this.nlink[i] = nlink;
    this.mode[i] = t.mode[e] & 0o7777;
    this.uid[i] = t.uid[e];
    this.gid[i] = t.gid[e];
    this.mtimeSec[i] = t.mtimeSec[e];
    if (t.mtimeExact.size > 0) {
      const exact = t.mtimeExact.get(e);
      if (exact !== undefined) this.mtimeExact.set(i, exact);
    }
    this.mtimeNsec[i] = t.mtimeNsec[e];
    this.kind[i] = t.kind[e];
    this.size[i] = t.size[e];
    this.rdev[i] = t.rdev[e];
    this.text[i] = t.text[e];
    this.id[i] = t.id[e];
    this.inline[i] = t.inline[e];
    this.xattrs[i] = t.xattrs[e];
    return i;
  }

  /** A new inode of the given type and link count with the fields of an object tree's node. */
  addFromTree(type: number, stat: Stat, nlink: number, content: LeafContent | null): number {
    const i = this.count++;
    this.type[i] = type;
    this.nlink[i] = nlink;
    this.mode[i] = stat.mode & 0o7777;
    setInodeColumns(this, i, stat, content);
    return i;
  }

  /** A whiteout stub (char device 0:0, 0644) with the root's owner, mtime and SELinux label. */
  addStub(xattrs: Map<string, Uint8Array>): number {
    const i = this.count++;
    this.type[i] = S_IFCHR;
    this.nlink[i] = 1;
    this.mode[i] = 0o644;
    this.uid[i] = this.uid[0];
    this.gid[i] = this.gid[0];
    this.mtimeSec[i] = this.mtimeSec[0];
    const exact = this.mtimeExact.get(0);
    if (exact !== undefined) this.mtimeExact.set(i, exact);
    this.mtimeNsec[i] = this.mtimeNsec[0];
    this.xattrs[i] = xattrs;
    return i;
  }

  /** Room for `n` dirents of directory inode i; returns the index of the first. */
  reserveDirents(i: number, n: number): number {
    const start = this.direntName.length;
    this.dirStart[i] = start;
    this.dirCount[i] = n;
    this.direntName.length = start + n;
    if (start + n > this.direntTarget.length) {
      const b = new Int32Array(Math.max(start + n, this.direntTarget.length * 2));
      b.set(this.direntTarget);
      this.direntTarget = b;
    }
    return start;
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

export const HEX = "0123456789abcdef";
/** Longest file name (EROFS_NAME_LEN); names never hold "/" or NUL. */
const MAX_NAME = 255;
// Synthetic values that may meet equal user values under the same escaped name: always bytes.
export const EMPTY = new Uint8Array(0);
export const OPAQUE_Y = bstrToBytes(OPAQUE_ROOT_VALUE);
const OPAQUE_X = bstrToBytes(OPAQUE_WHITEOUTS_VALUE);

/** A user whiteout: a character device 0:0 (entry e owns the inode). */
function isWhiteout(t: FlatTree, e: number): boolean {
  return (t.mode[e] & S_IFMT) === S_IFCHR && t.rdev[e] === 0;
}

/**
 * Refuses an inode whose own xattr, once escaped (trusted.overlay.X → trusted.overlay.overlay.X;
 * user.* as is), has the name of an xattr the writer adds to it (`added`). C 1.0.8 writes such an
 * image, the writer's value silently replacing the entry's own (a directory's own opaque "y"
 * becomes "x"); we refuse, so an image never holds other xattrs than its tree (docs/c-compatibility.md).
 */
export function checkAddedXattrs(
  xattrs: Map<string, Uint8Array>,
  path: () => string,
  added: readonly string[],
): void {
  if (xattrs.size === 0) return;
  for (const own of xattrs.keys()) {
    const stored = own.startsWith(OVERLAY_XATTR_PREFIX)
      ? OVERLAY_ESCAPED_PREFIX + own.slice(OVERLAY_XATTR_PREFIX.length)
      : own;
    if (added.includes(stored)) {
      const why = stored === own ? "" : ` (stored as ${JSON.stringify(stored)})`;
      throw new FormatError(
        `${JSON.stringify(path())}: its own xattr ${JSON.stringify(own)}${why} collides with the one ` +
          `the image format adds there for overlayfs; refusing to write an image that would lose it`,
      );
    }
  }
}

export const WHITEOUT_ADDED = [XATTR_ESCAPED_WHITEOUT, XATTR_USER_WHITEOUT];
const WHITEOUT_DIR_ADDED = [XATTR_ESCAPED_WHITEOUTS, XATTR_USER_WHITEOUTS];
const WHITEOUT_DIR_ADDED_V1 = [...WHITEOUT_DIR_ADDED, XATTR_ESCAPED_OPAQUE, XATTR_USER_OPAQUE];

/** Size of an external regular file of table inode i, or -1 when its content is not external. */
export function externalSize(t: InodeTable, i: number): number {
  return t.type[i] === S_IFREG && t.kind[i] !== REG_INLINE ? t.size[i] : -1;
}

interface Prepass {
  /** Number of (kept) directory entries referencing each inode, by owner entry. */
  refs: Uint32Array;
  /** Some inode is referenced more than once. */
  hardLinks: boolean;
  /** Inodes the table will hold (without epoch 1 stubs). */
  inodes: number;
  hasWhiteout: boolean;
}

/** Kept entry e: not removed, nor a link to a removed inode. */
function kept(t: FlatTree, e: number): boolean {
  return t.removed[e] === 0 && t.removed[t.ino[e]] === 0;
}

/** One pass over the entries: inode count, inodes referenced more than once, whiteouts. */
function prepass(t: FlatTree): Prepass {
  const refs = new Uint32Array(t.count);
  for (let e = 0; e < t.count; e++) if (kept(t, e)) refs[t.ino[e]]++;
  let inodes = 0, hardLinks = false, hasWhiteout = false;
  for (let e = 0; e < t.count; e++) {
    const r = refs[e];
    if (r === 0) continue;
    inodes++;
    if (!isWhiteout(t, e)) {
      if (r > 1) hardLinks = true;
      continue;
    }
    hasWhiteout = true;
    if (r > 1) {
      throw new FormatError("invalid composefs filesystem: a whiteout (char device 0:0) is hard-linked");
    }
  }
  return { refs, hardLinks, inodes, hasWhiteout };
}

/** The kept children of directory entry e in byte order of names. */
function keptChildren(t: FlatTree, e: number): number[] {
  const all = t.children(e);
  for (const c of all) if (!kept(t, c)) return all.filter((x) => kept(t, x));
  return all;
}

/**
 * Stores directory `me`'s entries with "." and ".." inserted at their byte-order positions; `names`
 * and `targets` (inodes; -1 for a hard link placed later) in byte order. Returns the index of the
 * first dirent (for deferred targets: slot of names[k] = first + k + (k past "." ?1) + (past ".." ?1),
 * see slotOf).
 */
export function setDirents(
  table: InodeTable,
  me: number,
  parent: number,
  names: string[],
  targets: number[],
  check: boolean,
): number {
  const n = names.length;
  const first = table.reserveDirents(me, n + 2);
  const allNames = table.direntName, all = table.direntTarget;
  let o = first;
  let dot = false, dotdot = false;
  for (let i = 0; i < n; i++) {
    const name = names[i];
    if (
      check && (name.length === 0 || name.length > MAX_NAME || name === "." || name === ".." ||
        name.indexOf("/") >= 0 ||
        name.indexOf("\0") >= 0)
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
  return first;
}

/** The names 00..ff the root does not use: C's whiteout stubs (never escaped). */
function stubNames(t: FlatTree): string[] {
  const used = new Set<string>();
  for (let c = t.firstChild[0]; c >= 0; c = t.nextSibling[c]) if (kept(t, c)) used.add(t.name[c]);
  const out: string[] = [];
  for (let i = 0; i < 256; i++) {
    const name = HEX[i >> 4] + HEX[i & 15];
    if (!used.has(name)) out.push(name);
  }
  return out;
}

/** Children of the root merged with the stub names: entry indexes, -1 for a stub. */
function rootChildren(t: FlatTree, stubs: string[]): { entries: number[]; names: string[] } {
  const kids = keptChildren(t, 0);
  const entries: number[] = [], names: string[] = [];
  let a = 0, b = 0;
  while (a < kids.length || b < stubs.length) {
    if (b >= stubs.length || (a < kids.length && t.name[kids[a]] < stubs[b])) {
      entries.push(kids[a]);
      names.push(t.name[kids[a++]]);
    } else {
      entries.push(-1);
      names.push(stubs[b++]);
    }
  }
  return { entries, names };
}

/** Marks the directories holding escaped whiteouts; opaque=x only from composefs_version 1 on. */
export function markWhiteoutDirs(
  table: InodeTable,
  dirs: number[],
  paths: (() => string)[],
  cfsVersion: number,
): void {
  const dirAdded = cfsVersion >= 1 ? WHITEOUT_DIR_ADDED_V1 : WHITEOUT_DIR_ADDED;
  for (let w = 0; w < dirs.length; w++) checkAddedXattrs(table.xattrs[dirs[w]], paths[w], dirAdded);
  for (const me of dirs) {
    table.setExtra(me, XATTR_ESCAPED_WHITEOUTS, EMPTY);
    table.setExtra(me, XATTR_USER_WHITEOUTS, EMPTY);
    if (cfsVersion >= 1) {
      table.setExtra(me, XATTR_ESCAPED_OPAQUE, OPAQUE_X);
      table.setExtra(me, XATTR_USER_OPAQUE, OPAQUE_X);
    }
  }
}

/** Dirent slot of names[k] in a directory whose dirents start at `first` ("." and ".." inserted). */
export function slotOf(first: number, names: string[], k: number): number {
  const name = names[k];
  return first + k + (name > "." ? 1 : 0) + (name > ".." ? 1 : 0);
}

/** State of the epoch 1 walk over one directory's entries. */
interface Epoch1Walk {
  t: FlatTree;
  table: InodeTable;
  pre: Prepass;
  /** Inode of each hard-linked owner entry once created (-1 before). */
  leafInode: Int32Array;
  /** Hard-link entries met before their owner: dirent slot and owner entry. */
  deferred: number[];
  queue: number[];
  queueIno: number[];
  queueParent: number[];
  stubXattrs: Map<string, Uint8Array>;
  /** Set when a leaf of the directory being walked is an escaped whiteout. */
  whiteout: boolean;
}

/** The inode of leaf entry c, -1 when its owner comes later; sets w.whiteout for an escaped one. */
function epoch1Leaf(w: Epoch1Walk, c: number): number {
  const { t, table, pre } = w;
  const owner = t.ino[c];
  const refs = pre.refs[owner];
  if (refs > 1 && c !== owner) return w.leafInode[owner];
  const child = table.addFrom(t, owner, t.mode[owner] & S_IFMT, refs);
  if (refs > 1) w.leafInode[owner] = child;
  if (!isWhiteout(t, owner)) return child;
  checkAddedXattrs(t.xattrs[owner], () => t.path(c), WHITEOUT_ADDED);
  table.type[child] = S_IFREG;
  table.kind[child] = REG_INLINE;
  table.size[child] = 0;
  table.setExtra(child, XATTR_ESCAPED_WHITEOUT, EMPTY);
  table.setExtra(child, XATTR_USER_WHITEOUT, EMPTY);
  w.whiteout = true;
  return child;
}

/** One directory of the epoch 1 BFS (queue slot qi): its entries' inodes and its dirents. */
function epoch1Dir(w: Epoch1Walk, qi: number): boolean {
  const { t, table } = w;
  const dir = w.queue[qi], me = w.queueIno[qi];
  let entries: number[], names: string[];
  if (dir === 0) {
    ({ entries, names } = rootChildren(t, stubNames(t)));
  } else {
    entries = keptChildren(t, dir);
    names = entries.map((c) => t.name[c]);
  }
  const targets: number[] = new Array(entries.length);
  let pending = 0;
  w.whiteout = false;
  for (let i = 0; i < entries.length; i++) {
    const c = entries[i];
    if (c < 0) {
      targets[i] = table.addStub(w.stubXattrs);
    } else if ((t.mode[t.ino[c]] & S_IFMT) === S_IFDIR) {
      const child = table.addFrom(t, c, S_IFDIR, 2);
      table.nlink[me]++;
      w.queue.push(c);
      w.queueIno.push(child);
      w.queueParent.push(me);
      targets[i] = child;
    } else {
      const ino = epoch1Leaf(w, c);
      if (ino < 0) pending++;
      targets[i] = ino;
    }
  }
  const first = setDirents(table, me, w.queueParent[qi], names, targets, !t.namesChecked);
  if (pending > 0) {
    for (let i = 0; i < entries.length; i++) {
      if (targets[i] < 0) w.deferred.push(slotOf(first, names, i), t.ino[entries[i]]);
    }
  }
  return w.whiteout;
}

/**
 * Epoch 1 collection (C `lcfs_compute_tree` order). `composefsVersion` maps "the tree holds a user
 * whiteout" to the image's composefs_version (C promotes V0 to 1 when allowed).
 */
export function collectEpoch1(t: FlatTree, composefsVersion: (hasWhiteout: boolean) => number): Collected {
  const pre = prepass(t);
  const table = new InodeTable(pre.inodes + 256);
  const rootIno = table.addFrom(t, 0, S_IFDIR, 2);
  table.setExtra(rootIno, XATTR_OPAQUE, OPAQUE_Y);
  const selinux = t.xattrs[0].get(XATTR_SELINUX);
  const w: Epoch1Walk = {
    t,
    table,
    pre,
    leafInode: new Int32Array(pre.hardLinks ? t.count : 0).fill(-1),
    deferred: [],
    queue: [0],
    queueIno: [rootIno],
    queueParent: [rootIno],
    stubXattrs: selinux === undefined ? NO_XATTRS : new Map([[XATTR_SELINUX, selinux]]),
    whiteout: false,
  };
  const whiteoutDirs: number[] = [];
  const whiteoutDirPaths: (() => string)[] = [];
  for (let qi = 0; qi < w.queue.length; qi++) {
    if (!epoch1Dir(w, qi)) continue;
    const dir = w.queue[qi];
    whiteoutDirs.push(w.queueIno[qi]);
    whiteoutDirPaths.push(() => t.path(dir));
  }
  // Entries met before their canonical occurrence point at its inode now.
  for (let k = 0; k < w.deferred.length; k += 2) {
    const ino = w.leafInode[w.deferred[k + 1]];
    if (ino < 0) throw new FormatError("hard link to a file that is not in the tree");
    table.direntTarget[w.deferred[k]] = ino;
  }
  const cfsVersion = composefsVersion(pre.hasWhiteout);
  markWhiteoutDirs(table, whiteoutDirs, whiteoutDirPaths, cfsVersion);
  return { table, hasWhiteout: pre.hasWhiteout, composefsVersion: cfsVersion };
}

/** V2 collection (composefs-rs): DFS pre-order; a hard-linked leaf's inode comes at first sight. */
export function collectV2(t: FlatTree): Collected {
  const pre = prepass(t);
  const table = new InodeTable(pre.inodes);
  const leafInode = new Int32Array(pre.hardLinks ? t.count : 0).fill(-1);

  const visit = (dir: number, parent: number): number => {
    const me = table.addFrom(t, dir, S_IFDIR, 2);
    const entries = keptChildren(t, dir);
    const names = entries.map((c) => t.name[c]);
    const targets: number[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const c = entries[i], owner = t.ino[c];
      if ((t.mode[owner] & S_IFMT) === S_IFDIR) {
        table.nlink[me]++;
        targets[i] = visit(c, me);
        continue;
      }
      const refs = pre.refs[owner];
      let child = refs > 1 ? leafInode[owner] : -1;
      if (child < 0) {
        child = table.addFrom(t, owner, t.mode[owner] & S_IFMT, refs);
        if (refs > 1) leafInode[owner] = child;
      }
      targets[i] = child;
    }
    setDirents(table, me, parent < 0 ? me : parent, names, targets, !t.namesChecked);
    return me;
  };
  visit(0, -1);
  return { table, hasWhiteout: pre.hasWhiteout, composefsVersion: 2 };
}
