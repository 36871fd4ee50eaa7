// The one content-addressed object store: DIR/XX/<rest of the hex digest>, used as a repository's
// objects/ and as `mkcomposefs --digest-store DIR` (docs/repository.md). An object becomes visible
// only complete and under its final name: data goes to an anonymous O_TMPFILE (or, where that is not
// supported, a `.tmp-…` file renamed without replacing), is hashed while it is written, and is
// linked into place at the end. A killed writer therefore leaves nothing behind.
//
// fs-verity follows a policy read at each write: "require" (secure repositories: fail without it,
// check the kernel's digest) or "tolerate" (insecure repositories, digest stores: enable it where
// the filesystem has it, remember once that it has not).
//
// In-memory objects take a synchronous path where the policy tolerates missing verity: hash,
// "already there?", then O_TMPFILE + write (+ verity) + linkat on the calling thread (Deno's async
// file ops cost a round trip to an I/O thread each, which dominated imports of many small files).
// After a few hundred objects on a filesystem without fs-verity, the writes move to a worker thread
// (./write_worker.ts), so the kernel's per-file cost runs beside decoding and hashing; settle() waits
// for them.
import { InternalError, KernelError, NotFoundError } from "../errors.ts";
import { FsVerityHasher } from "../fsverity/hasher.ts";
import { DIGEST_SIZE, type HashAlgorithm, type ObjectId } from "../fsverity/object_id.ts";
import { O_DIRECTORY, O_PATH } from "../linux/constants.ts";
import {
  closeFd,
  linkTmpfileAsync,
  linkTmpfileAt,
  O_RDONLY,
  openPath,
  openTmpfile,
  openTmpfileAsync,
  renameNoReplace,
  writeAll,
} from "../linux/fs.ts";
import { existsAt, mkdirAt, openTmpfileIn } from "../linux/fs_at.ts";
import { enableVerityOnTmpfile } from "../linux/fsverity_ioctl.ts";
import { DigestSet } from "./digest_set.ts";
import type { ObjectStore, ObjectWriter } from "./store.ts";
import { MAX_BATCHED_OBJECT, ObjectWriteWorker } from "./write_worker.ts";
import { Semaphore } from "./semaphore.ts";
import { checkMeasured, enableOrTolerate, noVerityError } from "./verity.ts";

/** How fs-verity is applied to new objects (see the header). */
export type VerityPolicy = "require" | "tolerate";

export interface ObjectDirOptions {
  /** The verity policy, read at each write (a repository can be switched to insecure after opening). */
  verity: () => VerityPolicy;
  /** Called once before the first write (writability pre-check). */
  beforeWrite?: () => Promise<void>;
  permits?: number;
  /** Use named temporaries even where O_TMPFILE works (exercises the fallback in tests). */
  noTmpfile?: boolean;
}

/** Objects stored synchronously before the writes move to a worker thread (small imports never start one). */
const WORKER_AFTER = 256;
const enc = new TextEncoder();

export class ObjectDir implements ObjectStore {
  readonly alg: HashAlgorithm;
  readonly dir: string;
  readonly semaphore: Semaphore;
  #opts: ObjectDirOptions;
  #madeDirs = new Set<string>();
  #ready?: Promise<void>;
  /** Set after the filesystem said "no fs-verity here" (tolerant policy only): skips further attempts. */
  #noVerityFs = false;
  /** Set once prepare() has succeeded. */
  #prepared = false;
  /** The directory opened O_PATH for the synchronous path (-1 until first needed). */
  #dirFd = -1;
  #hasher?: FsVerityHasher;
  /** XX subdirectories this store created: they hold only objects in #stored (no lookup needed). */
  #freshDirs = new Set<string>();
  /** The objects this store stored or handed to the worker (digests, not strings: ./digest_set.ts). */
  #stored: DigestSet;
  #syncStored = 0;
  /** Set when the filesystem answered O_TMPFILE with "not supported": named temporaries from then on. */
  #noTmpfileFs = false;
  /** The worker thread taking the synchronous path's writes; null once it could not be started. */
  #bg?: ObjectWriteWorker | null;

  /** `dir` is the store itself (a repository passes its objects/ directory). */
  constructor(dir: string, alg: HashAlgorithm, opts: ObjectDirOptions) {
    this.alg = alg;
    this.dir = dir;
    this.#opts = opts;
    this.semaphore = new Semaphore(opts.permits);
    this.#stored = new DigestSet(DIGEST_SIZE[alg]);
  }

