// Mounting an image of a repository (docs/mount.md, `cfsctl mount` and `cfsctl oci mount`): only images
// the repository itself links under images/ are mounted; their digest is checked on open, and the
// overlay requires fs-verity unless the repository is insecure and the image has none.
import { describeError, NotFoundError, RepositoryError } from "../errors.ts";
import { addMountRef, removeMountRefsAt } from "../repository/mount_refs.ts";
import { unmountComposefs } from "./unmount.ts";
import type { Repository } from "../repository/repository.ts";
import { openImage } from "../repository/images.ts";
import { mountComposefs, type MountComposefsOptions, type MountedComposefs } from "./composefs.ts";

/** What a repository mount takes besides the image name and the mountpoint. */
export type RepositoryMountOptions = Pick<
  MountComposefsOptions,
  "upperdir" | "workdir" | "readWrite" | "forceLoop" | "layerMode" | "nosuid" | "nodev" | "noexec"
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
  const mounted = await mountComposefs({
    ...opts,
    imagePath: image.path,
    objectsDir: `${repo.path}/objects`,
    mountpoint,
    name,
    verity: image.overlayVerity ? "require" : "none",
  });
  // The mount's own image ref (docs/gc.md): gc keeps the objects while the mount exists. Made
  // while this process still holds the repository's shared lock, so no gc runs in between.
  try {
    mounted.mountRef = (await addMountRef(repo, image.id, mounted.mountpoint)) ?? undefined;
    if (!mounted.mountRef) mounted.mountRefError = `no mount found at ${mounted.mountpoint} in mountinfo`;
  } catch (e) {
    mounted.mountRefError = describeError(e);
  }
  return mounted;
}

/**
 * Unmounts a repository mount at `mountpoint` and removes its mount ref (the mount's objects become
 * collectable again). Returns the refs removed.
 */
export function unmountRepositoryImage(
  repo: Repository,
  mountpoint: string,
  opts: { lazy?: boolean } = {},
): string[] {
  let canonical: string;
  try {
    canonical = Deno.realPathSync(mountpoint);
  } catch (e) {
    throw new NotFoundError(`${mountpoint} does not exist`, { cause: e });
  }
  unmountComposefs(canonical, opts);
  return removeMountRefsAt(repo, canonical);
}
