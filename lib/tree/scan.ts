// Reading a directory on disk into a file tree (README.md#command-reference: create-image, mkcomposefs).
// Metadata comes from statx/getdents64/readlinkat/l*xattr through FFI (lib/linux/): raw-byte names,
// nanosecond mtimes, rdev. Regular files up to `inlineMax` bytes are kept inline; larger ones get
// their fs-verity digest and, with a store, are copied into it in the same pass. The walk opens each
// regular file once (xattrs from the fd) and reads files up to 256 KiB whole right there; larger
// ones are streamed afterwards by a bounded pool of concurrent tasks.
import { CfsError } from "../errors.ts";
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import { FsVerityHasher } from "../fsverity/hasher.ts";
import {
  AT_FDCWD,
  closeFd,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_RDONLY,
  openAt,
  preadFd,
  readlinkAt,
  statAt,
  statFd,
  type StatxResult,
} from "../linux/fs_at.ts";
// O_NONBLOCK: never hang on a file that turned into a FIFO since its statx.
import { O_NONBLOCK } from "../linux/constants.ts";
import { readXattrsOrNull } from "../linux/xattr.ts";
import { type AheadEntry, WalkAhead } from "./walk_ahead.ts";
import { preadAsync } from "../linux/fs.ts";
import { runBounded } from "../util/run_bounded.ts";
import type { ObjectStore } from "../objects/store.ts";
import { bytesToBstr, concatBytes, utf8 } from "../util/bytes.ts";
import {
  type Directory,
  type Leaf,
  type LeafContent,
  newDirectory,
  newLeaf,
  NO_XATTRS,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  type Stat,
} from "./tree.ts";

export interface ScanOptions {
  alg: HashAlgorithm;
  /** Where file objects go; without one only digests are computed. Its algorithm must be `alg`. */
  store?: ObjectStore;
  /** Share one leaf between paths with the same (dev, ino). Default false: every path its own leaf (C). */
  hardlinks?: boolean;
  /** Large files (over 256 KiB, streamed after the walk) read at once; default = number of CPUs. */
  concurrency?: number;
  /** Largest regular file kept inline (bytes); default 64. */
  inlineMax?: number;
  /** Do not read xattrs at all (mkcomposefs --skip-xattrs). */
  skipXattrs?: boolean;
  /** Keep only xattrs whose name passes (e.g. --user-xattrs); applied while reading. */
  xattrFilter?: (name: string) => boolean;
  /** Leave out character and block devices (mkcomposefs --skip-devices). */
  skipDevices?: boolean;
  /** Called after each regular file's contents are read. */
  onFile?: (path: string, size: number) => void;
}

interface FileTask {
  leaf: Leaf;
  /** Absolute path as raw bytes. */
  path: Uint8Array;
  /** Size from statx (sizes the read buffer; the bytes actually read decide). */
  size: number;
}

const SLASH = new Uint8Array([0x2f]);
const READ_CHUNK = 1 << 20;
/** Regular files up to this size are read whole, synchronously, during the walk (page-cache reads
 *  are faster than a round trip to Deno's I/O threads; the file is open anyway for its xattrs);
 *  larger ones stream afterwards with reads on worker threads, the next chunk prefetched while the
 *  current one is hashed or stored. */
const SYNC_READ_MAX = 256 * 1024;
const sharedBuf = new Uint8Array(SYNC_READ_MAX + 1);

function statOf(st: StatxResult, xattrs: Map<string, Uint8Array> | null): Stat {
  return {
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    mtimeSec: st.mtimeSec,
    mtimeNsec: st.mtimeNsec,
    xattrs: xattrs ?? NO_XATTRS,
  };
}

/** The xattrs kept from a read (null: none). */
function keptXattrs(
  x: Map<string, Uint8Array> | null,
  keep?: (name: string) => boolean,
): Map<string, Uint8Array> | null {
  if (x === null || !keep) return x;
  for (const k of [...x.keys()]) if (!keep(k)) x.delete(k);
  return x.size > 0 ? x : null;
}

/** Reads the directory at `path` (a symlink given as `path` itself is followed) into a tree. */
export async function scanDirectory(path: string, opts: ScanOptions): Promise<Directory> {
  if (opts.store && opts.store.alg !== opts.alg) {
    throw new CfsError(`object store uses ${opts.store.alg}, scan asked for ${opts.alg}`);
  }
  const tasks: FileTask[] = [];
  const root = await walk(path, opts, new SmallFiles(opts), tasks);
  const streamBuffers: [Uint8Array, Uint8Array][] = [];
  await runBounded(
    tasks,
    opts.concurrency ?? navigator.hardwareConcurrency ?? 2,
    (t, w) =>
      readLargeFile(t, opts, streamBuffers[w] ??= [new Uint8Array(READ_CHUNK), new Uint8Array(READ_CHUNK)]),
  );
  // A store may still be writing objects whose ids the tree holds: nothing may refer to them before.
  await opts.store?.settle?.();
  return root;
}

