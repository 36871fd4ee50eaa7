// The lower layer of a composefs mount: the EROFS image mounted read-only and detached (an fd, never
// attached anywhere). Kernels since 6.12 mount EROFS straight from a file; older ones answer ENOTBLK
// and get a loop device instead (also used when forced, so that path stays tested).
import { KernelError } from "../errors.ts";
import { attachLoopDevice, detachLoopDevice } from "../linux/loop.ts";
import {
  closeFd,
  ENOTBLK,
  fsconfigCreate,
  fsconfigSetFlag,
  fsconfigSetString,
  fsmount,
  FSMOUNT_CLOEXEC,
  readFsLog,
} from "../linux/mount_api.ts";
import type { Cleanup } from "./cleanup.ts";
import { openFsContext } from "./open_context.ts";

export interface ErofsMount {
  /** Detached mount fd (closed by the cleanup registered in `cleanup`). */
  mountFd: number;
  /** The loop device used, when the image was not mounted straight from the file. */
  loopDevice?: string;
  /** Warnings the kernel logged in the fs context. */
  warnings: string[];
}

function mountErofsSource(source: string, warnings: string[]): number {
  const fsfd = openFsContext("erofs", "composefs images are EROFS file systems");
  try {
    fsconfigSetFlag(fsfd, "ro");
    fsconfigSetString(fsfd, "source", source);
    fsconfigCreate(fsfd);
    const mnt = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
    for (const m of readFsLog(fsfd)) if (m.level === "w") warnings.push(`erofs: ${m.text}`);
    return mnt;
  } finally {
    closeFd(fsfd);
  }
}

/**
 * Mounts the image behind `imageFd` as a detached read-only EROFS. `label` names the image in errors.
 * Every resource taken is registered in `cleanup` (the loop device is released once the mount fd
 * is closed and no mount uses it, thanks to LO_FLAGS_AUTOCLEAR).
 */
export function mountErofsDetached(
  imageFd: number,
  label: string,
  cleanup: Cleanup,
  opts: { forceLoop?: boolean } = {},
): ErofsMount {
  const warnings: string[] = [];
  if (!opts.forceLoop) {
    try {
      const mountFd = mountErofsSource(`/proc/self/fd/${imageFd}`, warnings);
      cleanup.defer(() => closeFd(mountFd));
      return { mountFd, warnings };
    } catch (e) {
      // ENOTBLK: this erofs only mounts block devices (kernel < 6.12): fall through to a loop device.
      if (!(e instanceof KernelError && e.errno === ENOTBLK)) throw e;
    }
  }
  const loop = attachLoopDevice(imageFd, new TextEncoder().encode(label));
  let mountFd: number;
  try {
    mountFd = mountErofsSource(loop.path, warnings);
  } catch (e) {
    detachLoopDevice(loop);
    throw e instanceof KernelError ? e.within(`through ${loop.path}`) : e;
  }
  // The mount now holds the block device; our fd is no longer needed, and closing it lets
  // AUTOCLEAR free the device when the mount goes away.
  closeFd(loop.fd);
  cleanup.defer(() => closeFd(mountFd));
  return { mountFd, loopDevice: loop.path, warnings };
}
