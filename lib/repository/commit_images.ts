// Committing a file tree as the repository's images (docs/repository.md#streams-images): one EROFS image per
// format the repository is configured for (meta.json), the default format's first. Kept out of
// repository.ts so that opening a repository does not load the EROFS writer.
import { writeErofs, writeErofsTo } from "../erofs/writer.ts";
import { fsverityDigest } from "../fsverity/hasher.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Directory } from "../tree/tree.ts";
import type { Repository } from "./repository.ts";

/**
 * Writes and stores one EROFS image of `tree` per configured format; `name`, when given, names the
 * default format's image (images/refs/NAME). Returns [version, image id] pairs, default first.
 */
export async function commitImages(
  repo: Repository,
  tree: Directory,
  name?: string,
): Promise<[0 | 1 | 2, ObjectId][]> {
  const out: [0 | 1 | 2, ObjectId][] = [];
  for (const version of repo.erofsVersions()) {
    // In 1 MiB pieces: the image of a big tree need not sit in memory beside the tree.
    const produce = (sink: (piece: Uint8Array) => void) => writeErofsTo(tree, { version }, sink);
    out.push([version, await repo.writeImageFrom(produce, out.length === 0 ? name : undefined)]);
  }
  return out;
}

/** The composefs image id of `tree` in one format: the fs-verity digest of its EROFS image (nothing stored). */
export function computeImageId(repo: Repository, tree: Directory, version: 0 | 1 | 2): ObjectId {
  return fsverityDigest(writeErofs(tree, { version }), repo.alg);
}
