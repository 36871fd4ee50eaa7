// Storing one diff/ file as an object on the calling thread (docs/containers-storage.md): the paths
// the import threads (import_workers.ts) do not take — a hard link of the diff/ file itself where
// that is safe (canHardlink), a copy (not in zerocopy mode), a clone made here where no import
// thread could start — and the state they share across the layers of one import. Every object is
// hashed from its own bytes (the clone, the copy or the linked file), so what is named by a digest
// is what was hashed.
import type { Hash } from "node:crypto";
import { FormatError, InvalidArgumentError, KernelError } from "../../../errors.ts";
import { FsVerityHasher } from "../../../fsverity/hasher.ts";
import type { ObjectId } from "../../../fsverity/object_id.ts";
import {
  closeFd,
  ficlone,
  linkTmpfile,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  pread,
  writeAll,
} from "../../../linux/fs.ts";
import { willNeed } from "../../../linux/file_extents.ts";
import { isRegular, pathSize, statFd, type StatxResult } from "../../../linux/fs_at.ts";
import { openBeneath } from "../../../linux/openat2.ts";
import { Errno } from "../../../linux/libc.ts";
import { readXattrsFd } from "../../../linux/xattr.ts";
import type { ObjectDir } from "../../../objects/object_dir.ts";
import { ImportWorkers, type PrefetchItem, type PrefetchResult } from "./import_workers.ts";
import { hashThreadsRequested } from "../../../fsverity/leaf_pool.ts";
import { hashBackendName } from "../../../fsverity/backend.ts";

/** `--local-fetch`: disabled = skopeo proxy; auto = reflink, hard link or copy; zerocopy = no copy. */
export type LocalFetchMode = "disabled" | "auto" | "zerocopy";

export interface LocalFetchStats {
  reflinked: number;
  hardlinked: number;
  copied: number;
  present: number;
  bytesReflinked: number;
  bytesHardlinked: number;
  bytesCopied: number;
}

export function emptyLocalFetchStats(): LocalFetchStats {
  return {
    reflinked: 0,
    hardlinked: 0,
    copied: 0,
    present: 0,
    bytesReflinked: 0,
    bytesHardlinked: 0,
    bytesCopied: 0,
  };
}

export interface LayerImportOptions {
  mode: "auto" | "zerocopy";
  /** `sha256:…` to check the reassembled stream against; undefined = trusted (not re-hashed). */
  verifyDiffId?: string;
  /** Whether the repository is insecure (no fs-verity required): a condition for hard links. */
  insecure: boolean;
  onProgress?: (bytes: number) => void;
}

/** What the import looks at of a diff/ file's statx. */
export type FileStat = Pick<StatxResult, "mode" | "size" | "nlink" | "uid" | "dev">;

/**
 * Import threads by default: they wait for the disk (cold metadata, extent maps, data) as much as
 * they hash, so one more than the two cores measured keeps more requests in flight
 * (docs/performance.md#containers-storage).
 */
const IMPORT_THREADS = 3;

const BUF_SIZE = 1 << 20;
const SMALL_COPY_MAX = 1 << 20;

/**
 * What the layers of one import share: whether reflinks or hard links failed with "this filesystem
 * cannot" per (source device, objects device), so the rest of the import does not try again; the
 * statistics; the import threads.
 */
export class ZeroCopyState {
  /** (source dev>objects dev) → why reflinks cannot work there. */
  readonly noReflink = new Map<string, string>();
  readonly noHardlink = new Set<number>();
  objectsDev?: number;
  readonly stats = emptyLocalFetchStats();
  readonly buf = new Uint8Array(BUF_SIZE);
  hasher?: FsVerityHasher;
  /** Open, reflink, hash and link on worker threads; null where none could start (or none wanted). */
  prefetch?: ImportWorkers | null;

  /**
   * Starts the import threads now (once) unless CFSCTL_HASH_THREADS=0; their number is
   * CFSCTL_HASH_THREADS, else IMPORT_THREADS. Returns them, or null where none can run.
   */
  startThreads(): ImportWorkers | null {
    if (this.prefetch !== undefined) return this.prefetch;
    const n = hashThreadsRequested() ?? IMPORT_THREADS;
    try {
      this.prefetch = n > 0 ? new ImportWorkers(n, hashBackendName() === "libcrypto") : null;
    } catch {
      this.prefetch = null;
    }
    return this.prefetch;
  }

  /** Ends the import threads (the import is over). */
  async close(): Promise<void> {
    await this.prefetch?.terminate();
    this.prefetch = undefined;
  }
}

