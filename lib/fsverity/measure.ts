// The fs-verity digest of a file as an ObjectId: measured by the kernel (FS_IOC_MEASURE_VERITY, through
// lib/linux/fsverity_ioctl.ts), or computed in userspace where the file or filesystem has no verity.
import { closeFd, O_RDONLY, openPath, type PathArg, pathLabel } from "../linux/fs.ts";
import { measureVerityDigest, VerityError } from "../linux/fsverity_ioctl.ts";
import { fsverityDigestFd } from "./digest_fd.ts";
import { type HashAlgorithm, ObjectId } from "./object_id.ts";

/** The kernel's fs-verity digest of `fd`, checked to be of algorithm `alg`; throws VerityError. */
export function measureVerity(fd: number, alg: HashAlgorithm): ObjectId {
  const d = measureVerityDigest(fd, alg);
  return new ObjectId(d.alg, d.bytes);
}

/**
 * The fs-verity digest of the file at `path`: measured by the kernel when the file has verity,
 * computed in userspace when it has none or the filesystem lacks fs-verity.
 */
export async function measureFileWithFallback(path: PathArg, alg: HashAlgorithm): Promise<ObjectId> {
  const fd = openPath(path, O_RDONLY);
  try {
    try {
      return measureVerity(fd, alg);
    } catch (e) {
      if (!(e instanceof VerityError && (e.kind === "missing" || e.kind === "unsupported"))) {
        throw e instanceof VerityError ? e.within(pathLabel(path)) : e;
      }
    }
    return await fsverityDigestFd(fd, alg);
  } finally {
    closeFd(fd);
  }
}
