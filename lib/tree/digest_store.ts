// The flat object store of C `mkcomposefs --digest-store DIR` (spec §1.5): each object at
// DIR/XX/<rest hex>, no repository metadata. Objects appear complete under their final name (an
// unnamed O_TMPFILE linked into place, or a temporary name renamed without replacing); an object
// already present is not written again. fs-verity is enabled where the filesystem has it and
// silently skipped where it does not (the C tool's insecure fallback).
//
// Small files (the scan reads them whole) take a synchronous path: hash, "already there?", then
// O_TMPFILE + write + linkat on the calling thread (Deno's async file ops cost a round trip to an I/O
// thread each, which dominated scans of trees with many small files). After a few hundred objects,
// on filesystems without fs-verity, the writes move to the repository's write worker thread (the
// kernel's per-file cost then runs beside the scan); settle() waits for them.
import { FsVerityHasher } from "../fsverity/hasher.ts";
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import {
  closeFd,
  linkTmpfileAt,
  O_DIRECTORY,
  O_PATH,
  O_RDONLY,
  openPath,
  renameNoReplace,
  writeAll,
} from "../linux/fs.ts";
import { existsAt, mkdirAt, openTmpfileIn } from "../linux/fs_at.ts";
import { enableVerity, VerityError } from "../linux/fsverity_ioctl.ts";
import type { ObjectStore, ObjectWriter } from "../repository/object_store.ts";
import { ObjectWriteWorker } from "../repository/object_write_worker.ts";

const enc = new TextEncoder();
/** Objects stored on the calling thread before the write worker takes over (small trees never start it). */
const WORKER_AFTER = 256;

export class FlatDigestStore implements ObjectStore {
  readonly alg: HashAlgorithm;
  readonly dir: string;
  #ready?: Promise<void>;
  #noVerity = false;
  /** DIR opened O_PATH for the synchronous path; -1 until first needed. */
  #dirFd = -1;
  /** Set when DIR's filesystem has no O_TMPFILE: the synchronous path is not used. */
  #noTmpfile = false;
  /** XX subdirectories known to exist. */
  #madeDirs = new Set<string>();
  /** XX subdirectories this store created: they hold only objects in #stored (no statx needed). */
  #freshDirs = new Set<string>();
  #stored = new Set<string>();
  #hasher?: FsVerityHasher;
  /** Objects stored on the calling thread so far; the write worker (null: none could start). */
  #syncStored = 0;
  #bg?: ObjectWriteWorker | null;

  constructor(dir: string, alg: HashAlgorithm = "sha256") {
    this.dir = dir;
    this.alg = alg;
  }

  pathOf(id: ObjectId): string {
    return `${this.dir}/${id.objectPath()}`;
  }