function isCannot(e: unknown): boolean {
  return e instanceof KernelError &&
    [Errno.EOPNOTSUPP, Errno.EXDEV, Errno.EINVAL, Errno.ENOTTY, Errno.ENOSYS, Errno.EPERM].includes(
      e.errno as never,
    );
}

/**
 * The import threads' work for one file on this thread (where no thread can be started), hashing
 * aside: the clone is hashed by storeFile. Failures come back as errnos, like the threads'.
 */
export function prefetchHere(diffFd: number, item: PrefetchItem, objects: ObjectDir): PrefetchResult {
  const r: PrefetchResult = {
    fd: -1,
    openErrno: 0,
    mode: 0,
    size: 0,
    nlink: 0,
    uid: 0,
    dev: 0,
    tmp: -1,
    cloneErrno: 0,
  };
  try {
    // O_NONBLOCK: a FIFO put in diff/ must not block the open (it is refused as not a regular file).
    r.fd = openBeneath(diffFd, item.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, undefined, {
      followBeneath: true,
    });
    const { mode, size, nlink, uid, dev } = statFd(r.fd);
    Object.assign(r, { mode, size, nlink, uid, dev });
  } catch (e) {
    r.openErrno = e instanceof KernelError ? e.errno : Errno.EIO;
    return r;
  }
  if (item.clone && isRegular(r) && r.size === item.size) {
    const tmp = objects.tmpfile(objects.dir);
    if (tmp === null) r.cloneErrno = Errno.EOPNOTSUPP;
    else {
      try {
        ficlone(tmp, r.fd);
        r.tmp = tmp;
      } catch (e) {
        closeFd(tmp);
        r.cloneErrno = e instanceof KernelError ? e.errno : Errno.EIO;
      }
    }
  }
  willNeed(r.tmp >= 0 ? r.tmp : r.fd);
  return r;
}

/** The first `size` bytes of fd (into `buf`, which must be large enough). */
export function readExactly(fd: number, size: number, buf: Uint8Array, label: string): Uint8Array {
  let o = 0;
  while (o < size) {
    const n = pread(fd, buf.subarray(o, size), o);
    if (n === 0) throw new FormatError(`${label}: file shrank while being read (${o} of ${size} bytes)`);
    o += n;
  }
  return buf.subarray(0, size);
}

/** Feeds the `size` bytes of `fd` to `update`, a buffer at a time; a file that ended early throws. */
export function readAll(
  fd: number,
  size: number,
  buf: Uint8Array,
  label: string,
  update: (chunk: Uint8Array) => void,
): void {
  for (let o = 0; o < size;) {
    const n = pread(fd, buf.subarray(0, Math.min(buf.length, size - o)), o);
    if (n === 0) throw new FormatError(`${label}: file shrank while being read (${o} of ${size} bytes)`);
    update(buf.subarray(0, n));
    o += n;
  }
}

/** Hashes `size` bytes of `fd` from offset 0: its fs-verity digest, and the diff_id hash if any. */
function hashFd(
  fd: number,
  size: number,
  state: ZeroCopyState,
  sha: Hash | undefined,
  label: string,
): ObjectId {
  const h = state.hasher!;
  h.reset();
  readAll(fd, size, state.buf, label, (chunk) => {
    h.update(chunk);
    sha?.update(chunk);
  });
  // One more read must see the end: a file that grew is not the layer's file any more.
  if (pread(fd, state.buf.subarray(0, 1), size) !== 0) {
    throw new FormatError(`${label}: file grew while being read`);
  }
  return h.digest();
}

/**
 * A hard link shares the inode with containers-storage: its mode, owner and xattrs, and any later
 * change to it. Done only where that cannot widen access or be changed unnoticed by us: the
 * repository is insecure (no fs-verity demanded on its objects: this kernel has none), the file is on
 * the objects' filesystem, has no set-uid/set-gid bit and no file capabilities.
 */
function canHardlink(
  fd: number,
  st: FileStat,
  state: ZeroCopyState,
  opts: LayerImportOptions,
): string | null {
  if (!opts.insecure) {
    return "the repository requires fs-verity (a hard link would need verity on the storage file)";
  }
  if (st.dev !== state.objectsDev) return "storage and repository are on different filesystems";
  if (state.noHardlink.has(st.dev)) return "hard links failed before on this filesystem";
  if (st.mode & 0o6000) return "set-uid/set-gid file";
  try {
    if (readXattrsFd(fd).has("security.capability")) return "file has capabilities";
  } catch { /* no xattr support: none */ }
  return null;
}

/**
 * Stores the diff/ file open as `fd` here: finishes the clone `tmp` made by prefetchHere (-1: none;
 * it is closed here), else hard-links the file, else copies it. Feeds `sha` (the diff_id hash) with
 * exactly the bytes hashed for the object.
 */
