// Opening an fs context is where "not root" and "kernel lacks this file system" show up first:
// turn those errnos into errors that say what is missing.
import { KernelError, PermissionError } from "../errors.ts";
import { fsopen } from "../linux/mount_api.ts";
import { missingFilesystemMessage } from "./kernel_features.ts";

const EPERM = 1;
const ENODEV = 19;
const ENOSYS = 38;

/** fsopen(fsType) with errors naming CAP_SYS_ADMIN or the missing kernel feature. */
export function openFsContext(fsType: string, purpose: string): number {
  try {
    return fsopen(fsType);
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    if (e.errno === EPERM) {
      throw new PermissionError(
        `mounting composefs images needs CAP_SYS_ADMIN (run as root): fsopen(${fsType}) was refused`,
        { cause: e },
      );
    }
    if (e.errno === ENODEV) {
      throw new KernelError("fsopen", e.errno, e.code, missingFilesystemMessage(fsType, purpose));
    }
    if (e.errno === ENOSYS) {
      throw new KernelError(
        "fsopen",
        e.errno,
        e.code,
        "the kernel lacks the new mount API (fsopen/fsmount, Linux 5.2+) needed for composefs mounts",
      );
    }
    throw e;
  }
}
