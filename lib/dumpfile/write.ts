// Dumpfile writer (docs/dumpfile.md): a depth-first walk in byte order of names, one line per entry.
// A leaf reachable by several paths is written in full once, at its canonical path, and as
// `PATH 0 @120000 - - - - 0.0 TARGET - -` elsewhere. The canonical path is leaf.canonicalPath when
// that path really reaches the leaf (trees read from C dumpfiles), otherwise its first path in the walk.
// SIZE of directories is 0 (composefs-rs; the C tool prints what stat gave); NLINK is computed
// (directories: 2 + subdirectories, leaves: number of paths).
import { Buffer } from "node:buffer";
import type { Directory, Inode, Leaf } from "../tree/tree.ts";
import { fullMode, leafSize, sortedEntries } from "../tree/tree.ts";
import { escapeField, escapeXattrPart } from "./escape.ts";
import { bytesToBstr, compareBstr } from "../util/bytes.ts";
import { countLeafLinks, joinPath } from "../tree/walk.ts";

export { countLeafLinks };

function xattrText(node: Inode): string {
  const x = node.stat.xattrs;
  if (x.size === 0) return "";
  const keys = [...x.keys()].sort(compareBstr);
  let s = "";
  for (const k of keys) s += " " + escapeXattrPart(k) + "=" + escapeXattrPart(bytesToBstr(x.get(k)!));
  return s;
}

function subdirCount(dir: Directory): number {
  let n = 0;
  for (const c of dir.entries.values()) if (c.kind === "dir") n++;
  return n;
}

/** The full line (without newline) for one entry: a byte string. */
export function entryLine(path: string, node: Inode, nlink: number): string {
  const st = node.stat;
  let size = 0;
  let rdev = 0;
  let payload = "";
  let content = "";
  let digest = "-";
  if (node.kind === "dir") {
    nlink = 2 + subdirCount(node);
  } else {
    const c = node.content;
    size = leafSize(node);
    switch (c.type) {
      case "inline":
        content = bytesToBstr(c.data);
        break;
      case "external":
        payload = c.payload ?? c.id.objectPath();
        digest = c.id.hex();
        break;
      case "external-noverity":
        payload = c.payload ?? "";
        break;
      case "symlink":
        payload = c.target;
        break;
      case "chardev":
      case "blockdev":
        rdev = c.rdev;
        break;
    }
  }
  return `${escapeField(path)} ${size} ${fullMode(node).toString(8)} ${nlink} ${st.uid} ${st.gid} ${rdev} ` +
    `${st.mtimeSecExact ?? st.mtimeSec}.${st.mtimeNsec} ${escapeField(payload)} ${
      escapeField(content)
    } ${digest}${xattrText(node)}`;
}

/** The hard-link line for `path` sharing the inode written at `target`. */
export function hardlinkLine(path: string, target: string): string {
  return `${escapeField(path)} 0 @120000 - - - - 0.0 ${escapeField(target)} - -`;
}

/** Leaves whose canonicalPath names one of their paths in this tree. */
function validCanonicalLeaves(root: Directory): Set<Leaf> {
  const ok = new Set<Leaf>();
  const stack: [Directory, string][] = [[root, "/"]];
  while (stack.length > 0) {
    const [dir, path] = stack.pop()!;
    for (const [name, child] of dir.entries) {
      if (child.kind === "dir") stack.push([child, joinPath(path, name)]);
      else if (child.canonicalPath !== undefined && child.canonicalPath === joinPath(path, name)) {
        ok.add(child);
      }
    }
  }
  return ok;
}

export interface DumpfileWalkOptions {
  /** Link counts of the whole tree (when writing a subtree of it). Default: counted from `node`. */
  counts?: Map<Leaf, number>;
  /** Leaves whose canonicalPath is valid (when writing a subtree). Default: computed from `node`. */
  canonical?: Set<Leaf>;
}

/** Dumpfile lines (byte strings without newline) of `node` at `path` and everything below it. */
export function* dumpfileEntryLines(
  node: Inode,
  path = "/",
  opts: DumpfileWalkOptions = {},
): Generator<string> {
  const counts = opts.counts ?? (node.kind === "dir" ? countLeafLinks(node) : new Map([[node, 1]]));
  const canonical = opts.canonical ?? (node.kind === "dir" ? validCanonicalLeaves(node) : new Set<Leaf>());
  const written = new Map<Leaf, string>(); // multi-link leaf → path of its full line

  const leafLine = (leaf: Leaf, p: string): string => {
    const n = counts.get(leaf) ?? 1;
    if (n <= 1) return entryLine(p, leaf, n);
    if (canonical.has(leaf)) {
      return p === leaf.canonicalPath ? entryLine(p, leaf, n) : hardlinkLine(p, leaf.canonicalPath!);
    }
    const first = written.get(leaf);
    if (first !== undefined) return hardlinkLine(p, first);
    written.set(leaf, p);
    return entryLine(p, leaf, n);
  };

  if (node.kind !== "dir") {
    yield leafLine(node, path);
    return;
  }
  yield entryLine(path, node, 0);
  // Explicit stack: trees may be ~2000 levels deep.
  const stack: { entries: [string, Inode][]; i: number; path: string }[] = [
    { entries: sortedEntries(node), i: 0, path },
  ];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.i >= top.entries.length) {
      stack.pop();
      continue;
    }
    const [name, child] = top.entries[top.i++];
    const p = joinPath(top.path, name);
    if (child.kind === "dir") {
      yield entryLine(p, child, 0);
      stack.push({ entries: sortedEntries(child), i: 0, path: p });
    } else {
      yield leafLine(child, p);
    }
  }
}

/** The dumpfile of a tree as byte chunks (about 64 KiB each), each line ending in "\n". */
export function* writeDumpfile(root: Directory): Generator<Uint8Array> {
  let buf = "";
  for (const line of dumpfileEntryLines(root)) {
    buf += line + "\n";
    if (buf.length >= 65536) {
      yield Buffer.from(buf, "latin1");
      buf = "";
    }
  }
  if (buf.length > 0) yield Buffer.from(buf, "latin1");
}

/** The whole dumpfile as one byte array. */
export function dumpfileBytes(root: Directory): Uint8Array {
  const parts: Uint8Array[] = [...writeDumpfile(root)];
  return Buffer.concat(parts);
}
