// Flattening the layers of an image into one file tree (docs/oci.md#flatten), following the OCI image spec
// for whiteouts: `.wh.NAME` and `.wh..wh..opq` hide what *lower* layers put there; entries of the
// same layer survive whatever their order in the tar ("Read first" item 2).
import { FormatError } from "../errors.ts";
import {
  type Directory,
  type Inode,
  type Leaf,
  type LeafContent,
  lookup,
  newDirectory,
  newStat,
  NO_XATTRS,
  type Stat,
} from "../tree/tree.ts";
import type { TarEntry } from "./tar/entry.ts";
import type { SplitTarEntry } from "./layer_split.ts";
import { rootMetadataForImage } from "../tree/transform.ts";

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";

/** A tar entry's metadata as a tree Stat (mode bits only; xattrs copied). */
export function statOf(e: TarEntry): Stat {
  return newStat({
    mode: e.mode & 0o7777,
    uid: e.uid,
    gid: e.gid,
    mtimeSec: e.mtimeSec,
    // Seconds beyond ±2^53 (PAX or base-256 mtimes) come exact from the tar reader.
    mtimeSecExact: e.mtimeSecExact,
    mtimeNsec: e.mtimeNsec,
    // Most entries have no xattrs: they share the immutable empty map (a Map per inode is ~150 bytes).
    xattrs: e.xattrs.size === 0 ? NO_XATTRS : new Map(e.xattrs),
  });
}

function splitPath(path: string): { parent: string; name: string } {
  const i = path.lastIndexOf("/");
  return { parent: path.slice(0, i) || "/", name: path.slice(i + 1) };
}

const NO_DATA = new Uint8Array();

/** A regular file's content is the entry's own (already a LeafContent); a file without one is empty. */
function leafContent(e: SplitTarEntry): LeafContent {
  switch (e.kind) {
    case "file":
      return e.content ?? { type: "inline", data: NO_DATA };
    case "symlink":
      return { type: "symlink", target: e.linkTarget };
    case "chardev":
      return { type: "chardev", rdev: e.rdev };
    case "blockdev":
      return { type: "blockdev", rdev: e.rdev };
    case "fifo":
      return { type: "fifo" };
    default:
      throw new FormatError(`unsupported tar entry type ${JSON.stringify(e.typeflag)} for ${e.path}`);
  }
}

/** Accumulates layers, lowest first, into one tree. */
export class Flattener {
  /** Without a root entry in any layer nor a /usr, the image root keeps this: 0755 0:0 mtime 0. */
  readonly root: Directory = newDirectory(newStat({ mode: 0o755 }));
  /** Paths created or replaced by the layer being applied (whiteouts spare them). Not kept for the
   *  lowest layer: everything in the tree then is its own (a Set of 100k paths is ~10 MiB). */
  #thisLayer = new Set<string>();
  #layers = 0;

  beginLayer(): void {
    this.#layers++;
    this.#thisLayer = new Set();
  }

  #inThisLayer(path: string): boolean {
    return this.#layers <= 1 || this.#thisLayer.has(path);
  }

  #addToThisLayer(path: string): void {
    if (this.#layers > 1) this.#thisLayer.add(path);
  }

  #dir(path: string, forWhat: string): Directory {
    const node = lookup(this.root, path);
    if (!node) throw new FormatError(`${forWhat}: parent directory ${path} does not exist`);
    if (node.kind !== "dir") throw new FormatError(`${forWhat}: parent ${path} is not a directory`);
    return node;
  }

  /** Removes what lower layers put below `dir` (recursively through dirs this layer re-declared). */
  #hideLower(dir: Directory, path: string): void {
    for (const [name, child] of [...dir.entries]) {
      const childPath = path === "/" ? `/${name}` : `${path}/${name}`;
      if (!this.#inThisLayer(childPath)) dir.entries.delete(name);
      else if (child.kind === "dir") this.#hideLower(child, childPath);
    }
  }

  #markSubtree(node: Inode, path: string): void {
    if (this.#layers <= 1) return;
    this.#thisLayer.add(path);
    if (node.kind === "dir") {
      for (const [name, child] of node.entries) {
        this.#markSubtree(child, path === "/" ? `/${name}` : `${path}/${name}`);
      }
    }
  }

  /** Applies one entry of the current layer (a regular file's `content` says where its bytes are). */
  apply(e: SplitTarEntry): void {
    if (e.path === "/") {
      if (e.kind !== "dir") throw new FormatError(`layer entry for the root is not a directory`);
      this.root.stat = statOf(e);
      return;
    }
    const { parent, name } = splitPath(e.path);
    if (name.startsWith(WHITEOUT_PREFIX) && e.kind === "file") {
      const dir = this.#dir(parent, e.path);
      if (name === OPAQUE_MARKER) {
        this.#hideLower(dir, parent);
        return;
      }
      const target = name.slice(WHITEOUT_PREFIX.length);
      if (target === "" || target === "." || target === "..") {
        throw new FormatError(`hostile whiteout ${JSON.stringify(e.path)}: it names no sibling entry`);
      }
      const targetPath = parent === "/" ? `/${target}` : `${parent}/${target}`;
      if (!this.#inThisLayer(targetPath)) dir.entries.delete(target);
      return;
    }
    const dir = this.#dir(parent, e.path);
    const existing = dir.entries.get(name);
    if (e.kind === "dir") {
      if (existing?.kind === "dir") existing.stat = statOf(e); // most derived layer's metadata, children kept
      else dir.entries.set(name, newDirectory(statOf(e)));
      this.#addToThisLayer(e.path);
      return;
    }
    let leaf: Leaf;
    if (e.kind === "hardlink") {
      const target = lookup(this.root, e.linkTarget);
      if (!target) throw new FormatError(`hard link ${e.path} → ${e.linkTarget}: target does not exist`);
      if (target.kind !== "leaf") {
        throw new FormatError(`hard link ${e.path} → ${e.linkTarget}: target is a directory`);
      }
      leaf = target;
    } else {
      leaf = { kind: "leaf", stat: statOf(e), content: leafContent(e) };
    }
    dir.entries.set(name, leaf);
    this.#markSubtree(leaf, e.path);
  }

  /** The final touches (docs/oci.md#flatten): the root takes /usr's metadata (or keeps its own without
   *  /usr), /run is emptied (see rootMetadataForImage). */
  finish(): Directory {
    rootMetadataForImage(this.root);
    return this.root;
  }
}
