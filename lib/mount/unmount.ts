// Unmounting a composefs mount (one overlay; its EROFS layer and loop device go away with it).
import { KernelError, NotFoundError, PermissionError } from "../errors.ts";
import { MNT_DETACH, umount2 } from "../linux/mount_api.ts";

/** umount2(mountpoint); `lazy` detaches even when busy (MNT_DETACH). */
export function unmountComposefs(mountpoint: string, opts: { lazy?: boolean } = {}): void {
  try {
    umount2(mountpoint, opts.lazy ? MNT_DETACH : 0);
  } catch (e) {
    if (e instanceof KernelError) {
      if (e.errno === 2) throw new NotFoundError(`${mountpoint} does not exist`, { cause: e });
      if (e.errno === 22) throw new NotFoundError(`${mountpoint} is not a mount point`, { cause: e });
      if (e.errno === 1) {
        throw new PermissionError(`unmounting needs CAP_SYS_ADMIN (run as root)`, { cause: e });
      }
    }
    throw e;
  }
}
