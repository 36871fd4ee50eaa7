// Checks on the image file before the kernel sees it: the kernel answers a non-EROFS file with a bare
// EINVAL (its reason only goes to dmesg), and a digest mismatch must stop the mount, not follow it.
import { FormatError, IntegrityError } from "../errors.ts";
import { EROFS_MAGIC, SUPERBLOCK_OFFSET } from "../erofs/format.ts";
import { fsverityDigestFd } from "../fsverity/digest_fd.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { measureVerity } from "../fsverity/measure.ts";
import { VerityError } from "../linux/fsverity_ioctl.ts";
import { preadFd } from "../linux/mount_api.ts";

/** Throws FormatError unless the file behind `fd` has the EROFS superblock magic at offset 1024. */
export function checkErofsMagic(fd: number, label: string): void {
  const buf = new Uint8Array(4);
  const n = preadFd(fd, buf, SUPERBLOCK_OFFSET);
  const magic = n === 4 ? new DataView(buf.buffer).getUint32(0, true) : undefined;
  if (magic !== EROFS_MAGIC) {
    const why = n < 4
      ? `the file is too short (${n === 0 ? "nothing" : n + " bytes"} at offset ${SUPERBLOCK_OFFSET})`
      : `no EROFS superblock magic at offset ${SUPERBLOCK_OFFSET} (found 0x${magic!.toString(16)})`;
    throw new FormatError(`${label} is not an EROFS image: ${why}`);
  }
}

/** How an image digest was established: by the kernel (fs-verity enabled on the file) or by hashing. */
export type DigestSource = "kernel" | "userspace";

/**
 * Verifies that the image behind `fd` has fs-verity digest `expected`. The kernel measurement is
 * preferred (it also proves the file is verity-protected); without fs-verity on the file the digest
 * is computed in userspace, which checks the bytes now but cannot protect later reads.
 */
export async function checkImageDigest(fd: number, label: string, expected: ObjectId): Promise<DigestSource> {
  let actual: ObjectId;
  let source: DigestSource = "kernel";
  try {
    actual = measureVerity(fd, expected.alg);
  } catch (e) {
    if (!(e instanceof VerityError && (e.kind === "missing" || e.kind === "unsupported"))) {
      throw e instanceof VerityError ? e.within(label) : e;
    }
    actual = await fsverityDigestFd(fd, expected.alg);
    source = "userspace";
  }
  if (!actual.equals(expected)) {
    throw new IntegrityError(
      `${label} has fs-verity digest ${actual.hex()}, expected ${expected.hex()} (the digest option cannot be satisfied)`,
    );
  }
  return source;
}
