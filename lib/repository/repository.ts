// A composefs repository (docs/repository.md): opening and initialising, the shared lock, meta.json policy,
// and the object store. Streams, images, gc and fsck live in their own files and work on this.
import { NotFoundError, PermissionError, RepositoryError } from "../errors.ts";
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import { closeFd, isWritableFs, syncfs, syncfsAsync } from "../linux/fs.ts";
import { type RepoFs, repoFs, RepoPathError } from "./repo_fs.ts";
import { RepoLock } from "./lock.ts";
import {
  algorithmName,
  checkMeta,
  describeMeta,
  effectiveErofsFormats,
  type ErofsFormats,
  type ErofsVersion,
  META_FILENAME,
  newMeta,
  parseAlgorithm,
  type RepoMeta,
  sameMeta,
} from "./meta.ts";
import { metaHasVerity, readMetaFile, writeMetaFile } from "./meta_file.ts";
import type { ObjectStore, ObjectWriter } from "../objects/store.ts";
import { ObjectDir } from "../objects/object_dir.ts";
import { hasObjectsDir, inferFromObjects } from "./old_format.ts";
import type { SplitStreamReader, SplitStreamWriter } from "../splitstream/mod.ts";
import * as streams from "./streams.ts";
import * as images from "./images.ts";
import { gc, type GcOptions, type GcResult } from "./gc.ts";
import { fsck, type FsckOptions, type FsckReport } from "./fsck.ts";
import { ObjectId as ObjectIdClass } from "../fsverity/object_id.ts";

export interface InitOptions {
  /** `fsverity-sha256-12` or `fsverity-sha512-12` (default). */
  algorithm?: string;
  /** Create without fs-verity on meta.json (objects still get verity where the filesystem has it). */
  insecure?: boolean;
  /** Default EROFS format (default V2). */
  erofsVersion?: ErofsVersion;
  /** Delete streams/, images/ and meta.json first (objects/ is kept). */
  resetMetadata?: boolean;
}

export interface InitResult {
  path: string;
  /** false when an identical meta.json was already there. */
  created: boolean;
  meta: RepoMeta;
  insecure: boolean;
}

export interface OpenOptions {
  /** `--hash`: used when there is no meta.json; must agree with it when there is. */
  hash?: HashAlgorithm;
  /** Refuse (instead of upgrade) old-format repositories without meta.json. */
  noUpgrade?: boolean;
  /** Fail when the repository is insecure. */
  requireVerity?: boolean;
  /** Force insecure mode (deprecated `--insecure`). */
  insecure?: boolean;
  /** Narrow the EROFS formats to this one for this process (meta.json is not rewritten). */
  erofsVersion?: ErofsVersion;
  /** Permits of the object-write semaphore (default: number of cores). */
  writePermits?: number;
  /**
   * For fsck: open even when meta.json is unreadable or unparsable, with the algorithm from `hash`,
   * else inferred from objects, else SHA-512 (fsck then reports the problem). Policy refusals — not
   * initialized, `--no-upgrade` without meta.json, `--hash` disagreeing with meta.json — still refuse.
   */
  lenientMeta?: boolean;
  /** Store objects through named temporaries instead of O_TMPFILE (tests of that fallback). */
  noTmpfile?: boolean;
}

/**
 * A refusal by policy (no meta.json under --no-upgrade, not initialized, --hash disagreeing with
 * meta.json): fsck opens leniently only where meta.json is unreadable, never past these (issue 13.5).
 */
class MetaPolicyError extends RepositoryError {
  override name = "RepositoryError";
}