/** Contents of files read whole: inline, or an object id (stored, or only digested). */
class SmallFiles {
  readonly #opts: ScanOptions;
  readonly #inlineMax: number;
  #hasher?: FsVerityHasher;

  constructor(opts: ScanOptions) {
    this.#opts = opts;
    this.#inlineMax = opts.inlineMax ?? 64;
  }

  /** Content of a file read into `data` (borrowed: only read before the returned value exists). */
  content(data: Uint8Array): LeafContent | Promise<LeafContent> {
    const size = data.length;
    if (size <= this.#inlineMax) return { type: "inline", data: data.slice() };
    const store = this.#opts.store;
    if (!store) {
      const h = this.#hasher ??= new FsVerityHasher(this.#opts.alg);
      h.reset();
      h.update(data);
      return { type: "external", id: h.digest(), size };
    }
    const r = store.ensureObjectBorrowed
      ? store.ensureObjectBorrowed(data)
      : store.ensureObject(data.slice());
    if (r instanceof Promise) return r.then((id) => ({ type: "external", id, size }));
    return { type: "external", id: r, size };
  }
}

/**
 * Reads the open regular file `fd` whole into the shared buffer: up to EOF or its statx `size`,
 * whichever comes first (no EOF probe after `size` bytes: one read call for most files); null when
 * it does not fit SYNC_READ_MAX.
 */
function readWhole(fd: number, size: number): Uint8Array | null {
  let total = 0;
  while (total < sharedBuf.length) {
    if (total === size) return sharedBuf.subarray(0, total);
    const n = preadFd(fd, sharedBuf.subarray(total), total);
    if (n === 0) return sharedBuf.subarray(0, total);
    total += n;
  }
  return null;
}

async function walk(
  path: string,
  opts: ScanOptions,
  small: SmallFiles,
  tasks: FileTask[],
): Promise<Directory> {
  const rootBytes = utf8.encode(path);
  const keep = opts.xattrFilter;
  const noXattrs = opts.skipXattrs === true;
  const inodes = opts.hardlinks ? new Map<string, Leaf>() : undefined;
  const rootFd = openAt(AT_FDCWD, rootBytes, O_RDONLY | O_DIRECTORY, path);
  let ahead: WalkAhead;
  let root: Directory;
  try {
    root = newDirectory(
      statOf(statFd(rootFd, path), noXattrs ? null : keptXattrs(readXattrsOrNull(rootFd), keep)),
    );
    ahead = new WalkAhead(rootFd, SYNC_READ_MAX, path);
  } catch (e) {
    closeFd(rootFd);
    throw e;
  }
  // The directories being read, innermost last; the walk's entries come in depth-first order, so the
  // next one always belongs to the last frame (until that frame's "leave").
  const frames: { dir: Directory; path: Uint8Array }[] = [{ dir: root, path: rootBytes }];
  try {
    for (let e = ahead.next(); e !== null; e = ahead.next()) {
      if (e.kind === "leave") {
        frames.pop();
        ahead.leave(e.fd);
        continue;
      }
      const top = frames[frames.length - 1];
      try {
        const child = await entry(e, top.path, opts, small, tasks, inodes, keep, noXattrs);
        if (child === null) continue;
        const key = bytesToBstr(e.name);
        if (child.kind === "leaf") {
          top.dir.entries.set(key, child);
          continue;
        }
        top.dir.entries.set(key, child.dir);
        frames.push({ dir: child.dir, path: child.path });
      } catch (err) {
        if (err instanceof CfsError && !err.context.length) {
          throw err.within(bytesToBstr(join(top.path, e.name)));
        }
        throw err;
      }
    }
    return root;
  } finally {
    ahead.close();
  }
}

function join(dir: Uint8Array, name: Uint8Array): Uint8Array {
  return concatBytes([dir, SLASH, name]);
}

/**
 * One directory entry: a leaf, a directory (open, its entries follow from the walk), or null when
 * skipped (devices with skipDevices). A regular file the walk opened ahead is closed here.
 */
async function entry(
  e: AheadEntry,
  dirPath: Uint8Array,
  opts: ScanOptions,
  small: SmallFiles,
  tasks: FileTask[],
  inodes: Map<string, Leaf> | undefined,
  keep: ((name: string) => boolean) | undefined,
  noXattrs: boolean,
): Promise<Leaf | { kind: "dir"; dir: Directory; path: Uint8Array } | null> {
  const { dirFd, name } = e;
  let fd = e.fd;
  try {
    if (e.isDir) {
      if (e.error !== undefined) throw e.error;
      const st = statFd(fd);
      const xattrs = noXattrs ? null : keptXattrs(readXattrsOrNull(fd), keep);
      return { kind: "dir", dir: newDirectory(statOf(st, xattrs)), path: join(dirPath, name) };
    }
    // A file opened ahead is described by its fd (what it is now, whatever the name says meanwhile).
    let st = fd >= 0 ? statFd(fd) : statAt(dirFd, name);
    if (fd >= 0 && (st.mode & S_IFMT) !== S_IFREG) {
      closeFd(fd);
      fd = -1;
      st = statAt(dirFd, name);
    }
    const type = st.mode & S_IFMT;
    if (type === S_IFDIR) throw new CfsError("became a directory during the walk");
    if ((type === S_IFCHR || type === S_IFBLK) && opts.skipDevices) return null;
    const linkKey = inodes && st.nlink > 1 ? `${st.dev}:${st.inoHi}:${st.inoLo}` : undefined;
    if (linkKey !== undefined) {
      const shared = inodes!.get(linkKey);
      if (shared) return shared;
    }
    let leaf: Leaf;
    if (type === S_IFREG) {
      // Open once: xattrs from the fd, and the whole content when small.
      if (fd < 0) fd = openAt(dirFd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      const xattrs = noXattrs ? null : keptXattrs(readXattrsOrNull(fd), keep);
      const data = st.size <= SYNC_READ_MAX ? readWhole(fd, st.size) : null;
      if (data === null) {
        // Large (or grown past the limit since statx): streamed after the walk.
        leaf = newLeaf(statOf(st, xattrs), { type: "inline", data: new Uint8Array(0) });
        tasks.push({ leaf, path: join(dirPath, name), size: st.size });
      } else if (data.length === 0) {
        leaf = newLeaf(statOf(st, xattrs), { type: "inline", data: new Uint8Array(0) });
      } else {
        const c = small.content(data);
        leaf = newLeaf(statOf(st, xattrs), c instanceof Promise ? await c : c);
        opts.onFile?.(bytesToBstr(join(dirPath, name)), data.length);
      }
    } else {
      const xattrs = noXattrs ? null : keptXattrs(readXattrsOrNull(-1, join(dirPath, name)), keep);
      leaf = specialLeaf(statOf(st, xattrs), st, dirFd, name);
    }
    if (linkKey !== undefined) inodes!.set(linkKey, leaf);
    return leaf;
  } finally {
    // A directory's fd is the walk's (closed at its "leave"); a file's is this function's.
    if (!e.isDir && fd >= 0) closeFd(fd);
  }
}

/** The leaf of a file that is neither regular nor a directory. */
function specialLeaf(stat: Stat, st: StatxResult, dirFd: number, name: Uint8Array): Leaf {
  const type = st.mode & S_IFMT;
  switch (type) {
    case S_IFLNK:
      return newLeaf(stat, { type: "symlink", target: bytesToBstr(readlinkAt(dirFd, name)) });
    case S_IFCHR:
      return newLeaf(stat, { type: "chardev", rdev: st.rdev });
    case S_IFBLK:
      return newLeaf(stat, { type: "blockdev", rdev: st.rdev });
    case S_IFIFO:
      return newLeaf(stat, { type: "fifo" });
    case S_IFSOCK:
      return newLeaf(stat, { type: "socket" });
    default:
      throw new CfsError(`unknown file type ${type.toString(8)}`);
  }
}

interface Sink {
  write(chunk: Uint8Array): Promise<void> | void;
  finish(): Promise<ObjectId>;
  abort(): Promise<void>;
}

function makeSink(opts: ScanOptions): Sink {
  if (opts.store) {
    const w = opts.store.createObjectWriter();
    return {
      write: (c) => w.write(c),
      finish: async () => (await w.finish()).id,
      abort: () => w.abort(),
    };
  }
  const h = new FsVerityHasher(opts.alg);
  return {
    write: (c) => h.update(c),
    finish: () => Promise.resolve(h.digest()),
    abort: () => Promise.resolve(),
  };
}

/** Streams a large regular file into the store (or the hasher) and sets its leaf's content. */
async function readLargeFile(
  t: FileTask,
  opts: ScanOptions,
  buffers: [Uint8Array, Uint8Array],
): Promise<void> {
  const where = bytesToBstr(t.path);
  const fd = openAt(AT_FDCWD, t.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, where);
  let sink: Sink | undefined = makeSink(opts);
  try {
    // The worker's own two buffers: a chunk is handed to the sink and awaited before its buffer is
    // read into again.
    let [cur, next] = buffers;
    let total = 0;
    let pending: Promise<number> | undefined = preadAsync(fd, cur, 0);
    try {
      for (;;) {
        const n: number = await pending!;
        pending = undefined;
        if (n === 0) break;
        const chunk = cur.subarray(0, n);
        total += n;
        pending = preadAsync(fd, next, total);
        await sink.write(chunk);
        [cur, next] = [next, cur];
      }
    } finally {
      // Never close the fd under a read still running on a worker thread.
      if (pending) await pending.catch(() => 0);
    }
    const id = await sink.finish();
    sink = undefined;
    t.leaf.content = { type: "external", id, size: total };
    opts.onFile?.(where, total);
  } catch (e) {
    if (sink) await sink.abort().catch(() => {});
    if (e instanceof CfsError) throw e.within(where);
    throw new CfsError(`reading failed`, { cause: e, context: [where] });
  } finally {
    closeFd(fd);
  }
}