export async function storeFile(
  fd: number,
  st: FileStat,
  objects: ObjectDir,
  state: ZeroCopyState,
  opts: LayerImportOptions,
  sha: Hash | undefined,
  label: string,
  tmp: number,
): Promise<ObjectId> {
  state.hasher ??= new FsVerityHasher(objects.alg);
  if (tmp >= 0) return await finishTmpfile(tmp, st.size, objects, state, sha, label, "reflinked");
  const pair = `${st.dev}>${state.objectsDev}`;
  let whyNot = `reflink: ${state.noReflink.get(pair) ?? "not tried"}`;
  const noLink = canHardlink(fd, st, state, opts);
  if (noLink === null) {
    const id = hashFd(fd, st.size, state, sha, label);
    const final = objects.pathOf(id);
    if (pathSize(final) === st.size) {
      state.stats.present++;
      objects.countFinished(true);
      return id;
    }
    await objects.ensureSubdir(id);
    try {
      const linked = linkTmpfile(fd, final); // a named file gets one more name the same way
      objects.countFinished(!linked);
      if (linked) {
        state.stats.hardlinked++;
        state.stats.bytesHardlinked += st.size;
      } else state.stats.present++;
      return id;
    } catch (e) {
      if (!isCannot(e) && !(e instanceof KernelError && e.errno === Errno.EACCES)) throw e;
      state.noHardlink.add(st.dev);
      whyNot += `; hard link: ${(e as KernelError).code}`;
      // Already hashed into `sha`: the copy below must not feed it again.
      return await copyFile(fd, st.size, objects, state, opts, undefined, label, whyNot);
    }
  }
  whyNot += `; hard link: ${noLink}`;
  return await copyFile(fd, st.size, objects, state, opts, sha, label, whyNot);
}

async function copyFile(
  fd: number,
  size: number,
  objects: ObjectDir,
  state: ZeroCopyState,
  opts: LayerImportOptions,
  sha: Hash | undefined,
  label: string,
  whyNot: string,
): Promise<ObjectId> {
  if (opts.mode === "zerocopy") {
    throw new InvalidArgumentError(
      `--local-fetch zerocopy: ${label} can be neither reflinked nor hard-linked (${whyNot})`,
    );
  }
  state.stats.copied++;
  state.stats.bytesCopied += size;
  if (size <= SMALL_COPY_MAX) {
    const data = readExactly(fd, size, state.buf, label);
    sha?.update(data);
    return await objects.ensureObjectBorrowed(data);
  }
  const tmp = objects.tmpfile(objects.dir);
  if (tmp === null) {
    const w = objects.createObjectWriter();
    try {
      for (let o = 0; o < size;) {
        const n = pread(fd, state.buf, o);
        if (n === 0) throw new FormatError(`${label}: file shrank while being read`);
        const c = state.buf.subarray(0, n);
        sha?.update(c);
        await w.write(c);
        o += n;
      }
    } catch (e) {
      await w.abort();
      throw e;
    }
    return (await w.finish()).id;
  }
  // The copy is written first and then hashed from the copy, like a reflink.
  try {
    readAll(fd, size, state.buf, label, (c) => writeAll(tmp, c));
  } catch (e) {
    closeFd(tmp);
    throw e;
  }
  state.stats.copied--; // counted by finishTmpfile
  state.stats.bytesCopied -= size;
  return await finishTmpfile(tmp, size, objects, state, sha, label, "copied");
}

/** Hashes the filled O_TMPFILE, then links it under its digest (or drops it if present). */
async function finishTmpfile(
  tmp: number,
  size: number,
  objects: ObjectDir,
  state: ZeroCopyState,
  sha: Hash | undefined,
  label: string,
  how: "reflinked" | "copied",
): Promise<ObjectId> {
  let fd = tmp;
  try {
    const id = hashFd(tmp, size, state, sha, label);
    const final = objects.pathOf(id);
    if (pathSize(final) === size) {
      state.stats.present++;
      objects.countFinished(true);
      return id;
    }
    fd = -1;
    fd = objects.sealTmpfile(tmp, objects.dir, id);
    await objects.ensureSubdir(id);
    const linked = linkTmpfile(fd, final);
    objects.countFinished(!linked);
    if (!linked) state.stats.present++;
    else if (how === "reflinked") {
      state.stats.reflinked++;
      state.stats.bytesReflinked += size;
    } else {
      state.stats.copied++;
      state.stats.bytesCopied += size;
    }
    return id;
  } finally {
    if (fd >= 0) closeFd(fd);
  }
}
