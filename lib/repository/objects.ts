// objects/XX/<rest>: the content-addressed store (spec §2.4). An object becomes visible only
// complete and under its final name: data goes to an anonymous O_TMPFILE (or, where that is not
// supported, a `.tmp-…` file renamed without replacing), is hashed while it is written, and is
// linked into place at the end. A killed writer therefore leaves nothing behind.
import { KernelError, NotFoundError } from "../errors.ts";
import { FsVerityHasher } from "../fsverity/hasher.ts";
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import {
  closeFd,
  linkTmpfile,
  O_RDONLY,
  openPath,
  openTmpfile,
  renameNoReplace,
  writeAll,
} from "../linux/fs.ts";
import { enableVerityOnTmpfile } from "../linux/fsverity_ioctl.ts";
import { errno, errnoName, openLibc } from "../linux/libc.ts";
import type { ObjectStore, ObjectWriter } from "./object_store.ts";
import { ObjectWriteWorker } from "./object_write_worker.ts";
import { Semaphore } from "./semaphore.ts";
import { checkMeasured, enableOrTolerate, noVerityError } from "./verity.ts";

export interface ObjectDirOptions {
  /** Whether the repository is insecure (read at each write: it can be switched after opening). */
  insecure: () => boolean;
  /** Called once before the first write (writability pre-check). */
  beforeWrite?: () => Promise<void>;
  permits?: number;
  /** Use named temporaries even where O_TMPFILE works (exercises the fallback in tests). */
  noTmpfile?: boolean;
}

// The synchronous object path (insecure repositories on filesystems without fs-verity): a few
// system calls on the calling thread, no promises, paths relative to an objects/ dir fd.
const syncSymbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  fstatat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
} as const;
const O_RDWR = 0o2;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;
const O_PATH = 0o10000000;
const O_TMPFILE = 0o20000000 | O_DIRECTORY;
const AT_FDCWD = -100;
const AT_SYMLINK_FOLLOW = 0x400;
const EINTR = 4;
const EEXIST = 17;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
/** st_mode in struct stat: after dev, ino, nlink on x86_64; after dev, ino on the generic layout. */
const ST_MODE_OFFSET = Deno.build.arch === "x86_64" ? 24 : 16;
/** Objects stored synchronously before the writes move to a worker thread (small imports never start one). */
const WORKER_AFTER = 256;

/** Reusable NUL-terminated path buffers (ASCII paths only: object paths and /proc/self/fd/N). */
class CPath {
  readonly bytes = new Uint8Array(256);
  #enc = new TextEncoder();
  set(s: string): Uint8Array {
    const { written } = this.#enc.encodeInto(s, this.bytes);
    this.bytes[written] = 0;
    return this.bytes;
  }
}

export class ObjectDir implements ObjectStore {
  readonly alg: HashAlgorithm;
  readonly dir: string;
  readonly semaphore: Semaphore;
  #opts: ObjectDirOptions;
  #madeDirs = new Set<string>();
  #ready?: Promise<void>;
  /** Set after the filesystem said "no fs-verity here" (insecure repos only): skips further attempts. */
  #noVerityFs = false;
  /** Set once prepare() has succeeded. */
  #prepared = false;
  /** objects/ opened O_PATH for the synchronous path (-1 until first needed). */
  #dirFd = -1;
  #hasher?: FsVerityHasher;
  #stat = new Uint8Array(256);
  #rel = new CPath();
  #proc = new CPath();
  #syncStored = 0;
  /** The worker thread taking the synchronous path's writes; null once it could not be started. */
  #bg?: ObjectWriteWorker | null;

  constructor(repoPath: string, alg: HashAlgorithm, opts: ObjectDirOptions) {
    this.alg = alg;
    this.dir = `${repoPath}/objects`;
    this.#opts = opts;
    this.semaphore = new Semaphore(opts.permits);
  }

  /** An O_TMPFILE in `dir`, or null where the filesystem has none (then named temporaries are used). */
  tmpfile(dir: string): number | null {
    return this.#opts.noTmpfile ? null : openTmpfile(dir, 0o644);
  }

  pathOf(id: ObjectId): string {
    return `${this.dir}/${id.objectPath()}`;
  }

  async has(id: ObjectId): Promise<boolean> {
    try {
      return (await Deno.stat(this.pathOf(id))).isFile;
    } catch {
      return false;
    }
  }

