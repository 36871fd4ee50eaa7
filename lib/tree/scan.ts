// Reading a directory on disk into a file tree (spec §1.3 create-image, §1.5 mkcomposefs).
// Metadata comes from statx/getdents64/readlinkat/l*xattr through FFI (lib/linux/): raw-byte names,
// nanosecond mtimes, rdev. Regular files up to `inlineMax` bytes are kept inline; larger ones get
// their fs-verity digest and, with a store, are copied into it in the same pass. File contents are
// read by a bounded pool of concurrent tasks after the (fast, metadata-only) walk.
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
  readDirNames,
  readlinkAt,
  statAt,
  statFd,
  type StatxResult,
} from "../linux/fs_at.ts";
import { readXattrs, readXattrsFd } from "../linux/xattr.ts";
import { pread, preadAsync } from "../linux/fs.ts";
import type { ObjectStore } from "../repository/object_store.ts";
import { bytesToBstr, concatBytes, utf8 } from "../util/bytes.ts";
import {
  type Directory,
  type Leaf,
  newDirectory,
  newLeaf,
  newStat,
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
  /** Files read at once; default = number of CPUs. */
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

function statOf(st: StatxResult): Stat {
  return newStat({
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    mtimeSec: st.mtimeSec,
    mtimeNsec: st.mtimeNsec,
  });
}

function procPath(dirfd: number, name: Uint8Array): Uint8Array {
  return concatBytes([utf8.encode(`/proc/self/fd/${dirfd}/`), name]);
}

function withPath<T>(path: Uint8Array, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CfsError) throw e.within(bytesToBstr(path));
    throw e;
  }
}

/** Reads the directory at `path` (a symlink given as `path` itself is followed) into a tree. */
export async function scanDirectory(path: string, opts: ScanOptions): Promise<Directory> {
  if (opts.store && opts.store.alg !== opts.alg) {
    throw new CfsError(`object store uses ${opts.store.alg}, scan asked for ${opts.alg}`);
  }
  const inlineMax = opts.inlineMax ?? 64;
  const tasks: FileTask[] = [];
  const root = walk(path, opts, tasks);
  const streamBuffers: [Uint8Array, Uint8Array][] = [];
  await runPool(
    tasks,
    opts.concurrency ?? navigator.hardwareConcurrency ?? 2,
    (t, w) =>
      readFile(
        t,
        opts,
        inlineMax,
        streamBuffers[w] ??= [new Uint8Array(READ_CHUNK), new Uint8Array(READ_CHUNK)],
      ),
  );
  return root;
}