  #prepare(): Promise<void> {
    return this.#ready ??= Deno.mkdir(this.dir, { recursive: true, mode: 0o755 });
  }

  /** Releases the directory fd of the synchronous path and the write worker (call after settle()). */
  close(): void {
    if (this.#dirFd >= 0) closeFd(this.#dirFd);
    this.#dirFd = -1;
    this.#bg?.terminate();
    this.#bg = undefined;
  }

  /** Waits until every object whose id was handed out is on disk; rejects with a write error. */
  async settle(): Promise<void> {
    await this.#bg?.settle();
  }

  /** The write worker, once WORKER_AFTER objects were stored here and fs-verity is known absent. */
  #worker(): ObjectWriteWorker | null {
    if (this.#bg !== undefined) return this.#bg;
    if (!this.#noVerity || this.#syncStored < WORKER_AFTER) return null;
    try {
      this.#bg = new ObjectWriteWorker(this.dir);
    } catch {
      this.#bg = null;
    }
    return this.#bg;
  }

  /** Makes sure DIR/XX exists; true when it was created just now (so it holds no object yet). */
  #subdir(xx: string): boolean {
    if (this.#madeDirs.has(xx)) return false;
    const created = mkdirAt(this.#dirFd, enc.encode(xx), 0o755, `${this.dir}/${xx}`);
    this.#madeDirs.add(xx);
    if (created) this.#freshDirs.add(xx);
    return created;
  }

  /** Moves a finished temporary file into place (or drops it when the object exists). */
  async commit(tmp: string, id: ObjectId): Promise<boolean> {
    const xx = id.hex().slice(0, 2);
    if (!this.#madeDirs.has(xx)) {
      await Deno.mkdir(`${this.dir}/${xx}`, { recursive: true, mode: 0o755 });
      this.#madeDirs.add(xx);
    }
    const placed = renameNoReplace(tmp, this.pathOf(id));
    this.#stored.add(id.hex());
    if (!placed) {
      await Deno.remove(tmp).catch(() => {});
      return false;
    }
    this.#tryVerity(this.pathOf(id));
    return true;
  }

  #tryVerity(path: string): void {
    if (this.#noVerity) return;
    const fd = openPath(path, O_RDONLY);
    try {
      enableVerity(fd, this.alg);
    } catch (e) {
      // No fs-verity here (or already enabled): the store still works, like C's fallback.
      if (e instanceof VerityError && e.kind === "unsupported") this.#noVerity = true;
      else if (!(e instanceof VerityError)) throw e;
    } finally {
      closeFd(fd);
    }
  }

  /** fs-verity digest of in-memory data with one reused hasher. */
  #digest(data: Uint8Array): ObjectId {
    const h = this.#hasher ??= new FsVerityHasher(this.alg);
    h.reset();
    h.update(data);
    return h.digest();
  }

  async ensureObject(data: Uint8Array): Promise<ObjectId> {
    const r = this.ensureObjectBorrowed(data.slice());
    return r instanceof Promise ? await r : r;
  }

  /**
   * Stores in-memory data and returns its id; `data` is only read before this returns. Synchronous
   * (the id comes back as a value) unless the filesystem lacks O_TMPFILE.
   */
  ensureObjectBorrowed(data: Uint8Array): ObjectId | Promise<ObjectId> {
    if (this.#noTmpfile) return this.#ensureAsync(data.slice());
    if (this.#dirFd < 0) {
      Deno.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      this.#dirFd = openPath(this.dir, O_PATH | O_DIRECTORY);
    }
    const id = this.#digest(data);
    const hex = id.hex();
    const bg = this.#worker();
    if (bg) {
      // The worker checks for an object already on disk; this process's own ones are known here.
      if (this.#stored.has(hex)) return id;
      this.#stored.add(hex);
      const rel = id.objectPath();
      if (bg.tryAdd(rel, data)) return id;
      const copy = data.slice();
      return (async () => {
        do await bg.whenFree(); while (!bg.tryAdd(rel, copy));
        return id;
      })();
    }
    const xx = hex.slice(0, 2);
    const rel = enc.encode(`${xx}/${hex.slice(2)}`);
    this.#subdir(xx);
    // In a directory made here, only objects stored here exist (another writer's copy of the same
    // object would make linkat say EEXIST, which is fine): no system call to ask.
    const present = this.#freshDirs.has(xx)
      ? this.#stored.has(hex)
      : existsAt(this.#dirFd, rel, this.pathOf(id));
    if (present) return id;
    const fd = openTmpfileIn(this.#dirFd, enc.encode(xx), 0o644, `${this.dir}/${xx}`);
    if (fd === null) {
      this.#noTmpfile = true;
      return this.#ensureAsync(data.slice());
    }
    let placed: boolean;
    try {
      writeAll(fd, data);
      // false: the name exists (an equal object stored meanwhile): nothing to do.
      placed = linkTmpfileAt(fd, this.#dirFd, rel);
    } finally {
      closeFd(fd);
    }
    this.#stored.add(hex);
    this.#syncStored++;
    if (placed) this.#tryVerity(this.pathOf(id));
    return id;
  }

  async #ensureAsync(data: Uint8Array): Promise<ObjectId> {
    const w = this.createObjectWriter();
    await w.write(data);
    return (await w.finish()).id;
  }

  createObjectWriter(): ObjectWriter {
    const prepare = () => this.#prepare();
    const dir = this.dir;
    const commit = (tmp: string, id: ObjectId) => this.commit(tmp, id);
    const hasher = new FsVerityHasher(this.alg);
    let tmp: string | undefined;
    let file: Deno.FsFile | undefined;
    const open = async () => {
      await prepare();
      tmp = `${dir}/.tmp-${crypto.randomUUID()}`;
      file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
    };
    return {
      async write(chunk: Uint8Array) {
        if (!file) await open();
        let off = 0;
        while (off < chunk.length) off += await file!.write(chunk.subarray(off));
        hasher.update(chunk);
      },
      async finish() {
        if (!file) await open();
        file!.close();
        file = undefined;
        const id = hasher.digest();
        const placed = await commit(tmp!, id);
        return { id, size: hasher.size, alreadyPresent: !placed };
      },
      async abort() {
        file?.close();
        file = undefined;
        if (tmp) await Deno.remove(tmp).catch(() => {});
      },
    };
  }
}
