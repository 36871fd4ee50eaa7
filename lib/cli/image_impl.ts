// What the image commands (cmd_image.ts) run: directory scanning, EROFS writer/reader, dumpfiles;
// imported when an action starts rather than at start-up.
import type { HashAlgorithm } from "../fsverity/object_id.ts";
import type { ObjectStore } from "../objects/store.ts";
import { scanDirectory } from "../tree/scan.ts";
import { CONTAINER_XATTR_ALLOWLIST, propagateUsrToRoot } from "../tree/transform.ts";
import type { Directory } from "../tree/tree.ts";

export { collectObjects } from "../erofs/reader.ts";
export { writeErofs } from "../erofs/writer.ts";
export { fsverityDigest } from "../fsverity/hasher.ts";
export { writeDumpfile } from "../dumpfile/write.ts";
export { commitImages } from "../repository/commit_images.ts";
export { imageFileLines } from "../repository/image_files.ts";
export { hashForRepoless, openRepoFromGlobals, repoPathFromGlobals } from "./repo_open.ts";

export interface ReadFlags {
  bootable?: boolean;
  propagateUsrToRoot?: boolean; // commander: --no-propagate-usr-to-root sets false
}

/** Reads PATH the way create-image / compute-id / create-dumpfile do (README.md#command-reference). */
export async function readFsTree(
  path: string,
  flags: ReadFlags,
  alg: HashAlgorithm,
  store?: ObjectStore,
): Promise<Directory> {
  const containerRoot = flags.propagateUsrToRoot !== false;
  const root = await scanDirectory(path, {
    alg,
    store,
    // composefs-rs keeps hard links found on disk (mkcomposefs breaks them, like C).
    hardlinks: true,
    // The container-root reading keeps only allowlisted xattrs; filtering while reading is the same.
    xattrFilter: containerRoot ? (n) => CONTAINER_XATTR_ALLOWLIST.includes(n) : undefined,
  });
  if (containerRoot) propagateUsrToRoot(root);
  if (flags.bootable) {
    const { dirLeafReader, transformForBoot } = await import("../boot/transform.ts");
    await transformForBoot(root, dirLeafReader(path));
  }
  return root;
}
