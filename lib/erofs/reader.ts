// Public entry points of the composefs EROFS reader (docs/erofs.md#reader). Strict: every image is checked
// against the composefs restrictions, and a malformed or hostile image gives a FormatError naming
// the nid / byte offset at fault, never another exception, a hang or an outsized allocation.
//
// Deliberate deviations from composefs-rs 0.7.0 (which rejects inline files > 512 bytes and reads
// only the inline part of symlinks): inline regular files up to 5000 bytes (data blocks + tail) and
// symlink targets up to 4095 bytes stored in data blocks are accepted, because C mkcomposefs writes
// them and `composefs-info dump` must read C images.
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import { ObjectId as ObjectIdClass } from "../fsverity/object_id.ts";
import type { Directory, Inode } from "../tree/tree.ts";
import { ErofsImage, type ImageHeader } from "./read_image.ts";
import { type ReadOptions, TreeReader } from "./read_tree.ts";
import { DigestSet } from "../objects/digest_set.ts";

export type { ImageHeader } from "./read_image.ts";
export type { ReadOptions } from "./read_tree.ts";

/** Validates the composefs header and superblock only (cheap) and returns their fields. */
export function readErofsHeader(image: Uint8Array): ImageHeader {
  return new ErofsImage(image).header;
}

/** Reads a composefs image into a file tree (hard links = the same Leaf object). */
export function readErofs(image: Uint8Array, opts?: { alg?: HashAlgorithm }): Directory {
  return new TreeReader(new ErofsImage(image), { alg: opts?.alg }).read();
}

/** Like readErofs, also returning the header (format version etc.). */
export function readErofsWithHeader(
  image: Uint8Array,
  opts?: ReadOptions,
): { root: Directory; header: ImageHeader } {
  const img = new ErofsImage(image);
  return { root: new TreeReader(img, opts).read(), header: img.header };
}

/**
 * Full structural check for repository fsck: everything readErofs checks plus the layout-epoch
 * invariants (epoch 1: all 256 root stub slots, no native whiteouts outside the root, V1 symlinks
 * not crossing a block; V2: no escaped whiteouts; every xattr visible through the bloom filter).
 * Throws FormatError on the first problem.
 */
export function fsckMetadata(image: Uint8Array, opts?: { alg?: HashAlgorithm }): void {
  new TreeReader(new ErofsImage(image), { alg: opts?.alg, fsck: true }).read();
}

/**
 * Every object the image refers to: metacopy digests, plus redirect targets that name an object
 * (C images may redirect without a digest, or to a different path). Unique, sorted by hex. The
 * image is fully validated (fsck included) first: gc and fsck must not act on a corrupt image.
 */
export function collectObjects(image: Uint8Array, alg?: HashAlgorithm): ObjectId[] {
  const root = new TreeReader(new ErofsImage(image), { alg, fsck: true }).read();
  return objectsOfTree(root, alg);
}

/** The objects referenced by a tree's external files (see collectObjects). */
export function objectsOfTree(root: Directory, alg?: HashAlgorithm): ObjectId[] {
  // The tree's own ids, deduplicated by their bytes: no hex string or map key per object (for an image
  // of 100,000 files those were most of what gc and fsck held, docs/performance.md#fsck).
  const seenIds = new Map<number, DigestSet>();
  const found: ObjectId[] = [];
  const add = (id: ObjectId) => {
    let set = seenIds.get(id.bytes.length);
    if (!set) seenIds.set(id.bytes.length, set = new DigestSet(id.bytes.length));
    const before = set.size;
    set.add(id.bytes);
    if (set.size > before) found.push(id);
  };
  const addPath = (payload: string | undefined) => {
    if (payload === undefined) return;
    try {
      const id = ObjectIdClass.fromObjectPath(payload.startsWith("/") ? payload.slice(1) : payload, alg);
      if (!alg || id.alg === alg) add(id);
    } catch {
      // a redirect to a backing path that is not an object path: nothing to keep alive
    }
  };
  const seen = new Set<Inode>();
  const stack: Directory[] = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const node of dir.entries.values()) {
      if (node.kind === "dir") {
        stack.push(node);
        continue;
      }
      if (seen.has(node)) continue;
      seen.add(node);
      const c = node.content;
      if (c.type === "external") {
        add(c.id);
        addPath(c.payload);
      } else if (c.type === "external-noverity") {
        addPath(c.payload);
      }
    }
  }
  // The order of their `alg:hex` forms: algorithm name, then the bytes (hex order is byte order).
  return found.sort(compareIds);
}

function compareIds(a: ObjectId, b: ObjectId): number {
  if (a.alg !== b.alg) return a.alg < b.alg ? -1 : 1;
  const x = a.bytes;
  const y = b.bytes;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}
