// write_collect.ts for an object tree (lib/tree/tree.ts): the same inode table, in the same order, read
// straight from the objects (docs/erofs.md#order). Converting such a tree to columns first (treeToFlat)
// holds a copy of every inode's fields beside the tree and the table: +12 MiB of peak RSS writing a
// 100,000-file tree, as a pull does. test/flat_tree_test.ts checks both collectors give the same images.
import { FormatError } from "../errors.ts";
import type { Directory, Inode, Leaf, LeafContent, Stat } from "../tree/tree.ts";
import { leafTypeBits, NO_XATTRS, S_IFDIR, S_IFREG } from "../tree/tree.ts";
import { REG_INLINE } from "../tree/flat.ts";
import { XATTR_ESCAPED_WHITEOUT, XATTR_OPAQUE, XATTR_SELINUX, XATTR_USER_WHITEOUT } from "./format.ts";
import {
  checkAddedXattrs,
  type Collected,
  EMPTY,
  HEX,
  InodeTable,
  markWhiteoutDirs,
  OPAQUE_Y,
  setDirents,
  slotOf,
  WHITEOUT_ADDED,
} from "./write_collect.ts";

function isWhiteout(c: LeafContent): boolean {
  return c.type === "chardev" && c.rdev === 0;
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

/** The xattrs of the whiteout stubs: the root's SELinux label, if any. */
function stubXattrs(root: Directory): Map<string, Uint8Array> {
  const selinux = root.stat.xattrs.get(XATTR_SELINUX);
  return selinux === undefined ? NO_XATTRS : new Map([[XATTR_SELINUX, selinux]]);
}

/** State of the epoch 1 walk. */
interface Walk {
  root: Directory;
  table: InodeTable;
  pre: Prepass;
  canonical: Map<Leaf, { dir: Directory; name: string }> | null;
  /** Inode of each hard-linked leaf once created. */
  leafInode: Map<Leaf, number>;
  /** Entries met before their canonical occurrence: dirent slot and leaf. */
  deferred: [number, Leaf][];
  queueDirs: Directory[];
  queueIno: number[];
  queueParent: number[];
  queuePath: string[];
  stubs: Map<string, Uint8Array>;
}

/** Inode of leaf `node` at `dir`/`name` (-1: its canonical entry comes later); true 2nd: escaped. */
function leafInode(w: Walk, dir: Directory, name: string, node: Leaf, path: string): [number, boolean] {
  const refs = w.pre.refs.get(node);
  if (refs !== undefined) {
    const canon = w.canonical!.get(node)!;
    if (canon.dir !== dir || canon.name !== name) return [w.leafInode.get(node) ?? -1, false];
  }
  const content = node.content;
  const child = w.table.addFromTree(leafTypeBits(content), node.stat, refs ?? 1, content);
  if (refs !== undefined) w.leafInode.set(node, child);
  if (!isWhiteout(content)) return [child, false];
  checkAddedXattrs(node.stat.xattrs, () => path, WHITEOUT_ADDED);
  const t = w.table;
  t.type[child] = S_IFREG;
  t.kind[child] = REG_INLINE;
  t.size[child] = 0;
  t.setExtra(child, XATTR_ESCAPED_WHITEOUT, EMPTY);
  t.setExtra(child, XATTR_USER_WHITEOUT, EMPTY);
  return [child, true];
}

/** One directory of the epoch 1 BFS (queue slot qi); true when it holds an escaped whiteout. */
function epoch1Dir(w: Walk, qi: number): boolean {
  const { table } = w;
  const dir = w.queueDirs[qi], me = w.queueIno[qi];
  let names = sortedNames(dir);
  const stubNames: string[] = [];
  if (dir === w.root) {
    for (let i = 0; i < 256; i++) {
      const name = HEX[i >> 4] + HEX[i & 15];
      if (!dir.entries.has(name)) stubNames.push(name);
    }
    if (stubNames.length > 0) names = [...names, ...stubNames].sort();
  }
  const targets: number[] = new Array(names.length);
  let hasWhiteout = false;
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    const node: Inode | undefined = dir.entries.get(name);
    if (node === undefined) {
      targets[i] = table.addStub(w.stubs);
    } else if (node.kind === "dir") {
      const child = table.addFromTree(S_IFDIR, node.stat, 2, null);
      table.nlink[me]++;
      w.queueDirs.push(node);
      w.queueIno.push(child);
      w.queueParent.push(me);
      w.queuePath.push(w.queuePath[qi] + "/" + name);
      targets[i] = child;
    } else {
      const [ino, escaped] = leafInode(w, dir, name, node, w.queuePath[qi] + "/" + name);
      if (escaped) hasWhiteout = true;
      targets[i] = ino;
    }
  }
  const first = setDirents(table, me, w.queueParent[qi], names, targets, true);
  for (let i = 0; i < names.length; i++) {
    if (targets[i] < 0) w.deferred.push([slotOf(first, names, i), dir.entries.get(names[i]) as Leaf]);
  }
  return hasWhiteout;
}