function walk(path: string, opts: ScanOptions, tasks: FileTask[]): Directory {
  const rootBytes = utf8.encode(path);
  const keepXattr = opts.xattrFilter;
  const inodes = opts.hardlinks ? new Map<string, Leaf>() : undefined;
  const rootFd = withPath(rootBytes, () => openAt(AT_FDCWD, rootBytes, O_RDONLY | O_DIRECTORY, path));
  interface Frame {
    fd: number;
    dir: Directory;
    path: Uint8Array;
    names: Uint8Array[];
    i: number;
  }
  const stack: Frame[] = [];
  try {
    const root = newDirectory(statOf(statFd(rootFd, path)));
    if (!opts.skipXattrs) setXattrs(root.stat, readXattrsFd(rootFd), keepXattr);
    stack.push({ fd: rootFd, dir: root, path: rootBytes, names: readDirNames(rootFd, path), i: 0 });
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top.i >= top.names.length) {
        stack.pop();
        closeFd(top.fd);
        continue;
      }
      const name = top.names[top.i++];
      const full = concatBytes([top.path, SLASH, name]);
      const st = withPath(full, () => statAt(top.fd, name));
      const type = st.mode & S_IFMT;
      if ((type === S_IFCHR || type === S_IFBLK) && opts.skipDevices) continue;
      const key = bytesToBstr(name);

      if (type !== S_IFDIR && inodes && st.nlink > 1) {
        const shared = inodes.get(`${st.dev}:${st.ino}`);
        if (shared) {
          top.dir.entries.set(key, shared);
          continue;
        }
      }
      const stat = statOf(st);
      if (!opts.skipXattrs) {
        setXattrs(
          stat,
          withPath(full, () => readXattrs(procPath(top.fd, name))),
          keepXattr,
        );
      }

      if (type === S_IFDIR) {
        const dir = newDirectory(stat);
        top.dir.entries.set(key, dir);
        const fd = withPath(full, () => openAt(top.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
        try {
          stack.push({ fd, dir, path: full, names: withPath(full, () => readDirNames(fd)), i: 0 });
        } catch (e) {
          closeFd(fd);
          throw e;
        }
        continue;
      }
      let leaf: Leaf;
      switch (type) {
        case S_IFREG:
          leaf = newLeaf(stat, { type: "inline", data: new Uint8Array(0) });
          if (st.size > 0) tasks.push({ leaf, path: full, size: st.size });
          break;
        case S_IFLNK:
          leaf = newLeaf(stat, {
            type: "symlink",
            target: bytesToBstr(withPath(full, () => readlinkAt(top.fd, name))),
          });
          break;
        case S_IFCHR:
          leaf = newLeaf(stat, { type: "chardev", rdev: st.rdev });
          break;
        case S_IFBLK:
          leaf = newLeaf(stat, { type: "blockdev", rdev: st.rdev });
          break;
        case S_IFIFO:
          leaf = newLeaf(stat, { type: "fifo" });
          break;
        case S_IFSOCK:
          leaf = newLeaf(stat, { type: "socket" });
          break;
        default:
          throw new CfsError(`unknown file type ${type.toString(8)}`).within(bytesToBstr(full));
      }
      if (inodes && st.nlink > 1) inodes.set(`${st.dev}:${st.ino}`, leaf);
      top.dir.entries.set(key, leaf);
    }
    return root;
  } finally {
    for (const f of stack) closeFd(f.fd);
  }
}

function setXattrs(stat: Stat, x: Map<string, Uint8Array>, keep?: (name: string) => boolean): void {
  for (const [k, v] of x) if (!keep || keep(k)) stat.xattrs.set(k, v);
}

/** Runs `fn` over `items` with at most `n` in flight; the first failure stops new work and is thrown. */
async function runPool<T>(
  items: T[],
  n: number,
  fn: (item: T, worker: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: { e: unknown } | undefined;
  const worker = async (_: unknown, w: number) => {
    while (!failed && next < items.length) {
      const item = items[next++];
      try {
        await fn(item, w);
      } catch (e) {
        failed ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (failed) throw failed.e;
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

/** Files up to this size are read with synchronous pread into one shared buffer (page-cache reads
 *  are faster than a round trip to Deno's I/O threads); larger ones stream with reads on a worker
 *  thread, the next chunk prefetched while the current one is hashed or stored. */
const SYNC_READ_MAX = 256 * 1024;
const sharedBuf = new Uint8Array(SYNC_READ_MAX + 1);

async function readFile(
  t: FileTask,
  opts: ScanOptions,
  inlineMax: number,
  buffers: [Uint8Array, Uint8Array],
): Promise<void> {
  const where = bytesToBstr(t.path);
  const fd = openAt(AT_FDCWD, t.path, O_RDONLY | O_NOFOLLOW, where);
  let sink: Sink | undefined;
  try {
    if (t.size <= SYNC_READ_MAX) {
      let total = 0;
      while (total < sharedBuf.length) {
        const n = pread(fd, sharedBuf.subarray(total), total);
        if (n === 0) break;
        total += n;
      }
      if (total < sharedBuf.length) {
        // Whole file read. The shared buffer is reused by the next task: copy what outlives an await.
        const data = sharedBuf.subarray(0, total);
        if (total <= inlineMax) {
          t.leaf.content = { type: "inline", data: data.slice() };
        } else {
          sink = makeSink(opts);
          await sink.write(opts.store ? data.slice() : data);
          const id = await sink.finish();
          sink = undefined;
          t.leaf.content = { type: "external", id, size: total };
        }
        opts.onFile?.(where, total);
        return;
      }
      // The file grew past the synchronous limit since statx: stream it from the start.
    }
    sink = makeSink(opts);
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
