// The repository lock (docs/repository.md#locking): flock on the repository directory fd. Every open
// repository holds it shared; gc converts it to exclusive so it waits until no other process has the repo
// open.
import { closeFd, flock, openDir } from "../linux/fs.ts";

export class RepoLock {
  readonly fd: number;
  #closed = false;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Opens `path` (a directory) and takes the shared lock (blocking). */
  static acquireShared(path: string): RepoLock {
    const fd = openDir(path);
    try {
      flock(fd, "sh");
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return new RepoLock(fd);
  }

  /** Converts to exclusive; blocks while any other process holds the repository open. */
  exclusive(): void {
    flock(this.fd, "ex");
  }

  /** Converts back to shared. */
  shared(): void {
    flock(this.fd, "sh");
  }

  release(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.fd); // closing the last fd of the open file description drops the flock
  }
}
