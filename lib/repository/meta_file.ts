// Reading and writing meta.json on disk (docs/repository.md#meta-json). Writing goes through an O_TMPFILE
// that gets its verity before it is linked, so a visible meta.json is always complete (and sealed when the
// repository is secure). Whether a repository is secure is not stored: it is whether meta.json
// carries fs-verity.
import { RepositoryError } from "../errors.ts";
import type { HashAlgorithm } from "../fsverity/object_id.ts";
import {
  closeFd,
  fsync,
  linkTmpfile,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  openPath,
  openTmpfile,
  writeAll,
} from "../linux/fs.ts";
import { RepoFs, RepoPathError } from "./repo_fs.ts";

/** meta.json is a few hundred bytes; anything beyond this is not one. */
const MAX_META_BYTES = 1 << 20;
import { enableVerityOnTmpfile } from "../linux/fsverity_ioctl.ts";
import { META_FILENAME, parseAlgorithm, parseMeta, type RepoMeta, serializeMeta } from "./meta.ts";
import { enableOrTolerate, measureOrNull, noVerityError } from "../objects/verity.ts";

/** Writes meta.json unless it exists. Returns false (and writes nothing) when it already exists. */
export async function writeMetaFile(repoPath: string, meta: RepoMeta, withVerity: boolean): Promise<boolean> {
  const alg = parseAlgorithm(meta.algorithm);
  const data = serializeMeta(meta);
  const dest = `${repoPath}/${META_FILENAME}`;
  const w = openTmpfile(repoPath, 0o644);
  if (w === null) return await writeMetaNamed(dest, data, alg, withVerity);
  try {
    writeAll(w, data);
    fsync(w);
  } catch (e) {
    closeFd(w);
    throw e;
  }
  let fd = w;
  if (withVerity) {
    const r = enableVerityOnTmpfile(w, repoPath, alg);
    fd = r.fd;
    if (!r.enabled) {
      closeFd(fd);
      throw noVerityError(META_FILENAME);
    }
  }
  try {
    return linkTmpfile(fd, dest);
  } finally {
    closeFd(fd);
  }
}

/** Fallback without O_TMPFILE: exclusive create, write, sync, then seal. */
async function writeMetaNamed(
  dest: string,
  data: Uint8Array,
  alg: HashAlgorithm,
  withVerity: boolean,
): Promise<boolean> {
  try {
    using f = await Deno.open(dest, { write: true, createNew: true, mode: 0o644 });
    let off = 0;
    while (off < data.length) off += await f.write(data.subarray(off));
    await f.sync();
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return false;
    throw e;
  }
  if (withVerity) {
    const fd = openPath(dest, O_RDONLY);
    try {
      enableOrTolerate(fd, alg, false, META_FILENAME);
    } finally {
      closeFd(fd);
    }
  }
  return true;
}

export interface MetaOnDisk {
  meta: RepoMeta;
  bytes: Uint8Array;
}

/** Reads and parses meta.json; null when absent. Parse errors are RepositoryErrors. */
export async function readMetaFile(repoPath: string): Promise<MetaOnDisk | null> {
  let bytes: Uint8Array;
  // Strictly: no symlink, and a regular file of sane size (a FIFO or /dev/zero never hangs an open).
  const dirFd = openPath(repoPath, O_RDONLY | O_DIRECTORY);
  try {
    bytes = new RepoFs(dirFd, repoPath).readFile(META_FILENAME, MAX_META_BYTES);
  } catch (e) {
    if (e instanceof RepoPathError && e.code === "not-found") return null;
    throw new RepositoryError(`reading ${META_FILENAME}`, { cause: e });
  } finally {
    closeFd(dirFd);
  }
  await Promise.resolve();
  try {
    return { meta: parseMeta(bytes), bytes };
  } catch (e) {
    throw new RepositoryError(`failed to parse ${META_FILENAME}`, { cause: e });
  }
}

/** True when meta.json carries fs-verity of algorithm `alg` (the repository is then "secure"). */
export function metaHasVerity(repoPath: string, alg: HashAlgorithm): boolean {
  const fd = openPath(`${repoPath}/${META_FILENAME}`, O_RDONLY | O_NONBLOCK | O_NOFOLLOW);
  try {
    return measureOrNull(fd, alg) !== null;
  } finally {
    closeFd(fd);
  }
}
