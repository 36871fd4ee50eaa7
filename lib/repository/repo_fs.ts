// Strict access to the inside of a repository (docs/repository-safety.md): every path is opened
// relative to the repository's directory fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so
// a symlink or `..` planted where the layout has a directory can never lead gc or fsck outside.
// The layout's own symlinks (streams/…, images/…, refs) are read with readlinkat and resolved
// lexically here, and only while they stay inside the repository. Files are opened O_NONBLOCK and
// must be regular files: a FIFO or a device where an object should be is an error, not a hang.
import { CfsError, InternalError, KernelError } from "../errors.ts";
import {
  closeFd,
  openAt,
  preadFd,
  readDirEntries,
  readlinkAt,
  statAt,
  statFd,
  type StatxResult,
} from "../linux/fs_at.ts";
import { openBeneath, unlinkAtName } from "../linux/openat2.ts";
import { Errno } from "../linux/libc.ts";

import {
  DT_DIR,
  DT_LNK,
  DT_REG,
  DT_UNKNOWN,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
} from "../linux/constants.ts";

/** Deepest refs/ tree gc, fsck and listings walk (ref names are short; a deeper tree is hostile). */
export const MAX_REF_DEPTH = 64;
/** Largest stream or image object gc and fsck read into memory. */
export const MAX_METADATA_OBJECT = 1 << 30;

/** Why a path inside the repository cannot be used; `code` is the fsck finding it becomes. */
export type RepoPathProblem =
  | "symlink-in-layout" // a symlink where the layout has a directory or a file
  | "link-outside-repository" // a link whose target is absolute or climbs out of the repository
  | "not-a-directory"
  | "not-a-regular-file"
  | "file-too-large"
  | "link-loop"
  | "not-found";

export class RepoPathError extends CfsError {
  override name = "RepoPathError";
  constructor(readonly code: RepoPathProblem, readonly rel: string, detail: string) {
    super(`${rel}: ${detail}`);
  }
}

export type EntryKind = "dir" | "file" | "symlink" | "other";

export interface RepoEntry {
  name: string;
  kind: EntryKind;
}

function kindOf(mode: number): EntryKind {
  const t = mode & S_IFMT;
  return t === S_IFDIR ? "dir" : t === S_IFREG ? "file" : t === S_IFLNK ? "symlink" : "other";
}