async function removeIfExists(path: string, recursive: boolean): Promise<void> {
  try {
    await Deno.remove(path, { recursive });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

interface LoadedMeta {
  meta: RepoMeta;
  alg: HashAlgorithm;
  readOnlyReasons: string[];
}

/**
 * The algorithm of the repository at `path` without opening it or writing anything: its meta.json's,
 * else (an old-format repository, unless `noUpgrade`) the one its objects show; null when there is
 * neither. Throws what reading or validating meta.json throws.
 */
export async function probeRepositoryAlgorithm(
  path: string,
  opts: { noUpgrade?: boolean } = {},
): Promise<HashAlgorithm | null> {
  const m = await readMetaFile(path);
  if (m) return checkMeta(m.meta).alg;
  if (!opts.noUpgrade && await hasObjectsDir(path)) return (await inferFromObjects(path)).alg;
  return null;
}

/** Reads meta.json (upgrading an old-format repository unless told not to) and validates it. */
async function loadMeta(path: string, opts: OpenOptions): Promise<LoadedMeta> {
  let onDisk = await readMetaFile(path);
  if (onDisk === null) {
    if (opts.noUpgrade || !(await hasObjectsDir(path))) {
      throw new MetaPolicyError(
        `${META_FILENAME} not found in ${path}; this repository must be initialized with \`cfsctl init\``,
      );
    }
    // Old-format repository: write the meta.json it would have had.
    const inferred = await inferFromObjects(path).catch((e) => {
      throw new RepositoryError(`no ${META_FILENAME} in ${path}; tried to infer algorithm from objects`, {
        cause: e,
      });
    });
    if (opts.hash && opts.hash !== inferred.alg) {
      throw new MetaPolicyError(
        `repository is configured for ${algorithmName(inferred.alg)} (inferred from objects) ` +
          `but --hash ${opts.hash} was specified`,
      );
    }
    await writeMetaFile(path, newMeta(inferred.alg), inferred.hasVerity);
    onDisk = await readMetaFile(path);
    if (onDisk === null) throw new RepositoryError(`${META_FILENAME} vanished after writing it in ${path}`);
  }
  const { meta } = onDisk;
  const check = checkMeta(meta);
  if (opts.hash && opts.hash !== check.alg) {
    throw new MetaPolicyError(
      `repository is configured for ${meta.algorithm} (from ${META_FILENAME}) but --hash ${opts.hash} was specified`,
    );
  }
  return { meta, alg: check.alg, readOnlyReasons: check.readOnlyReasons };
}

export class Repository implements ObjectStore {
  readonly path: string;
  readonly alg: HashAlgorithm;
  readonly meta: RepoMeta;
  /** Formats committed by this process: the repository's, or the single `--erofs-version` one. */
  readonly erofsFormats: ErofsFormats;
  /** Unknown read-only-compatible features (reported only, like the reference tool). */
  readonly readOnlyReasons: string[];
  readonly objects: ObjectDir;
  #insecure: boolean;
  #lock: RepoLock;
  #writable?: Promise<void>;
  #openOptions: OpenOptions;

  private constructor(
    path: string,
    meta: RepoMeta,
    alg: HashAlgorithm,
    insecure: boolean,
    lock: RepoLock,
    opts: OpenOptions,
    readOnlyReasons: string[],
  ) {
    this.path = path;
    this.meta = meta;
    this.alg = alg;
    this.#insecure = insecure;
    this.#lock = lock;
    this.#openOptions = opts;
    this.readOnlyReasons = readOnlyReasons;
    const formats = effectiveErofsFormats(meta);
    this.erofsFormats = opts.erofsVersion !== undefined ? { default: opts.erofsVersion, extra: [] } : formats;
    this.objects = new ObjectDir(`${path}/objects`, alg, {
      verity: () => this.#insecure ? "tolerate" : "require",
      beforeWrite: () => this.ensureWritable(),
      permits: opts.writePermits,
      noTmpfile: opts.noTmpfile,
    });
  }

  // ---- creating and opening ------------------------------------------------------------------------

  /** `cfsctl init`: creates the directory (0700, parents as needed) and writes meta.json. */
  static async init(path: string, opts: InitOptions = {}): Promise<InitResult> {
    const alg = parseAlgorithm(opts.algorithm ?? "fsverity-sha512-12");
    const meta = newMeta(alg, opts.erofsVersion ?? 2);
    const insecure = opts.insecure ?? false;
    if (opts.resetMetadata) {
      await removeIfExists(`${path}/streams`, true);
      await removeIfExists(`${path}/images`, true);
      await removeIfExists(`${path}/${META_FILENAME}`, false);
    }
    const parent = path.replace(/\/+$/, "").replace(/\/[^/]*$/, "");
    if (parent && parent !== path) await Deno.mkdir(parent, { recursive: true });
    try {
      await Deno.mkdir(path, { mode: 0o700 });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) {
        throw new RepositoryError(`creating repository directory ${path}`, { cause: e });
      }
    }
    const existing = await readMetaFile(path);
    if (existing === null) {
      if (!isWritableFs(path)) throw new PermissionError(`repository directory ${path} is not writable`);
      let written: boolean;
      try {
        written = await writeMetaFile(path, meta, !insecure);
      } catch (e) {
        throw e instanceof RepositoryError ? e.within(`initializing repository at ${path}`) : e;
      }
      if (written) return { path, created: true, meta, insecure };
    }
    // Already there (or another init won the race): identical config is fine, anything else is not.
    const now = existing ?? await readMetaFile(path);
    if (now && sameMeta(now.meta, meta)) {
      return { path, created: false, meta: now.meta, insecure: !metaHasVerity(path, alg) };
    }
    throw new RepositoryError(
      `repository already initialized with ${now ? describeMeta(now.meta) : "a different configuration"}; ` +
        `cannot re-initialize with ${describeMeta(meta)} (use --reset-metadata to start over)`,
      { context: [`initializing repository at ${path}`] },
    );
  }

  /** Opens an existing repository, taking the shared lock (held until close()). */
  static async open(path: string, opts: OpenOptions = {}): Promise<Repository> {
    if (!(await isDir(path))) {
      throw new NotFoundError(
        `repository ${path} does not exist; it must be initialized with \`cfsctl init\``,
      );
    }
    const lock = RepoLock.acquireShared(path);
    try {
      let loaded: LoadedMeta;
      try {
        loaded = await loadMeta(path, opts);
      } catch (e) {
        if (!opts.lenientMeta || e instanceof MetaPolicyError) throw e;
        const alg = opts.hash ?? (await inferFromObjects(path).then((r) => r.alg, () => "sha512" as const));
        loaded = { meta: newMeta(alg), alg, readOnlyReasons: [] };
      }
      let insecure = opts.insecure ?? false;
      try {
        insecure ||= !metaHasVerity(path, loaded.alg);
      } catch (e) {
        if (!opts.lenientMeta) throw e;
        insecure = true;
      }
      if (opts.requireVerity && insecure) {
        throw new RepositoryError(
          "repository was not initialized with fs-verity " +
            "(hint: re-create with `cfsctl init` on a verity-capable filesystem)",
        );
      }
      return new Repository(path, loaded.meta, loaded.alg, insecure, lock, opts, loaded.readOnlyReasons);
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /** Releases the shared lock. */
  close(): void {
    this.objects.close();
    this.#lock.release();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // ---- state ------------------------------------------------------------------------------------------

  get insecure(): boolean {
    return this.#insecure;
  }

  /**
   * Options that open this repository again as it is open now (another thread of this process opens
   * its own instance: lib/http_fetch/fetch_threads.ts). Plain data, so it can be posted to a thread.
   */
  reopenOptions(): OpenOptions {
    const { lenientMeta: _, ...rest } = this.#openOptions;
    return { ...rest, insecure: this.#insecure };
  }

  /** Deprecated `--insecure`: stop requiring verity on this open repository. */
  setInsecure(): void {
    this.#insecure = true;
  }

  get lock(): RepoLock {
    return this.#lock;
  }

  /** Writability pre-check (docs/repository.md#locking): read-only mounts and unwritable directories
   *  fail early. */
  ensureWritable(): Promise<void> {
    return this.#writable ??= isWritableFs(this.path) ? Promise.resolve() : Promise.reject(
      new PermissionError(`repository ${this.path} is read-only (read-only filesystem or no write access)`),
    );
  }

  /** Flushes the repository's filesystem (before publishing a stream that references new objects). */
  sync(): void {
    syncfs(this.#lock.fd);
  }

  /** sync() on a worker thread: the caller's thread goes on meanwhile (other layers of a pull). */
  syncAsync(): Promise<void> {
    return syncfsAsync(this.#lock.fd);
  }

  // ---- objects (ObjectStore) --------------------------------------------------------------------------

  ensureObject(data: Uint8Array): Promise<ObjectId> {
    return this.objects.ensureObject(data);
  }

  ensureObjectBorrowed(data: Uint8Array): ObjectId | Promise<ObjectId> {
    return this.objects.ensureObjectBorrowed(data);
  }

  settle(): Promise<void> {
    return this.objects.settle();
  }

  createObjectWriter(): ObjectWriter {
    return this.objects.createObjectWriter();
  }

  objectPath(id: ObjectId): string {
    return this.objects.pathOf(id);
  }

  /** Strict access below the repository directory (no symlinks where the layout has none). */
  get fs(): RepoFs {
    return repoFs(this);
  }

  /** Whether the object exists as a regular file (a symlink or FIFO in its place does not count). */
  hasObject(id: ObjectId): Promise<boolean> {
    try {
      return Promise.resolve(this.fs.kind(`objects/${id.objectPath()}`) === "file");
    } catch {
      return Promise.resolve(false);
    }
  }

  /** Opens an object; a FIFO, device or symlink in its place is refused (never a hang). */
  openObject(id: ObjectId): Promise<Deno.FsFile> {
    try {
      closeFd(this.fs.openFile(`objects/${id.objectPath()}`).fd);
    } catch (e) {
      if (e instanceof RepoPathError && e.code === "not-found") return this.objects.open(id);
      return Promise.reject(e);
    }
    return this.objects.open(id);
  }

  readObject(id: ObjectId): Promise<Uint8Array> {
    const rel = `objects/${id.objectPath()}`;
    try {
      return Promise.resolve(this.fs.readFile(rel, Number.MAX_SAFE_INTEGER));
    } catch (e) {
      if (e instanceof RepoPathError && e.code === "not-found") {
        return Promise.reject(new NotFoundError(`object ${id.toId()} not found`));
      }
      return Promise.reject(e);
    }
  }

  /** The object's content as a web stream (closes the file at the end). */
  async openObjectStream(id: ObjectId): Promise<ReadableStream<Uint8Array>> {
    return (await this.objects.open(id)).readable;
  }

  /** Parses `<hex>` or `sha256:<hex>`/`sha512:<hex>` as an object id of this repository's algorithm. */
  parseObjectId(s: string): ObjectId {
    const id = s.includes(":") ? ObjectIdClass.fromId(s) : ObjectIdClass.fromHex(s, this.alg);
    if (id.alg !== this.alg) {
      throw new RepositoryError(`object id ${s} is ${id.alg}, the repository uses ${this.alg}`);
    }
    return id;
  }

  /** Alias of ensureWritable (the writability pre-check before a pull or import). */
  checkWritable(): Promise<void> {
    return this.ensureWritable();
  }

  // ---- streams and images -----------------------------------------------------------------------------

  hasStream(contentId: string): Promise<ObjectId | null> {
    return streams.hasStream(this, contentId);
  }

  writeStream(contentId: string, writer: SplitStreamWriter, refName?: string): Promise<ObjectId> {
    return streams.writeStream(this, contentId, writer, refName);
  }

  /** The stream object stored now, its link once synced (streams.storeStream). */
  storeStream(
    contentId: string,
    writer: SplitStreamWriter,
  ): Promise<{ id: ObjectId; linked: Promise<void> }> {
    return streams.storeStream(this, contentId, writer);
  }

  nameStream(contentId: string, name: string): Promise<void> {
    return streams.nameStream(this, contentId, name);
  }

  openStream(name: string, verity?: ObjectId | null, contentType?: bigint): Promise<SplitStreamReader> {
    return streams.openStream(this, name, verity, contentType);
  }

  writeImage(bytes: Uint8Array, name?: string): Promise<ObjectId> {
    return images.writeImage(this, bytes, name);
  }

  /** writeImage of an image produced in pieces (images.writeImageFrom): never whole in memory. */
  writeImageFrom(produce: (sink: (piece: Uint8Array) => void) => void, name?: string): Promise<ObjectId> {
    return images.writeImageFrom(this, produce, name);
  }

  openImage(name: string): Promise<images.OpenedImage> {
    return images.openImage(this, name);
  }

  readImage(name: string): Promise<{ image: images.OpenedImage; bytes: Uint8Array }> {
    return images.readImage(this, name);
  }

  listImages(): Promise<images.ImageEntry[]> {
    return images.listImages(this);
  }

  /** EROFS formats to commit, the default first. */
  erofsVersions(): ErofsVersion[] {
    return [this.erofsFormats.default, ...this.erofsFormats.extra];
  }

  // ---- maintenance ------------------------------------------------------------------------------------

  gc(opts?: GcOptions): Promise<GcResult> {
    return gc(this, opts);
  }

  fsck(opts?: FsckOptions): Promise<FsckReport> {
    return fsck(this, opts);
  }
}