  /** An O_TMPFILE in `dir`, or null where the filesystem has none (then named temporaries are used). */
  tmpfile(dir: string): number | null {
    return this.#opts.noTmpfile || this.#noTmpfileFs ? null : openTmpfile(dir, 0o644);
  }

  /** tmpfile() opened on a worker thread (the caller's thread goes on meanwhile). */
  async tmpfileAsync(dir: string): Promise<number | null> {
    return this.#opts.noTmpfile || this.#noTmpfileFs ? null : await openTmpfileAsync(dir, 0o644);
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
   * verity is enabled where the repository wants it (docs/fsverity.md#kernel) and the kernel digest
   * checked. A filesystem without verity (insecure repos) is remembered so later objects skip it.
   */
  sealTmpfile(writeFd: number, dir: string, id: ObjectId): number {
    const insecure = this.#tolerant();
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
    const insecure = this.#tolerant();
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

  /**
   * Counts of objects stored so far by this process: newly written vs found already present, and how
   * many of them went through the write thread.
   */
  counts(): { written: number; present: number; threaded: number } {
    const bgPresent = this.#bg ? this.#bg.present : 0;
    return {
      written: this.#written + this.#bgAdded - bgPresent,
      present: this.#present + bgPresent,
      threaded: this.#bgAdded,
    };
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

  /** Stores in-memory data (docs/repository.md#objects) and returns its id; an existing object is kept. */
  ensureObject(data: Uint8Array): Promise<ObjectId> {
    return this.#ensureKnown(this.digestOf(data), data);
  }

  /**
   * Like ensureObject, but `data` is only read before this returns, so the caller may reuse its
   * buffer at once. Where the synchronous path applies (tolerant verity policy, O_TMPFILE
   * supported, the store prepared) the object is stored, or handed to the write worker, before
   * this returns and the id comes back as a value; otherwise as a promise (from a copy of `data`).
   */
  ensureObjectBorrowed(data: Uint8Array): ObjectId | Promise<ObjectId> {
    const id = this.digestOf(data);
    if (!this.#syncPathUsable()) return this.#ensureKnown(id, data.slice());
    if (this.#stored.has(id.bytes)) {
      this.#present++;
      return id;
    }
    const bg = data.length <= MAX_BATCHED_OBJECT ? this.#worker() : null;
    if (!bg) {
      if (!this.#storeSync(id, data)) return this.#ensureKnown(id, data.slice());
      return id;
    }
    // The worker writes it later (and checks for a copy already on disk); settle() is the barrier
    // before anything refers to it.
    this.#stored.add(id.bytes);
    const rel = id.objectPath();
    if (bg.tryAdd(rel, data)) {
      this.#bgAdded++;
      return id;
    }
    // Every batch is with the worker: rather than wait for one, this thread stores the object itself,
    // so both threads do the kernel's per-file work while the worker is behind.
    if (this.#storeSync(id, data)) return id;
    const copy = data.slice();
    return (async () => {
      do await bg.whenFree(); while (!bg.tryAdd(rel, copy));
      this.#bgAdded++;
      return id;
    })();
  }

  /** The write worker, once WORKER_AFTER objects were stored here and fs-verity is known absent. */
  #worker(): ObjectWriteWorker | null {
    if (this.#bg !== undefined) return this.#bg;
    if (!this.#noVerityFs || this.#syncStored < WORKER_AFTER) return null;
    try {
      this.#bg = new ObjectWriteWorker(this.dir);
    } catch {
      this.#bg = null;
    }
    return this.#bg;
  }

  #tolerant(): boolean {
    return this.#opts.verity() === "tolerate";
  }

  #syncPathUsable(): boolean {
    if (this.#opts.noTmpfile || this.#noTmpfileFs || !this.#tolerant()) return false;
    if (!this.#prepared && !this.#opts.beforeWrite) {
      // Nothing to check before writing: create the directory now instead of on the async path.
      Deno.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      this.#prepared = true;
    }
    return this.#prepared;
  }

  /** Makes sure DIR/XX exists (synchronously); remembers when it was created just now. */
  #subdirSync(xx: string): void {
    if (this.#madeDirs.has(xx)) return;
    if (mkdirAt(this.#dirFd, enc.encode(xx), 0o755, `${this.dir}/${xx}`)) this.#freshDirs.add(xx);
    this.#madeDirs.add(xx);
  }

  /**
   * O_TMPFILE in DIR/XX, write, verity where the filesystem has it, link under the final name;
   * skipped when the name exists. False when the filesystem has no O_TMPFILE (nothing was done).
   */
  #storeSync(id: ObjectId, data: Uint8Array): boolean {
    if (this.#dirFd < 0) this.#dirFd = openPath(this.dir, O_PATH | O_DIRECTORY);
    const hex = id.hex();
    const xx = hex.slice(0, 2);
    const rel = enc.encode(`${xx}/${hex.slice(2)}`);
    this.#subdirSync(xx);
    // In a directory made here, only objects stored here exist (another writer's copy of the same
    // object makes linkat say EEXIST, which is fine): no system call to ask.
    if (!this.#freshDirs.has(xx) && existsAt(this.#dirFd, rel, this.pathOf(id))) {
      this.#stored.add(id.bytes);
      this.#present++;
      return true;
    }
    let fd = openTmpfileIn(this.#dirFd, enc.encode(xx), 0o644, `${this.dir}/${xx}`);
    if (fd === null) {
      this.#noTmpfileFs = true;
      return false;
    }
    try {
      try {
        writeAll(fd, data);
      } catch (e) {
        throw named(e, fd, `new object ${id.objectPath()} in ${this.dir}/${xx}`);
      }
      const w = fd;
      fd = -1; // sealTmpfile owns (and closes) the writable fd
      fd = this.sealTmpfile(w, `${this.dir}/${xx}`, id);
      // false: the name exists (an equal object stored meanwhile): nothing to do.
      if (linkTmpfileAt(fd, this.#dirFd, rel)) this.#written++;
      else this.#present++;
    } finally {
      if (fd >= 0) closeFd(fd);
    }
    this.#stored.add(id.bytes);
    this.#syncStored++;
    return true;
  }

  async #ensureKnown(id: ObjectId, data: Uint8Array): Promise<ObjectId> {
    if (await this.has(id)) {
      if (!this.#tolerant()) this.#checkExisting(id);
      this.#present++;
      return id;
    }
    await this.prepare();
    await this.semaphore.run(async () => {
      await this.ensureSubdir(id);
      const finalPath = this.pathOf(id);
      const fd = await this.tmpfileAsync(`${this.dir}/${id.hex().slice(0, 2)}`);
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
        if (await linkTmpfileAsync(sealed, finalPath)) this.#written++;
        else this.#present++;
      } finally {
        closeFd(sealed);
      }
    });
    return id;
  }

  /** An object found already present under its name: on a secure store its verity must match the name. */
  checkPresent(id: ObjectId): void {
    if (!this.#tolerant()) this.#checkExisting(id);
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

async function writeFileAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await f.write(data.subarray(off));
}

/** Streamed object (docs/repository.md#objects): hashed while written, linked under its id at finish(). */
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
        const fd = await this.#store.tmpfileAsync(this.#store.dir);
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
    if (this.#state === "done") throw new InternalError("object writer already finished");
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

  writeSync(chunk: Uint8Array): boolean {
    if (this.#state !== "open" || this.#fd < 0) return false;
    try {
      writeAll(this.#fd, chunk);
    } catch (e) {
      throw named(e, this.#fd, `new object (unnamed temporary file) in ${this.#store.dir}`);
    }
    this.#hasher.update(chunk);
    return true;
  }

  async finish(): Promise<{ id: ObjectId; size: number; alreadyPresent: boolean }> {
    const r = await this.#finish();
    this.#store.countFinished(r.alreadyPresent);
    return r;
  }

  async #finish(): Promise<{ id: ObjectId; size: number; alreadyPresent: boolean }> {
    if (this.#state === "done") throw new InternalError("object writer already finished");
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
        if (existing === size) {
          store.checkPresent(id);
          return { id, size, alreadyPresent: true };
        }
        await store.ensureSubdir(id);
        store.sealNamed(this.#tmpPath!, id);
        const placed = renameNoReplace(this.#tmpPath!, finalPath);
        if (placed) this.#tmpPath = undefined;
        return { id, size, alreadyPresent: !placed };
      }
      // Same size under the final name = the same object (names are digests); no content compare, but
      // on a secure store the kernel's verity of the present file must match its name.
      const existing = await statSize(finalPath);
      if (existing === size) {
        store.checkPresent(id);
        return { id, size, alreadyPresent: true };
      }
      const fd = this.#fd;
      this.#fd = -1; // sealTmpfile owns it now
      this.#fd = store.sealTmpfile(fd, store.dir, id);
      await store.ensureSubdir(id);
      const linked = await linkTmpfileAsync(this.#fd, finalPath);
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