/** The kind a getdents64 d_type says; null for DT_UNKNOWN (ask statx). */
function kindOfDirent(t: number): EntryKind | null {
  return t === DT_UNKNOWN
    ? null
    : t === DT_DIR
    ? "dir"
    : t === DT_REG
    ? "file"
    : t === DT_LNK
    ? "symlink"
    : "other";
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function split(rel: string): { parent: string; base: string } {
  const i = rel.lastIndexOf("/");
  return i < 0 ? { parent: ".", base: rel } : { parent: rel.slice(0, i), base: rel.slice(i + 1) };
}

export class RepoFs {
  readonly fd: number;
  /** The repository path, for messages only. */
  readonly root: string;

  constructor(fd: number, root: string) {
    this.fd = fd;
    this.root = root;
  }

  #translate(e: unknown, rel: string): never {
    if (e instanceof KernelError) {
      if (e.errno === 40) {
        throw new RepoPathError("symlink-in-layout", rel, "a symlink on the way (not followed)");
      }
      if (e.errno === Errno.EXDEV) {
        throw new RepoPathError("link-outside-repository", rel, "leads outside the repository");
      }
      if (e.errno === Errno.ENOTDIR) {
        throw new RepoPathError("not-a-directory", rel, "a component is not a directory");
      }
      if (e.errno === Errno.ENOENT) throw new RepoPathError("not-found", rel, "does not exist");
    }
    throw e;
  }

  /** Opens a directory of the layout (no symlink anywhere on the way). */
  openDir(rel: string): number {
    try {
      return openBeneath(this.fd, rel, O_RDONLY | O_DIRECTORY, rel);
    } catch (e) {
      return this.#translate(e, rel);
    }
  }

  /** lstat of `rel` (its parent reached without symlinks); null when it does not exist. */
  lstat(rel: string): StatxResult | null {
    const { parent, base } = split(rel);
    let dfd: number;
    try {
      dfd = this.openDir(parent);
    } catch (e) {
      if (e instanceof RepoPathError && e.code === "not-found") return null;
      throw e;
    }
    try {
      return this.lstatAt(dfd, base, rel);
    } finally {
      closeFd(dfd);
    }
  }

  /** lstat of the single name `base` in the open layout directory `dfd` (`rel` names it); null when absent. */
  lstatAt(dfd: number, base: string, rel: string): StatxResult | null {
    try {
      return statAt(dfd, enc.encode(base), rel);
    } catch (e) {
      if (e instanceof KernelError && e.errno === Errno.ENOENT) return null;
      throw e;
    }
  }

  kind(rel: string): EntryKind | null {
    const st = this.lstat(rel);
    return st === null ? null : kindOf(st.mode);
  }

  /** Entries of a layout directory, sorted by name; [] when it does not exist. */
  list(rel: string): RepoEntry[] {
    let dfd: number;
    try {
      dfd = this.openDir(rel);
    } catch (e) {
      if (e instanceof RepoPathError && e.code === "not-found") return [];
      throw e;
    }
    try {
      return this.listFd(dfd, rel);
    } finally {
      closeFd(dfd);
    }
  }

  /** Entries of an open directory, sorted by name. */
  listFd(dfd: number, rel: string): RepoEntry[] {
    const out: RepoEntry[] = [];
    const { names, types } = readDirEntries(dfd, rel);
    for (const [i, raw] of names.entries()) {
      // The entry's type from getdents64; statx only where the filesystem does not say.
      let kind = kindOfDirent(types[i]);
      if (kind === null) {
        try {
          kind = kindOf(statAt(dfd, raw, `${rel}/${dec.decode(raw)}`).mode);
        } catch (e) {
          if (e instanceof KernelError && e.errno === Errno.ENOENT) continue; // removed meanwhile
          throw e;
        }
      }
      out.push({ name: dec.decode(raw), kind });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Target of the symlink `rel`. */
  readLink(rel: string): string {
    const { parent, base } = split(rel);
    const dfd = this.openDir(parent);
    try {
      return dec.decode(readlinkAt(dfd, enc.encode(base), rel));
    } catch (e) {
      return this.#translate(e, rel);
    } finally {
      closeFd(dfd);
    }
  }

  /**
   * Follows the layout symlink `rel` (and any link it leads to, up to 40) lexically, never outside
   * the repository: returns the repository-relative path of the first non-symlink it reaches.
   * Intermediate directories must be real directories.
   */
  resolve(rel: string): string {
    let cur = rel;
    for (let hops = 0; hops < 40; hops++) {
      const st = this.lstat(cur);
      if (st === null) {
        throw new RepoPathError("not-found", rel, hops ? `leads to missing ${cur}` : "does not exist");
      }
      if (kindOf(st.mode) !== "symlink") return cur;
      const target = this.readLink(cur);
      if (target.startsWith("/")) {
        throw new RepoPathError(
          "link-outside-repository",
          rel,
          `points to absolute path ${JSON.stringify(target)}`,
        );
      }
      const parts = cur.split("/");
      parts.pop();
      for (const c of target.split("/")) {
        if (c === "" || c === ".") continue;
        if (c === "..") {
          if (parts.length === 0) {
            throw new RepoPathError(
              "link-outside-repository",
              rel,
              `points outside the repository (${JSON.stringify(target)})`,
            );
          }
          parts.pop();
        } else parts.push(c);
      }
      if (parts.length === 0) {
        throw new RepoPathError("link-outside-repository", rel, "points at the repository itself");
      }
      cur = parts.join("/");
    }
    throw new RepoPathError("link-loop", rel, "too many levels of symlinks");
  }

  /** Opens the regular file `rel` read-only (O_NONBLOCK: a FIFO never blocks the open). */
  openFile(rel: string): { fd: number; size: number } {
    let fd: number;
    try {
      fd = openBeneath(this.fd, rel, O_RDONLY | O_NONBLOCK, rel);
    } catch (e) {
      return this.#translate(e, rel);
    }
    return this.#regular(fd, rel);
  }

  /**
   * openFile of the single name `base` in the open layout directory `dfd` (`rel` names it): one
   * component opened with O_NOFOLLOW cannot lead anywhere else, so no path walk is needed.
   */
  openFileAt(dfd: number, base: string, rel: string): { fd: number; size: number } {
    if (base.includes("/") || base === "." || base === "..") {
      throw new InternalError(`openFileAt takes one name, not ${JSON.stringify(base)}`);
    }
    let fd: number;
    try {
      fd = openAt(dfd, enc.encode(base), O_RDONLY | O_NONBLOCK | O_NOFOLLOW, rel);
    } catch (e) {
      return this.#translate(e, rel);
    }
    return this.#regular(fd, rel);
  }

  /** `fd` with its size when it is a regular file; otherwise closed and refused. */
  #regular(fd: number, rel: string): { fd: number; size: number } {
    try {
      const st = statFd(fd, rel);
      if ((st.mode & S_IFMT) !== S_IFREG) {
        throw new RepoPathError(
          "not-a-regular-file",
          rel,
          `is a ${describeType(st.mode)}, not a regular file`,
        );
      }
      return { fd, size: st.size };
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  /** Reads the whole regular file `rel`, refusing more than `max` bytes. */
  readFile(rel: string, max: number): Uint8Array {
    const { fd, size } = this.openFile(rel);
    try {
      if (size > max) throw new RepoPathError("file-too-large", rel, `${size} bytes (limit ${max})`);
      const out = new Uint8Array(size);
      let off = 0;
      while (off < size) {
        const n = preadFd(fd, out.subarray(off), off, rel);
        if (n === 0) break;
        off += n;
      }
      return off === size ? out : out.slice(0, off);
    } finally {
      closeFd(fd);
    }
  }

  /** Removes the non-directory `rel` (its parent reached without symlinks). */
  unlink(rel: string): void {
    const { parent, base } = split(rel);
    const dfd = this.openDir(parent);
    try {
      unlinkAtName(dfd, base, rel);
    } finally {
      closeFd(dfd);
    }
  }
}

export function describeType(mode: number): string {
  switch (mode & S_IFMT) {
    case 0o010000:
      return "FIFO";
    case 0o020000:
      return "character device";
    case 0o060000:
      return "block device";
    case 0o140000:
      return "socket";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    default:
      return "special file";
  }
}

/** Strict access below an open repository (its lock fd is the directory fd; nothing to close). */
export function repoFs(repo: { path: string; lock: { fd: number } }): RepoFs {
  return new RepoFs(repo.lock.fd, repo.path);
}

/**
 * Layout directories opened once for many lookups of single names in them: fsck opens and looks up
 * 100,000 objects, and walking `objects/XX/…` from the repository's fd for each (openat2) was a sixth of
 * its time. Only the directory is reached through the strict walk; the name in it is one component
 * (RepoFs.openFileAt, lstatAt).
 */
export class LayoutDirCache implements Disposable {
  readonly #fs: RepoFs;
  readonly #fds = new Map<string, number | null>();

  constructor(fs: RepoFs) {
    this.#fs = fs;
  }

  /** The open directory `rel`; null when it does not exist (other problems throw, as RepoFs.openDir). */
  #dir(rel: string): number | null {
    let fd = this.#fds.get(rel);
    if (fd !== undefined) return fd;
    try {
      fd = this.#fs.openDir(rel);
    } catch (e) {
      if (!(e instanceof RepoPathError && e.code === "not-found")) throw e;
      fd = null;
    }
    this.#fds.set(rel, fd);
    return fd;
  }

  /** RepoFs.openFile of `rel`, its directory from the cache. */
  openFile(rel: string): { fd: number; size: number } {
    const { parent, base } = split(rel);
    const dfd = this.#dir(parent);
    if (dfd === null) throw new RepoPathError("not-found", rel, "does not exist");
    return this.#fs.openFileAt(dfd, base, rel);
  }

  /** RepoFs.kind of `rel`, its directory from the cache. */
  kind(rel: string): EntryKind | null {
    const { parent, base } = split(rel);
    const dfd = this.#dir(parent);
    if (dfd === null) return null;
    const st = this.#fs.lstatAt(dfd, base, rel);
    return st === null ? null : kindOf(st.mode);
  }

  [Symbol.dispose](): void {
    for (const fd of this.#fds.values()) if (fd !== null) closeFd(fd);
    this.#fds.clear();
  }
}
