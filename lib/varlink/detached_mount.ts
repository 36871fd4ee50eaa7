// Mount and OciMount answer with a detached mount (docs/varlink.md#calls): the image is mounted on a
// private temporary directory, cloned with open_tree(OPEN_TREE_CLONE), and the directory's mount is
// lazily detached again at once; the clone lives on while its descriptor is open.
import {
  AT_FDCWD,
  AT_RECURSIVE,
  MNT_DETACH,
  OPEN_TREE_CLONE,
  openTree,
  umount2,
} from "../linux/mount_api.ts";
import { mountRepositoryImage } from "../mount/repository_image.ts";
import type { Repository } from "../repository/repository.ts";
import type { CallContext } from "./method.ts";
import { bool, invalid, type Params, struct } from "./params.ts";

const OPEN_TREE_CLOEXEC = 0o2000000;

export interface DetachedMountOptions {
  /** A writable overlay whose upper and work directories are the call's first two descriptors. */
  overlay: boolean;
  readWrite: boolean;
}

/** The `options` parameter of Mount/OciMount: {overlay?, read_write?} (read_write needs overlay). */
export function mountOptions(p: Params): DetachedMountOptions {
  const o = struct(p, "options");
  const overlay = bool(o, "overlay", true) ?? false;
  const readWrite = bool(o, "read_write", true) ?? false;
  if (readWrite && !overlay) return invalid("options");
  return { overlay, readWrite };
}

/** Mounts `images/<name>` of `repo` detached; returns the mount's descriptor. */
export async function mountDetached(
  repo: Repository,
  name: string,
  fds: number[],
  opts: DetachedMountOptions,
): Promise<number> {
  if (opts.overlay && fds.length < 2) invalid("fds");
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-varlink-mount-" });
  try {
    await mountRepositoryImage(repo, name, dir, {
      upperdir: opts.overlay ? `/proc/self/fd/${fds[0]}` : undefined,
      workdir: opts.overlay ? `/proc/self/fd/${fds[1]}` : undefined,
      readWrite: opts.readWrite,
    });
    try {
      return openTree(AT_FDCWD, dir, OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC);
    } finally {
      try {
        umount2(dir, MNT_DETACH);
      } catch { /* already gone */ }
    }
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

/**
 * The reply of Mount and OciMount: `{fd_index: 0}`, the detached mount's descriptor passed with it.
 * `onError` maps a failure to the method's varlink error.
 */
export async function replyWithMount(
  cx: CallContext,
  repo: Repository,
  name: string,
  opts: DetachedMountOptions,
  onError: (e: unknown) => never,
): Promise<Params> {
  const fd = await mountDetached(repo, name, cx.call.fds, opts).catch(onError);
  cx.sink.attachFds([fd]);
  return { fd_index: 0 };
}
