// Read (shared) locks on containers/storage's layer and image stores, held while an image is looked
// up and its layers imported, so that a concurrent `podman rmi`, `podman pull` or `podman image prune`
// (which take the same files as write locks) waits until we are done instead of changing or deleting a
// layer under us. Files, kinds and order follow containers/storage's own readers: every store's
// `<driver>-layers/layers.lock` (the main store first, then the additional image stores in their
// configured order), then every store's `<driver>-images/images.lock` in the same order; `storage.lock`
// is not taken (containers/storage holds it only briefly, around (re)loading the graph driver and
// around mounts). Details: docs/containers-storage.md ("Locking").
import { KernelError } from "../../../errors.ts";
import { closeFd, O_RDONLY, openPath } from "../../../linux/fs.ts";
import { Errno } from "../../../linux/libc.ts";
import {
  type RecordLockHolder,
  recordLockHolder,
  recordLockWait,
  tryRecordLock,
} from "../../../linux/record_lock.ts";

export interface StoreLockOptions {
  /**
   * Called before waiting for a lock that another process holds for writing: the lock file and who
   * holds it (pid -1 = an OFD lock, whose owner the kernel does not name), null if it let go meanwhile.
   */
  onWait?: (path: string, holder: RecordLockHolder | null) => void;
}

/** The lock files a reader of these stores takes, in the order it takes them. */
export function storeLockPaths(roots: string[], driver: string): string[] {
  const unique = [...new Set(roots)];
  return [
    ...unique.map((r) => `${r}/${driver}-layers/layers.lock`),
    ...unique.map((r) => `${r}/${driver}-images/images.lock`),
  ];
}

/** Shared locks on a set of stores; `release()` (or closing the process) lets writers in again. */
export class StoreReadLocks {
  /** Lock files held, in the order taken. */
  readonly held: string[] = [];
  /** Lock files that do not exist (a store no containers/storage process has opened): not locked. */
  readonly missing: string[] = [];
  #fds: number[] = [];

  private constructor() {}

  static async acquire(
    roots: string[],
    driver: string,
    opts: StoreLockOptions = {},
  ): Promise<StoreReadLocks> {
    const locks = new StoreReadLocks();
    try {
      for (const path of storeLockPaths(roots, driver)) await locks.#take(path, opts);
    } catch (e) {
      locks.release();
      throw e;
    }
    return locks;
  }

  async #take(path: string, opts: StoreLockOptions): Promise<void> {
    let fd: number;
    try {
      // Read-only: a read lock needs no more, and additional stores may be read-only mounts.
      fd = openPath(path, O_RDONLY);
    } catch (e) {
      if (e instanceof KernelError && e.errno === Errno.ENOENT) {
        this.missing.push(path);
        return;
      }
      throw e instanceof KernelError ? e.within(`containers-storage lock ${path}`) : e;
    }
    this.#fds.push(fd);
    if (!tryRecordLock(fd, "read")) {
      opts.onWait?.(path, recordLockHolder(fd, "read"));
      await recordLockWait(fd, "read");
    }
    this.held.push(path);
  }

  /** Drops every lock (in reverse order) and closes the lock files. Safe to call twice. */
  release(): void {
    for (const fd of this.#fds.reverse()) closeFd(fd);
    this.#fds = [];
    this.held.length = 0;
  }
}
