// The depth-first order of a directory tree, read ahead. The walk in ./scan.ts takes its entries from
// here; by the time it reaches a regular file, the file is open and its first bytes are on their way
// into the page cache (POSIX_FADV_WILLNEED), asked for up to WINDOW files earlier. Without it a walk of
// files that are not cached waits for one disk read per file, one after the other: on this machine's
// disk 110 µs per small file read in sequence, 64 µs with 32 reads in flight
// (docs/performance.md#create-image).
import {
  closeFd,
  type DirEntries,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_RDONLY,
  openAt,
  readDirEntries,
  statAt,
} from "../linux/fs_at.ts";
import { DT_DIR, DT_REG, DT_UNKNOWN, O_NONBLOCK, S_IFDIR, S_IFMT, S_IFREG } from "../linux/constants.ts";
import { willNeed } from "../linux/file_extents.ts";

/** Regular files kept open and read ahead of the walk. */
export const WINDOW = 32;
/** Entries queued at most (directories and special files count here, not in WINDOW). */
const MAX_QUEUED = 4 * WINDOW;

/** A directory entry, in depth-first order. */
export interface AheadEntry {
  kind: "entry";
  /** The directory holding it (open until its "leave"). */
  dirFd: number;
  name: Uint8Array;
  /** A directory (its entries follow, then its "leave"). */
  isDir: boolean;
  /**
   * The entry opened: a directory (O_DIRECTORY, owned by the walk until its "leave") or a regular file
   * (O_NONBLOCK, read ahead; the caller's to close). -1: not opened — another type, or opening the file
   * failed (the caller's own calls will say why).
   */
  fd: number;
  /** Why a directory could not be opened (its entries are then missing). */
  error?: unknown;
}

/** The end of a directory's entries: `fd` is the one its entry carried (the root's for the last). */
export interface AheadLeave {
  kind: "leave";
  fd: number;
}

interface Frame {
  fd: number;
  entries: DirEntries;
  i: number;
}

/** Depth-first entries of the tree under an open directory, regular files opened and read ahead. */
export class WalkAhead {
  readonly #readahead: number;
  #stack: Frame[] = [];
  #queue: (AheadEntry | AheadLeave)[] = [];
  #filesQueued = 0;
  /** Directory fds opened here and not yet given back through leave(). */
  #openDirs = new Set<number>();

  /**
   * `rootFd` (an open directory) belongs to the walk once this returns: leave() of the last "leave"
   * or close() closes it. `readahead`: how many bytes of each regular file to ask for.
   */
  constructor(rootFd: number, readahead: number, what?: string) {
    this.#readahead = readahead;
    this.#stack.push({ fd: rootFd, entries: readDirEntries(rootFd, what), i: 0 });
    this.#openDirs.add(rootFd);
  }

  /** The next entry or leave; null after the root's "leave". */
  next(): AheadEntry | AheadLeave | null {
    while (this.#filesQueued < WINDOW && this.#queue.length < MAX_QUEUED && this.#stack.length > 0) {
      this.#step();
    }
    const e = this.#queue.shift();
    if (!e) return null;
    if (e.kind === "entry" && e.fd >= 0 && !e.isDir) this.#filesQueued--;
    return e;
  }

  /** Closes the directory fd of a "leave" the caller has taken (the walk no longer needs it). */
  leave(fd: number): void {
    if (this.#openDirs.delete(fd)) closeFd(fd);
  }

  /** Closes every fd still held: queued files and directories not left (after an error). */
  close(): void {
    for (const e of this.#queue) if (e.kind === "entry" && e.fd >= 0 && !e.isDir) closeFd(e.fd);
    this.#queue = [];
    this.#filesQueued = 0;
    this.#stack = [];
    for (const fd of this.#openDirs) closeFd(fd);
    this.#openDirs.clear();
  }

  #step(): void {
    const top = this.#stack[this.#stack.length - 1];
    const { names, types } = top.entries;
    if (top.i >= names.length) {
      this.#stack.pop();
      this.#queue.push({ kind: "leave", fd: top.fd });
      return;
    }
    const i = top.i++;
    const name = names[i];
    const type = types[i] === DT_UNKNOWN ? typeOf(top.fd, name) : types[i];
    if (type === DT_DIR) {
      let fd = -1;
      try {
        fd = openAt(top.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        this.#openDirs.add(fd);
        const entries = readDirEntries(fd);
        this.#queue.push({ kind: "entry", dirFd: top.fd, name, isDir: true, fd });
        this.#stack.push({ fd, entries, i: 0 });
      } catch (error) {
        if (fd >= 0) this.leave(fd);
        this.#queue.push({ kind: "entry", dirFd: top.fd, name, isDir: true, fd: -1, error });
      }
      return;
    }
    let fd = -1;
    if (type === DT_REG) {
      try {
        fd = openAt(top.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      } catch {
        fd = -1; // the caller opens it again and reports the error with the file's path
      }
      if (fd >= 0) {
        willNeed(fd, this.#readahead);
        this.#filesQueued++;
      }
    }
    this.#queue.push({ kind: "entry", dirFd: top.fd, name, isDir: false, fd });
  }
}

/** d_type from statx, for filesystems whose getdents64 does not tell (DT_UNKNOWN). */
function typeOf(dirFd: number, name: Uint8Array): number {
  try {
    const t = statAt(dirFd, name).mode & S_IFMT;
    return t === S_IFDIR ? DT_DIR : t === S_IFREG ? DT_REG : DT_UNKNOWN;
  } catch {
    return DT_UNKNOWN; // gone or unreadable: the caller's statx reports it
  }
}