/** collectEpoch1 (write_collect.ts) for an object tree. */
export function collectEpoch1Tree(
  root: Directory,
  composefsVersion: (hasWhiteout: boolean) => number,
): Collected {
  const pre = prepass(root);
  const table = new InodeTable(pre.inodes + 256);
  const rootIno = table.addFromTree(S_IFDIR, root.stat, 2, null);
  table.setExtra(rootIno, XATTR_OPAQUE, OPAQUE_Y);
  const w: Walk = {
    root,
    table,
    pre,
    canonical: pre.refs.size > 0 ? canonicalEntries(root, pre.refs) : null,
    leafInode: new Map(),
    deferred: [],
    queueDirs: [root],
    queueIno: [rootIno],
    queueParent: [rootIno],
    queuePath: [""], // "" = the root ("/" in messages)
    stubs: stubXattrs(root),
  };
  const whiteoutDirs: number[] = [];
  const whiteoutDirPaths: (() => string)[] = [];
  for (let qi = 0; qi < w.queueDirs.length; qi++) {
    if (!epoch1Dir(w, qi)) continue;
    const path = w.queuePath[qi] || "/";
    whiteoutDirs.push(w.queueIno[qi]);
    whiteoutDirPaths.push(() => path);
  }
  for (const [slot, leaf] of w.deferred) {
    const ino = w.leafInode.get(leaf);
    if (ino === undefined) throw new FormatError("hard link to a file that is not in the tree");
    table.direntTarget[slot] = ino;
  }
  const cfsVersion = composefsVersion(pre.hasWhiteout);
  markWhiteoutDirs(table, whiteoutDirs, whiteoutDirPaths, cfsVersion);
  return { table, hasWhiteout: pre.hasWhiteout, composefsVersion: cfsVersion };
}

/** collectV2 (write_collect.ts) for an object tree. */
export function collectV2Tree(root: Directory): Collected {
  const pre = prepass(root);
  const table = new InodeTable(pre.inodes);
  const leafInodes = new Map<Leaf, number>();

  const visit = (dir: Directory, stat: Stat, parent: number): number => {
    const me = table.addFromTree(S_IFDIR, stat, 2, null);
    const names = sortedNames(dir);
    const targets: number[] = new Array(names.length);
    for (let i = 0; i < names.length; i++) {
      const node = dir.entries.get(names[i])!;
      if (node.kind === "dir") {
        table.nlink[me]++;
        targets[i] = visit(node, node.stat, me);
        continue;
      }
      let child = leafInodes.get(node);
      if (child === undefined) {
        const refs = pre.refs.get(node) ?? 1;
        child = table.addFromTree(leafTypeBits(node.content), node.stat, refs, node.content);
        if (refs > 1) leafInodes.set(node, child);
      }
      targets[i] = child;
    }
    setDirents(table, me, parent < 0 ? me : parent, names, targets, true);
    return me;
  };
  visit(root, root.stat, -1);
  return { table, hasWhiteout: pre.hasWhiteout, composefsVersion: 2 };
}
