// The depth-first order of a directory tree, read ahead. The walk in ./scan.ts takes its entries from
// here; by the time it reaches a regular file, the file is open and its first bytes are on their way
// into the page cache (POSIX_FADV_WILLNEED), asked for up to WINDOW files earlier. Without it a walk of
// files that are not cached waits for one disk read per file, one after the other: on this machine's
// disk 110 µs per small file read in sequence, 64 µs with 32 reads in flight
// (docs/performance.md#read-ahead).
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
import {
  DT_DIR,
  DT_REG,
  DT_UNKNOWN,
  Errno,
  O_NONBLOCK,
  S_IFDIR,
  S_IFMT,
  S_IFREG,
} from "../linux/constants.ts";
import { KernelError } from "../errors.ts";
import { willNeed } from "../linux/file_extents.ts";
import { openFileLimit } from "../linux/open_file_limit.ts";

/** Regular files kept open and read ahead of the walk. */
export const WINDOW = 32;
/**
 * The least RLIMIT_NOFILE for reading ahead: the window's files, the directories holding them and the
 * rest of the process (threads, the object store, Deno itself) fit well within it. Below it the walk
 * goes one file at a time, as it did before reading ahead.
 */
export const MIN_OPEN_FILE_LIMIT = 512;
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
  /** Files to open ahead: WINDOW, or 0 under a low descriptor limit or once they ran out (then one at a time). */
  #window = openFileLimit() >= MIN_OPEN_FILE_LIMIT ? WINDOW : 0;
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
    while (
      this.#stack.length > 0 &&
      (this.#queue.length === 0 || (this.#filesQueued < this.#window && this.#queue.length < MAX_QUEUED))
    ) {
      if (!this.#step()) break;
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

  /**
   * Queues the next entry; false when it has to wait: a directory could not be opened for want of
   * descriptors while queued entries still hold some (it is tried again once the queue is empty).
   */
  #step(): boolean {
    const top = this.#stack[this.#stack.length - 1];
    const { names, types } = top.entries;
    if (top.i >= names.length) {
      this.#stack.pop();
      this.#queue.push({ kind: "leave", fd: top.fd });
      return true;
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
        if (outOfFds(error)) {
          this.#window = 0; // a low RLIMIT_NOFILE: stop holding files open ahead of the walk
          if (this.#queue.length > 0) {
            top.i--;
            return false;
          }
        }
        this.#queue.push({ kind: "entry", dirFd: top.fd, name, isDir: true, fd: -1, error });
      }
      return true;
    }
    let fd = -1;
    if (type === DT_REG && this.#window > 0) {
      try {
        fd = openAt(top.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      } catch (error) {
        fd = -1; // the caller opens it again and reports the error with the file's path
        if (outOfFds(error)) this.#window = 0;
      }
      if (fd >= 0) {
        willNeed(fd, this.#readahead);
        this.#filesQueued++;
      }
    }
    this.#queue.push({ kind: "entry", dirFd: top.fd, name, isDir: false, fd });
    return true;
  }
}

function outOfFds(e: unknown): boolean {
  return e instanceof KernelError && (e.errno === Errno.EMFILE || e.errno === Errno.ENFILE);
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