  async open(id: ObjectId): Promise<Deno.FsFile> {
    try {
      return await Deno.open(this.pathOf(id), { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NotFoundError(`object ${id.toId()} not found`);
      throw e;
    }
  }

  async read(id: ObjectId): Promise<Uint8Array> {
    try {
      return await Deno.readFile(this.pathOf(id));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NotFoundError(`object ${id.toId()} not found`);
      throw e;
    }
  }

  /** Runs the writability check and creates objects/ once. */
  prepare(): Promise<void> {
    return this.#ready ??= (async () => {
      await this.#opts.beforeWrite?.();
      await Deno.mkdir(this.dir, { recursive: true, mode: 0o755 });
      this.#prepared = true;
    })();
  }

  /** Releases the objects/ directory fd and the write worker. */
  close(): void {
    if (this.#dirFd >= 0) closeFd(this.#dirFd);
    this.#dirFd = -1;
    this.#bg?.terminate();
    this.#bg = undefined;
  }

  /** Waits until every object handed over has been written; rejects with the first write error. */
  async settle(): Promise<void> {
    await this.#bg?.settle();
  }

  async ensureSubdir(id: ObjectId): Promise<void> {
    const xx = id.hex().slice(0, 2);
    if (this.#madeDirs.has(xx)) return;
    try {
      await Deno.mkdir(`${this.dir}/${xx}`, { mode: 0o755 });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    this.#madeDirs.add(xx);
  }

  /**
   * Takes a finished O_TMPFILE's writable fd and returns the fd to link (the caller closes it):
   * verity is enabled where the repository wants it (spec §4.3 procedure) and the kernel digest
   * checked. A filesystem without verity (insecure repos) is remembered so later objects skip it.
   */
  sealTmpfile(writeFd: number, dir: string, id: ObjectId): number {
    const insecure = this.#opts.insecure();
    if (insecure && this.#noVerityFs) return writeFd;
    const { fd, enabled } = enableVerityOnTmpfile(writeFd, dir, id.alg);
    if (!enabled) {
      if (!insecure) {
        closeFd(fd);
        throw noVerityError(`object ${id.objectPath()}`);
      }
      this.#noVerityFs = true;
      return fd;
    }
    try {
      checkMeasured(fd, id, insecure, `object ${id.objectPath()}`);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return fd;
  }

  /** Like sealTmpfile for a named file (no-O_TMPFILE fallback). */
  sealNamed(path: string, id: ObjectId): void {
    const insecure = this.#opts.insecure();
    if (insecure && this.#noVerityFs) return;
    const fd = openPath(path, O_RDONLY);
    try {
      const what = `object ${id.objectPath()}`;
      if (enableOrTolerate(fd, id.alg, insecure, what)) checkMeasured(fd, id, insecure, what);
      else this.#noVerityFs = true;
    } finally {
      closeFd(fd);
    }
  }

  /** Objects this process wrote or found already present (for import statistics). */
  #written = 0;
  #present = 0;
  #bgAdded = 0;

  /** Counts of objects stored so far by this process: newly written vs found already present. */
  counts(): { written: number; present: number } {
    const bgPresent = this.#bg ? this.#bg.present : 0;
    return { written: this.#written + this.#bgAdded - bgPresent, present: this.#present + bgPresent };
  }

  /** Called by the streamed writer when it finishes. */
  countFinished(alreadyPresent: boolean): void {
    if (alreadyPresent) this.#present++;
    else this.#written++;
  }

  /** fs-verity digest of in-memory data, with one reused hasher (no allocation per object). */
  digestOf(data: Uint8Array): ObjectId {
    const h = this.#hasher ??= new FsVerityHasher(this.alg);
    h.reset();
    h.update(data);
    return h.digest();
  }

  /** Stores in-memory data (spec §2.4 path 1) and returns its id; an existing object is kept. */
  ensureObject(data: Uint8Array): Promise<ObjectId> {
    return this.#ensureKnown(this.digestOf(data), data);
  }

  /**
   * Like ensureObject, but `data` is only read before this returns, so the caller may reuse its
   * buffer at once. Where the synchronous path applies (insecure repository, no fs-verity on the
   * filesystem, O_TMPFILE supported, objects/ prepared) the object is stored before returning and
   * the id comes back as a value; otherwise as a promise (from a copy of `data`).
   */
  ensureObjectBorrowed(data: Uint8Array): ObjectId | Promise<ObjectId> {
    const id = this.digestOf(data);
    if (!this.#syncPathUsable()) return this.#ensureKnown(id, data.slice());
    const bg = this.#worker();
    if (!bg) {
      this.#storeSync(id, data);
      return id;
    }
    // The worker writes it later; settle() is the barrier before a stream refers to it.
    const rel = id.objectPath();
    if (bg.tryAdd(rel, data)) {
      this.#bgAdded++;
      return id;
    }
    const copy = data.slice();
    return (async () => {
      do await bg.whenFree(); while (!bg.tryAdd(rel, copy));
      this.#bgAdded++;
      return id;
    })();
  }

  /** The write worker, started after WORKER_AFTER synchronous objects; null where none can run. */
  #worker(): ObjectWriteWorker | null {
    if (this.#bg !== undefined) return this.#bg;
    if (++this.#syncStored <= WORKER_AFTER) return null;
    try {
      this.#bg = new ObjectWriteWorker(this.dir);
    } catch {
      this.#bg = null;
    }
    return this.#bg;
  }

  #syncPathUsable(): boolean {
    return this.#prepared && this.#noVerityFs && !this.#opts.noTmpfile && this.#opts.insecure();
  }

  /** O_TMPFILE in objects/XX, write, link under the final name; skipped when the name exists. */
  #storeSync(id: ObjectId, data: Uint8Array): void {
    const lib = openLibc(syncSymbols);
    if (this.#dirFd < 0) {
      const fd = lib.open(this.#rel.set(this.dir), O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
      if (fd < 0) throw kernelError("open", this.dir);
      this.#dirFd = fd;
    }
    const hex = id.hex();
    const xx = hex.slice(0, 2);
    const rel = this.#rel.set(`${xx}/${hex.slice(2)}`);
    if (lib.fstatat(this.#dirFd, rel, this.#stat, 0) === 0) {
      const mode = new DataView(this.#stat.buffer).getUint32(ST_MODE_OFFSET, true);
      if ((mode & S_IFMT) === S_IFREG) {
        this.#present++;
        return;
      }
    }
    if (!this.#madeDirs.has(xx)) {
      try {
        Deno.mkdirSync(`${this.dir}/${xx}`, { mode: 0o755 });
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
      this.#madeDirs.add(xx);
    }
    let fd: number;
    do fd = lib.openat(this.#dirFd, this.#proc.set(xx), O_TMPFILE | O_RDWR | O_CLOEXEC, 0o644); while (
      fd < 0 && errno() === EINTR
    );
    if (fd < 0) throw kernelError("open(O_TMPFILE)", `${this.dir}/${xx}`);
    try {
      let off = 0;
      while (off < data.length) {
        const n = Number(lib.write(fd, off === 0 ? data : data.subarray(off), BigInt(data.length - off)));
        if (n < 0) {
          if (errno() === EINTR) continue;
          throw kernelError("write", `object ${id.objectPath()}`);
        }
        off += n;
      }
      if (
        lib.linkat(AT_FDCWD, this.#proc.set(`/proc/self/fd/${fd}`), this.#dirFd, rel, AT_SYMLINK_FOLLOW) < 0
      ) {
        // EEXIST: stored meanwhile by someone else, which is fine (same name = same content).
        if (errno() !== EEXIST) throw kernelError("linkat", `${this.dir}/${id.objectPath()}`);
        this.#present++;
      } else this.#written++;
    } finally {
      lib.close(fd);
    }
  }

  async #ensureKnown(id: ObjectId, data: Uint8Array): Promise<ObjectId> {
    if (await this.has(id)) {
      if (!this.#opts.insecure()) this.#checkExisting(id);
      this.#present++;
      return id;
    }
    await this.prepare();
    await this.semaphore.run(async () => {
      await this.ensureSubdir(id);
      const finalPath = this.pathOf(id);
      const fd = this.tmpfile(`${this.dir}/${id.hex().slice(0, 2)}`);
      if (fd === null) {
        await this.#storeViaRename(finalPath, id, async (f) => {
          await writeFileAll(f, data);
        });
        return;
      }
      try {
        writeAll(fd, data);
      } catch (e) {
        closeFd(fd);
        throw named(e, fd, `new object ${id.objectPath()} in ${this.dir}`);
      }
      const sealed = this.sealTmpfile(fd, `${this.dir}/${id.hex().slice(0, 2)}`, id);
      try {
        // false = someone else stored it first: fine
        if (linkTmpfile(sealed, finalPath)) this.#written++;
        else this.#present++;
      } finally {
        closeFd(sealed);
      }
    });
    return id;
  }

  /** Secure repositories: an object already present must carry verity with the digest of its name. */
  #checkExisting(id: ObjectId): void {
    const fd = openPath(this.pathOf(id), O_RDONLY);
    try {
      const what = `object ${id.objectPath()}`;
      if (enableOrTolerate(fd, id.alg, false, what)) checkMeasured(fd, id, false, what);
    } finally {
      closeFd(fd);
    }
  }

  /** Fallback for filesystems without O_TMPFILE: a named temporary renamed without replacing. */
  async #storeViaRename(
    finalPath: string,
    id: ObjectId | null,
    fill: (f: Deno.FsFile) => Promise<void>,
  ): Promise<boolean> {
    const tmp = `${this.dir}/.tmp-${crypto.randomUUID()}`;
    try {
      {
        using f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
        await fill(f);
      }
      if (id) this.sealNamed(tmp, id);
      return renameNoReplace(tmp, finalPath);
    } finally {
      await Deno.remove(tmp).catch(() => {});
    }
  }

  createObjectWriter(): ObjectWriter {
    return new TmpfileObjectWriter(this);
  }
}

/** A write error names the file being written (an fd number means nothing to a user). */
function named(e: unknown, fd: number, where: string): unknown {
  if (e instanceof KernelError) e.context = e.context.map((c) => (c === `fd ${fd}` ? where : c));
  return e;
}

function kernelError(syscall: string, where: string): KernelError {
  const e = errno();
  return new KernelError(syscall, e, errnoName(e), undefined, [where]);
}

async function writeFileAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await f.write(data.subarray(off));
}

/** Streamed object (spec §2.4 path 2): hashed while written, linked under its id at finish(). */
class TmpfileObjectWriter implements ObjectWriter {
  #store: ObjectDir;
  #hasher: FsVerityHasher;
  #fd = -1;
  #tmpPath?: string; // fallback without O_TMPFILE
  #tmpFile?: Deno.FsFile;
  #state: "new" | "open" | "done" = "new";
  #opening?: Promise<void>;

  constructor(store: ObjectDir) {
    this.#store = store;
    this.#hasher = new FsVerityHasher(store.alg);
  }

  #open(): Promise<void> {
    return this.#opening ??= (async () => {
      await this.#store.prepare();
      await this.#store.semaphore.acquire();
      try {
        const fd = this.#store.tmpfile(this.#store.dir);
        if (fd !== null) this.#fd = fd;
        else {
          this.#tmpPath = `${this.#store.dir}/.tmp-${crypto.randomUUID()}`;
          this.#tmpFile = await Deno.open(this.#tmpPath, { write: true, createNew: true, mode: 0o644 });
        }
        this.#state = "open";
      } catch (e) {
        this.#store.semaphore.release();
        this.#state = "done";
        throw e;
      }
    })();
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#state === "done") throw new Error("object writer already finished");
    if (this.#state === "new") await this.#open();
    if (chunk.length === 0) return;
    if (this.#fd >= 0) {
      try {
        writeAll(this.#fd, chunk);
      } catch (e) {
        throw named(e, this.#fd, `new object (unnamed temporary file) in ${this.#store.dir}`);
      }
    } else await writeFileAll(this.#tmpFile!, chunk);
    this.#hasher.update(chunk);
  }

  async finish(): Promise<{ id: ObjectId; size: number; alreadyPresent: boolean }> {
    const r = await this.#finish();
    this.#store.countFinished(r.alreadyPresent);
    return r;
  }

  async #finish(): Promise<{ id: ObjectId; size: number; alreadyPresent: boolean }> {
    if (this.#state === "done") throw new Error("object writer already finished");
    if (this.#state === "new") await this.#open();
    const store = this.#store;
    const id = this.#hasher.digest();
    const size = this.#hasher.size;
    const finalPath = store.pathOf(id);
    try {
      if (this.#fd < 0) {
        this.#tmpFile!.close();
        this.#tmpFile = undefined;
        const existing = await statSize(finalPath);
        if (existing === size) return { id, size, alreadyPresent: true };
        await store.ensureSubdir(id);
        store.sealNamed(this.#tmpPath!, id);
        const placed = renameNoReplace(this.#tmpPath!, finalPath);
        if (placed) this.#tmpPath = undefined;
        return { id, size, alreadyPresent: !placed };
      }
      // Same size under the final name = the same object (names are digests); no content compare.
      const existing = await statSize(finalPath);
      if (existing === size) return { id, size, alreadyPresent: true };
      const fd = this.#fd;
      this.#fd = -1; // sealTmpfile owns it now
      this.#fd = store.sealTmpfile(fd, store.dir, id);
      await store.ensureSubdir(id);
      const linked = linkTmpfile(this.#fd, finalPath);
      return { id, size, alreadyPresent: !linked };
    } finally {
      this.#cleanup();
    }
  }

  abort(): Promise<void> {
    if (this.#state === "open") this.#cleanup();
    this.#state = "done";
    return Promise.resolve();
  }

  #cleanup(): void {
    if (this.#state !== "open") return;
    this.#state = "done";
    if (this.#fd >= 0) closeFd(this.#fd); // the anonymous tmpfile vanishes with its last fd
    this.#fd = -1;
    if (this.#tmpFile) this.#tmpFile.close();
    if (this.#tmpPath) {
      try {
        Deno.removeSync(this.#tmpPath);
      } catch { /* already gone */ }
    }
    this.#store.semaphore.release();
  }
}

async function statSize(path: string): Promise<number | null> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return null;
  }
}
