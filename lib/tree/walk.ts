// Walking, counting and copying file trees (lib/tree/tree.ts). Walks use explicit stacks: trees read
// from dumpfiles or images may be ~2000 levels deep.
import { type Directory, type Inode, type Leaf, newStat, sortedEntries, type Stat } from "./tree.ts";

export interface WalkEntry {
  /** Absolute path (byte string); "/" for the root. */
  path: string;
  /** Entry name; "" for the root. */
  name: string;
  node: Inode;
  /** Containing directory; undefined for the root. */
  parent?: Directory;
}

export function joinPath(parent: string, name: string): string {
  return parent === "/" ? "/" + name : parent + "/" + name;
}

/** Depth-first pre-order walk in byte order of names, starting with the root itself. */
export function* walkTree(root: Directory, rootPath = "/"): Generator<WalkEntry> {
  yield { path: rootPath, name: "", node: root };
  const stack: { dir: Directory; entries: [string, Inode][]; i: number; path: string }[] = [
    { dir: root, entries: sortedEntries(root), i: 0, path: rootPath },
  ];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.i >= top.entries.length) {
      stack.pop();
      continue;
    }
    const [name, node] = top.entries[top.i++];
    const path = joinPath(top.path, name);
    yield { path, name, node, parent: top.dir };
    if (node.kind === "dir") stack.push({ dir: node, entries: sortedEntries(node), i: 0, path });
  }
}

/** Calls `fn` once per distinct inode (hard-linked leaves once), in no particular order. */
export function forEachInode(root: Directory, fn: (node: Inode) => void): void {
  const seen = new Set<Leaf>();
  const stack: Directory[] = [root];
  fn(root);
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const child of dir.entries.values()) {
      if (child.kind === "dir") {
        fn(child);
        stack.push(child);
      } else if (!seen.has(child)) {
        seen.add(child);
        fn(child);
      }
    }
  }
}

/** Number of directory entries referencing each leaf. */
export function countLeafLinks(root: Directory): Map<Leaf, number> {
  const counts = new Map<Leaf, number>();
  const stack: Directory[] = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const child of dir.entries.values()) {
      if (child.kind === "dir") stack.push(child);
      else counts.set(child, (counts.get(child) ?? 0) + 1);
    }
  }
  return counts;
}

export interface TreeCounts {
  /** Directories, root included. */
  directories: number;
  /** Distinct leaves (hard links counted once). */
  leaves: number;
  /** Directory entries that are leaves (hard links counted per path). */
  leafEntries: number;
  /** Regular files stored as objects (distinct). */
  externalFiles: number;
  /** Sum of the sizes of distinct external regular files. */
  externalBytes: number;
}

export function countTree(root: Directory): TreeCounts {
  const c: TreeCounts = { directories: 0, leaves: 0, leafEntries: 0, externalFiles: 0, externalBytes: 0 };
  const links = countLeafLinks(root);
  for (const n of links.values()) c.leafEntries += n;
  forEachInode(root, (node) => {
    if (node.kind === "dir") {
      c.directories++;
      return;
    }
    c.leaves++;
    if (node.content.type === "external" || node.content.type === "external-noverity") {
      c.externalFiles++;
      c.externalBytes += node.content.size;
    }
  });
  return c;
}

export function cloneStat(s: Stat): Stat {
  return newStat({ ...s, xattrs: new Map(s.xattrs) });
}

/** Deep copy keeping hard links shared (one new Leaf per original Leaf). Byte payloads are shared
 *  (they are never mutated in place). */
export function cloneTree(root: Directory): Directory {
  const leafCopies = new Map<Leaf, Leaf>();
  const copyDir = (d: Directory): Directory => ({ kind: "dir", stat: cloneStat(d.stat), entries: new Map() });
  const out = copyDir(root);
  const stack: [Directory, Directory][] = [[root, out]];
  while (stack.length > 0) {
    const [src, dst] = stack.pop()!;
    for (const [name, child] of src.entries) {
      if (child.kind === "dir") {
        const c = copyDir(child);
        dst.entries.set(name, c);
        stack.push([child, c]);
      } else {
        let c = leafCopies.get(child);
        if (!c) {
          c = { kind: "leaf", stat: cloneStat(child.stat), content: { ...child.content } };
          if (child.canonicalPath !== undefined) c.canonicalPath = child.canonicalPath;
          leafCopies.set(child, c);
        }
        dst.entries.set(name, c);
      }
    }
  }
  return out;
}
