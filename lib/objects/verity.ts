// How the repository applies fs-verity: secure repositories require it, insecure ones use it when
// the filesystem has it and fall back to userspace digests otherwise (docs/fsverity.md#kernel).
import { IntegrityError, RepositoryError } from "../errors.ts";
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import { measureVerity } from "../fsverity/measure.ts";
import { enableVerity, VerityError } from "../linux/fsverity_ioctl.ts";

/** True for the verity errors that mean "this file/filesystem has no verity" (not a real failure). */
export function isNoVerity(e: unknown): boolean {
  return e instanceof VerityError && (e.kind === "unsupported" || e.kind === "missing");
}

/** Kernel-measured digest, or null when the file has no verity or the filesystem cannot have it. */
export function measureOrNull(fd: number, alg: HashAlgorithm): ObjectId | null {
  try {
    return measureVerity(fd, alg);
  } catch (e) {
    if (isNoVerity(e)) return null;
    throw e;
  }
}

export function noVerityError(what: string, cause?: unknown): RepositoryError {
  return new RepositoryError(
    `cannot enable fs-verity on ${what}: the filesystem does not support fs-verity ` +
      `(this repository requires verity; \`cfsctl init --insecure\` creates one without it)`,
    { cause },
  );
}

/**
 * Enables verity on a read-only fd of a complete file. Returns false when the filesystem does not
 * support it and the repository is insecure; secure repositories fail.
 */
export function enableOrTolerate(fd: number, alg: HashAlgorithm, insecure: boolean, what: string): boolean {
  try {
    enableVerity(fd, alg);
    return true;
  } catch (e) {
    if (e instanceof VerityError && e.kind === "already-enabled") return true;
    if (e instanceof VerityError && e.kind === "unsupported") {
      if (insecure) return false;
      throw noVerityError(what, e);
    }
    throw e;
  }
}

/** After verity was enabled: the kernel's digest must equal the userspace one. */
export function checkMeasured(fd: number, id: ObjectId, insecure: boolean, what: string): void {
  const measured = measureOrNull(fd, id.alg);
  if (measured === null) {
    if (insecure) return;
    throw new RepositoryError(`fs-verity missing on ${what} after enabling it`);
  }
  if (!measured.equals(id)) {
    throw new IntegrityError(`kernel fs-verity digest ${measured.hex()} differs from computed ${id.hex()}`, {
      context: [what],
    });
  }
}
