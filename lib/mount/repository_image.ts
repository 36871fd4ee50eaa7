// Mounting an image of a repository (spec §9, `cfsctl mount` and `cfsctl oci mount`): only images
// the repository itself links under images/ are mounted; their digest is checked on open, and the
// overlay requires fs-verity unless the repository is insecure and the image has none.
import { RepositoryError } from "../errors.ts";
import type { Repository } from "../repository/repository.ts";
import { openImage } from "../repository/images.ts";
import { mountComposefs, type MountComposefsOptions, type MountedComposefs } from "./composefs.ts";

/** What a repository mount takes besides the image name and the mountpoint. */
export type RepositoryMountOptions = Pick<
  MountComposefsOptions,
  "upperdir" | "workdir" | "readWrite" | "forceLoop" | "layerMode"
>;

/**
 * Mounts `images/<name>` of `repo` at `mountpoint` (NAME = hex image id, verified, or `refs/<ref>`).
 * The mount source reads `composefs:<name>`.
 */
export async function mountRepositoryImage(
  repo: Repository,
  name: string,
  mountpoint: string,
  opts: RepositoryMountOptions = {},
): Promise<MountedComposefs> {
  const image = await openImage(repo, name);
  // The overlay's data layer is objects/ itself: never a symlink to somewhere else.
  if (repo.fs.kind("objects") !== "dir") {
    throw new RepositoryError(`${repo.path}/objects is not a directory (a symlink is not followed)`);
  }
  return await mountComposefs({
    ...opts,
    imagePath: image.path,
    objectsDir: `${repo.path}/objects`,
    mountpoint,
    name,
    verity: image.overlayVerity ? "require" : "none",
  });
}
