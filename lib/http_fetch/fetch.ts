// `cfsctl fetch URL NAME` (docs/fetch.md): copies a splitstream, the streams it references
// (recursively) and every object they reference from a web server that serves a repository
// directory as static files. Every object's fs-verity digest is checked against the id it was asked
// for; every stream referenced under a content digest (layer diff_id, `config:<digest>`) is
// reassembled and hashed; objects already present are not downloaded. Links (streams/…, images/…)
// are made only after everything is on disk and synced, so an interrupted fetch leaves only
// complete, correctly named objects behind (which `gc` removes if nothing ever refers to them).
import { createHash } from "node:crypto";
import { CfsError, FormatError, IntegrityError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { fsverityDigest } from "../fsverity/hasher.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { configStreamId, layerStreamId, manifestStreamId } from "../oci/tags.ts";
import { nullReporter, type ProgressReporter, ThrottledProgress } from "../progress/events.ts";
import type { Repository } from "../repository/repository.ts";
import { objectIdOfTarget } from "../repository/streams.ts";
import { checkLinkName, linkRelative } from "../repository/symlinks.ts";
import { CONTENT_TYPE } from "../oci/content_types.ts";
import { MAGIC } from "../splitstream/format.ts";
import { reassemble, SplitStreamReader } from "../splitstream/mod.ts";
import { equalBytes } from "../util/bytes.ts";
import { DigestSet } from "../objects/digest_set.ts";
import { threadedFetcher } from "./fetch_threads.ts";
import { type FetchedBody, HttpRepositorySource, type HttpSourceOptions } from "./http_source.ts";
import { Buffer } from "node:buffer";
import { fsverityDigestFd } from "../fsverity/digest_fd.ts";
import { leafPool } from "../fsverity/leaf_pool.ts";
import { closeFd, linkTmpfileAsync, writeAll } from "../linux/fs.ts";
import { pathSize } from "../linux/file_extents.ts";
import { concatBytes } from "../util/bytes.ts";

export interface FetchOptions extends HttpSourceOptions {
  /** Concurrent object downloads (default 4). */
  concurrency?: number;
  reporter?: ProgressReporter;
  /**
   * Downloads the objects instead of this thread (fetch threads by default: ./fetch_threads.ts; the
   * CLI's helper processes); must store each one verified, like fetchObjects, and may call `stored`
   * as each is in (the stream checks start early). Links are made here after.
   */
  objectFetcher?: ObjectFetcher;
  /**
   * Threads that download, write and hash the objects (default: the number of cores, at most 4);
   * 0 = this thread does it all. Ignored with `objectFetcher`.
   */
  threads?: number;
  /** Large objects hashed as they are written on this thread, not read back on the hashing pool. */
  hashInline?: boolean;
}

/** Downloads and stores `ids` (each verified); `stored(id)` as each one is in the store. */
export type ObjectFetcher = (ids: ObjectId[], stored?: (id: ObjectId) => void) => Promise<ObjectFetchStats>;

export interface ObjectFetchStats {
  fetched: number;
  present: number;
  bytes: number;
  /** Processes that shared the work (1 when not said). */
  processes?: number;
  /** Fetch threads that did it (./fetch_threads.ts; 0 or absent: the calling thread). */
  threads?: number;
}

export interface FetchStats {
  streams: number;
  streamsFetched: number;
  objects: number;
  objectsFetched: number;
  objectsPresent: number;
  /** Bytes of object and stream bodies received (after resumes: what was kept). */
  bytesFetched: number;
  /** EROFS images (composefs.image* named refs) linked under images/. */
  images: number;
  /** Processes that downloaded objects (see FetchOptions.objectFetcher). */
  processes: number;
  /** Fetch threads that downloaded objects (0: the main thread). */
  threads: number;
}

export interface FetchResult {
  /** `sha256:<hex>` of the stream's reassembled content. */
  contentDigest: string;
  /** The stream's object id. */
  verity: ObjectId;
  /** Where the stream was linked, relative to the repository (`streams/…`). */
  linked: string[];
  stats: FetchStats;
}

/** A splitstream object is read into memory: refuse anything bigger (a hostile server). */
const MAX_STREAM_BYTES = 512 << 20;
/** Objects up to this size are fetched into memory and checked before anything is written. */
const SMALL_OBJECT = 64 << 10;
/** Large objects received and still being hashed and linked, at most (each holds a tmpfile fd). */
const MAX_FINISHING = 8;

/** Named-ref keys that name EROFS images rather than splitstreams (config streams, docs/oci.md#link). */
const isImageKey = (k: string) => k.startsWith("composefs.image");
const DIGEST_KEY = /^(sha256|sha512):[0-9a-f]+$/;

/** The content digest a named-ref key promises for its stream, if any. */
function promisedDigest(key: string): string | undefined {
  if (DIGEST_KEY.test(key)) return key;
  if (key.startsWith("config:") && DIGEST_KEY.test(key.slice(7))) return key.slice(7);
  return undefined;
}

interface StreamNode {
  id: ObjectId;
  reader: SplitStreamReader;
  /** Named-ref keys under which other streams refer to this one. */
  keys: Set<string>;
  /** Content digest promised by a referrer (all referrers must agree). */
  expected?: string;
}

class Fetcher {
  readonly stats: FetchStats = {
    streams: 0,
    streamsFetched: 0,
    objects: 0,
    objectsFetched: 0,
    objectsPresent: 0,
    bytesFetched: 0,
    images: 0,
    processes: 1,
    threads: 0,
  };
  constructor(
    readonly repo: Repository,
    readonly src: HttpRepositorySource,
    readonly reporter: ProgressReporter,
    readonly hashInline = false,
  ) {}

  #where(rel: string): string {
    return String(this.src.urlOf(rel));
  }

  /** Stores in-memory bytes that must have fs-verity digest `id` (checked before storing). */
  async #storeChecked(id: ObjectId, data: Uint8Array, rel: string): Promise<void> {
    const actual = fsverityDigest(data, this.repo.alg);
    if (!actual.equals(id)) {
      throw new IntegrityError(
        `server sent content with fs-verity digest ${actual.hex()}, expected ${id.hex()}`,
        {
          context: [`fetching ${this.#where(rel)}`],
        },
      );
    }
    await this.repo.ensureObject(data);
  }

  /** A stream object's bytes: local when present, else downloaded and checked. */
  async streamBytes(id: ObjectId): Promise<Uint8Array> {
    if (await this.repo.hasObject(id)) return await this.repo.readObject(id);
    const rel = `objects/${id.objectPath()}`;
    const got = await this.src.getBytes(rel, MAX_STREAM_BYTES);
    if (!got) {
      throw new NotFoundError(`stream object ${id.toId()} is not on the server (${this.#where(rel)})`);
    }
    await this.#storeChecked(id, got.data, rel);
    this.stats.streamsFetched++;
    this.stats.bytesFetched += got.data.length;
    return got.data;
  }

  /** Objects received whose digest and link are still being done (#largeOnPool). */
  #finishing = new Set<Promise<void>>();
  #failed?: { error: unknown };

  /**
   * Downloads one object unless present; its digest must be `id`. `stored` is called once it is
   * in the store under its name: for a large object that may be after this returns (its digest is
   * computed on a pool thread while the next object is received); settle() waits for those.
   */
  async object(id: ObjectId, progress: ThrottledProgress, stored?: (id: ObjectId) => void): Promise<void> {
    if (this.#failed) throw this.#failed.error;
    const done = (n: number) => {
      this.stats.bytesFetched += n;
      this.stats.objectsFetched++;
      progress.add(1);
      stored?.(id);
    };
    if (await this.repo.hasObject(id)) {
      this.stats.objectsPresent++;
      progress.add(1);
      stored?.(id);
      return;
    }
    const rel = `objects/${id.objectPath()}`;
    const got = await this.src.get(rel);
    if (!got) throw new NotFoundError(`object ${id.toId()} is not on the server (${this.#where(rel)})`);
    if (got.size !== undefined && got.size <= SMALL_OBJECT) return done(await this.#small(id, got, rel));
    const finishing = this.hashInline ? null : await this.#largeOnPool(id, got, rel);
    if (!finishing) return done(await this.#large(id, got, rel));
    const p = finishing.finish.then(done, (e) => {
      this.#failed ??= { error: e };
    });
    this.#finishing.add(p);
    p.finally(() => this.#finishing.delete(p));
    // Bounded: each holds an open tmpfile and a pool request.
    while (this.#finishing.size >= MAX_FINISHING) await Promise.race(this.#finishing);
  }

  /** Waits for every object still being finished; throws the first failure. */
  async settle(): Promise<void> {
    while (this.#finishing.size > 0) await Promise.all(this.#finishing);
    if (this.#failed) throw this.#failed.error;
  }

  /** A small object: received into memory, checked, stored. Returns its size. */
  async #small(id: ObjectId, got: FetchedBody, rel: string): Promise<number> {
    const parts: Uint8Array[] = [];
    let n = 0;
    for await (const c of got.body) {
      n += c.length;
      if (n > SMALL_OBJECT) {
        throw new IntegrityError(`more bytes than the announced ${got.size}`, { context: [rel] });
      }
      parts.push(c);
    }
    await this.#storeChecked(id, concatBytes(parts), rel);
    return n;
  }

  #mismatch(actual: ObjectId, id: ObjectId, rel: string): IntegrityError {
    return new IntegrityError(
      `server sent content with fs-verity digest ${actual.hex()}, expected ${id.hex()}`,
      {
        context: [`fetching ${this.#where(rel)}`],
      },
    );
  }

  /**
   * A large object, where there is a hashing pool and O_TMPFILE: this thread only receives and
   * writes; the digest is computed on a pool thread from the written file (read back from the page
   * cache), so receiving the next objects goes on meanwhile. It gets its name (its digest, checked)
   * only when complete. Resolves once the body is received, with the promise of the rest (digest
   * and link; its size), or null when this way is not available.
   */
  async #largeOnPool(
    id: ObjectId,
    got: FetchedBody,
    rel: string,
  ): Promise<{ finish: Promise<number> } | null> {
    const objects = this.repo.objects;
    if (!leafPool()) return null;
    await objects.prepare();
    const tmp = await objects.tmpfileAsync(objects.dir);
    if (tmp === null) return null;
    let n = 0;
    try {
      for await (const c of got.body) {
        writeAll(tmp, c);
        n += c.length;
      }
    } catch (e) {
      closeFd(tmp);
      throw e instanceof CfsError ? e.within(`fetching ${this.#where(rel)}`) : e;
    }
    // Boxed: awaiting this method must not wait for the digest.
    return { finish: this.#sealOnPool(id, tmp, n, rel) };
  }

  /** Digest (pool thread), check against `id`, link under its name; closes `tmp`. */
  async #sealOnPool(id: ObjectId, tmp: number, n: number, rel: string): Promise<number> {
    const objects = this.repo.objects;
    let fd = tmp;
    try {
      const actual = await fsverityDigestFd(tmp, this.repo.alg, { parallelMin: 0, size: n });
      if (!actual.equals(id)) throw this.#mismatch(actual, id, rel);
      // Same size under the final name = the same object (names are digests).
      if (pathSize(objects.pathOf(id)) === n) {
        objects.countFinished(true);
        return n;
      }
      fd = -1;
      fd = objects.sealTmpfile(tmp, objects.dir, id);
      await objects.ensureSubdir(id);
      objects.countFinished(!(await linkTmpfileAsync(fd, objects.pathOf(id))));
      return n;
    } finally {
      if (fd >= 0) closeFd(fd);
    }
  }

  /**
   * A large object through the store's streamed writer (hashed as it is written): it only gets a
   * name once complete, and the name is its own digest — a wrong one is removed again and reported.
   */
  async #large(id: ObjectId, got: FetchedBody, rel: string): Promise<number> {
    const w = this.repo.createObjectWriter();
    let n = 0;
    try {
      for await (const c of got.body) {
        await w.write(c);
        n += c.length;
      }
    } catch (e) {
      await w.abort();
      throw e instanceof CfsError ? e.within(`fetching ${this.#where(rel)}`) : e;
    }
    const r = await w.finish();
    if (!r.id.equals(id)) {
      if (!r.alreadyPresent) await Deno.remove(this.repo.objectPath(r.id)).catch(() => {});
      throw this.#mismatch(r.id, id, rel);
    }
    return n;
  }
}

/**
 * The plain digest of a stream's reassembled content. On a pool thread where there is one: the
 * inline runs (copied into compact arrays) and the object paths go to the thread, which reads the
 * objects itself (ContentChecks starts each stream's as soon as its objects are in).
 */
async function contentDigest(repo: Repository, reader: SplitStreamReader, alg: string): Promise<string> {
  const pool = leafPool();
  if (pool) {
    const parts: (Uint8Array | string)[] = [];
    let run: Uint8Array[] = [];
    for await (const c of reader.chunks()) {
      if (c.kind === "inline") {
        run.push(c.data);
        continue;
      }
      if (run.length) parts.push(concatBytes(run));
      run = [];
      parts.push(repo.objects.pathOf(c.id));
    }
    if (run.length) parts.push(concatBytes(run));
    return `${alg}:${Buffer.from(await pool.hashStream(alg, parts)).toString("hex")}`;
  }
  const h = createHash(alg);
  for await (const c of reassemble(reader, (id) => repo.openObjectStream(id))) h.update(c);
  return `${alg}:${h.digest("hex")}`;
}

/** The stream id a well-known stream name promises (`oci-layer-sha256:…` etc.). */
function digestOfName(name: string): string | undefined {
  const m = /^oci-(?:layer|config|manifest)-((?:sha256|sha512):[0-9a-f]+)$/.exec(name);
  return m ? m[1] : undefined;
}

/** Checks a stream name and opens the source (the caller closes it). */
async function openSource(repo: Repository, url: string, name: string, opts: FetchOptions) {
  checkLinkName(name, "stream");
  if (name.split("/").some((c) => c.startsWith("."))) {
    throw new InvalidArgumentError(`invalid stream name ${name}`);
  }
  await repo.ensureWritable();
  return await HttpRepositorySource.open(url, opts);
}

/**
 * The stream itself: a server that follows symlinks sends the object's bytes; one that marks
 * symlinks (text/x-symlink-target) sends the link target, naming the object.
 */
async function fetchTop(f: Fetcher, name: string): Promise<{ id: ObjectId; bytes: Uint8Array }> {
  const { repo, src } = f;
  const top = await src.getBytes(`streams/${name}`, MAX_STREAM_BYTES);
  if (!top) throw new NotFoundError(`stream ${name} not found at ${src.urlOf(`streams/${name}`)}`);
  if (/^text\/x-symlink-target\b/.test(top.contentType ?? "")) {
    const target = new TextDecoder().decode(top.data).trim();
    const id = objectIdOfTarget(target, repo.alg);
    if (!id) throw new FormatError(`stream ${name}: link target ${JSON.stringify(target)} names no object`);
    return { id, bytes: await f.streamBytes(id) };
  }
  const id = fsverityDigest(top.data, repo.alg);
  if (!(await repo.hasObject(id))) {
    await repo.ensureObject(top.data);
    f.stats.streamsFetched++;
    f.stats.bytesFetched += top.data.length;
  }
  return { id, bytes: top.data };
}

async function parseStream(repo: Repository, id: ObjectId, bytes: Uint8Array): Promise<SplitStreamReader> {
  if (!equalBytes(bytes.subarray(0, MAGIC.length), MAGIC)) {
    throw new FormatError(`object ${id.toId()} is referenced as a stream but is not a splitstream`);
  }
  try {
    return await SplitStreamReader.fromBytes(bytes, { alg: repo.alg });
  } catch (e) {
    throw e instanceof CfsError ? e.within(`stream object ${id.toId()}`) : e;
  }
}

interface StreamGraph {
  streams: Map<string, StreamNode>;
  objects: Map<string, ObjectId>;
  images: Map<string, ObjectId>;
}

/** Walks the stream graph from `root` (headers only): every stream, object and EROFS image. */
async function walkStreams(f: Fetcher, root: StreamNode): Promise<StreamGraph> {
  const g: StreamGraph = { streams: new Map([[root.id.hex(), root]]), objects: new Map(), images: new Map() };
  const todo: StreamNode[] = [root];
  const child = async (sid: ObjectId): Promise<StreamNode> => {
    let c = g.streams.get(sid.hex());
    if (!c) {
      c = { id: sid, reader: await parseStream(f.repo, sid, await f.streamBytes(sid)), keys: new Set() };
      g.streams.set(sid.hex(), c);
      todo.push(c);
    }
    return c;
  };
  while (todo.length > 0) {
    const node = todo.pop()!;
    const named = new Set<string>();
    for (const [key, sid] of node.reader.namedRefs) {
      named.add(sid.hex());
      if (isImageKey(key)) {
        g.images.set(sid.hex(), sid);
        g.objects.set(sid.hex(), sid);
        continue;
      }
      const c = await child(sid);
      c.keys.add(key);
      const promised = promisedDigest(key);
      if (promised === undefined) continue;
      if (c.expected !== undefined && c.expected !== promised) {
        throw new IntegrityError(
          `stream ${sid.toId()} is referenced with content digests ${c.expected} and ${promised}`,
        );
      }
      c.expected = promised;
    }
    // Stream refs without a name: further streams.
    for (const sid of node.reader.streamRefs) if (!named.has(sid.hex())) await child(sid);
    for (const oid of node.reader.objectRefs) if (!g.streams.has(oid.hex())) g.objects.set(oid.hex(), oid);
  }
  return g;
}

/**
 * The content-digest checks of the streams (docs/fetch.md step 4), each started as soon as every
 * object its content needs is in: the download goes stream by stream, so the first layers are
 * hashed (on the pool threads) while the next ones arrive, and little is left after the last byte.
 */
class ContentChecks {
  #waiting = new Map<string, number>();
  #byObject = new Map<string, StreamNode[]>();
  #started: Promise<void>[] = [];
  topDigest = "";

  constructor(
    private readonly f: Fetcher,
    private readonly g: StreamGraph,
    private readonly root: StreamNode,
    private readonly name: string,
  ) {
    for (const node of g.streams.values()) {
      const objects = node.reader.objectRefs.filter((o) => !g.streams.has(o.hex()));
      this.#waiting.set(node.id.hex(), objects.length);
      for (const o of objects) {
        const list = this.#byObject.get(o.hex());
        if (list) list.push(node);
        else this.#byObject.set(o.hex(), [node]);
      }
    }
  }

  /** The objects to download, stream by stream in content order (each once), then the rest. */
  order(list: ObjectId[]): ObjectId[] {
    const wanted = new Map(list.map((o) => [o.hex(), o]));
    const out: ObjectId[] = [];
    for (const node of this.g.streams.values()) {
      for (const o of node.reader.objectRefs) {
        const id = wanted.get(o.hex());
        if (id) {
          out.push(id);
          wanted.delete(o.hex());
        }
      }
    }
    return [...out, ...wanted.values()];
  }

  /** Starts the checks of the streams that need no object. */
  start(): void {
    for (const [hex, left] of [...this.#waiting]) if (left === 0) this.#check(this.g.streams.get(hex)!);
  }

  /** `id` is stored: the streams it completes are checked now. */
  readonly objectDone = (id: ObjectId): void => {
    for (const node of this.#byObject.get(id.hex()) ?? []) {
      const left = this.#waiting.get(node.id.hex());
      if (left === undefined) continue; // started already
      this.#waiting.set(node.id.hex(), left - 1);
      if (left === 1) this.#check(node);
    }
    this.#byObject.delete(id.hex());
  };

  #check(node: StreamNode): void {
    this.#waiting.delete(node.id.hex());
    const p = checkContentDigest(this.f, node, node === this.root, this.name).then((top) => {
      if (top !== undefined) this.topDigest = top;
    });
    p.catch(() => {}); // reported by all()
    this.#started.push(p);
  }

  /** Every check, started now for streams not started yet (objects fetched elsewhere); the top digest. */
  async all(): Promise<string> {
    for (const hex of [...this.#waiting.keys()]) this.#check(this.g.streams.get(hex)!);
    await Promise.all(this.#started);
    return this.topDigest;
  }
}

/**
 * Downloads the objects of the graph through one ObjectFetcher: opts.objectFetcher (the CLI's helper
 * processes), fetch threads (./fetch_threads.ts), or this thread (fetchObjects) when there are none;
 * `checks` hears of each object as it is stored.
 */
async function fetchAllObjects(
  f: Fetcher,
  g: StreamGraph,
  name: string,
  opts: FetchOptions,
  checks: ContentChecks,
): Promise<void> {
  const list = [...g.objects.values()].filter((o) => !g.streams.has(o.hex()));
  f.stats.objects = list.length;
  const pid = `objects:${name}`;
  f.reporter.report({ type: "started", id: pid, total: list.length, unit: "items" });
  if (list.length > 0) {
    const url = f.src.base.href;
    const fetcher: ObjectFetcher = opts.objectFetcher ?? threadedFetcher(f.repo, url, opts, list.length) ??
      // Progress is told here, under this fetch's id.
      ((ids, stored) => fetchObjects(f.repo, url, ids, { ...opts, reporter: undefined }, stored));
    const progress = new ThrottledProgress(f.reporter, pid, list.length);
    const reported = new DigestSet(list[0].bytes.length);
    checks.start();
    const r = await fetcher(checks.order(list), (id) => {
      reported.add(id.bytes);
      progress.add(1);
      checks.objectDone(id);
    });
    progress.flush();
    f.stats.objectsFetched += r.fetched;
    f.stats.objectsPresent += r.present;
    f.stats.bytesFetched += r.bytes;
    f.stats.processes = r.processes ?? 1;
    f.stats.threads = r.threads ?? 0;
    // Whoever stored them, every object must be here now (and was checked when stored): those the
    // fetcher did not report are looked up.
    for (const id of list) {
      if (!reported.has(id.bytes) && !(await f.repo.hasObject(id))) {
        throw new NotFoundError(`object ${id.toId()} missing after the download`);
      }
    }
  }
  f.reporter.report({ type: "done", id: pid, transferred: f.stats.objectsFetched });
  await f.repo.settle();
}

/**
 * Checks one stream's promised content digest; for the root returns its sha256 content digest.
 * Hashed on a pool thread where there is one (contentDigest).
 */
async function checkContentDigest(
  f: Fetcher,
  node: StreamNode,
  isRoot: boolean,
  name: string,
): Promise<string | undefined> {
  const alg = node.expected?.split(":")[0] ?? "sha256";
  const got = await contentDigest(f.repo, node.reader, alg);
  if (node.expected !== undefined && got !== node.expected) {
    throw new IntegrityError(
      `stream ${node.id.toId()} has content digest ${got}, expected ${node.expected}`,
      { context: [`fetching ${name} from ${f.src.base}`] },
    );
  }
  if (!isRoot) return undefined;
  return alg === "sha256" ? got : await contentDigest(f.repo, node.reader, "sha256");
}

/** Makes the links (after the sync): images, layer and config streams, and the name itself. */
async function publish(
  f: Fetcher,
  g: StreamGraph,
  root: StreamNode,
  name: string,
  topDigest: string,
): Promise<string[]> {
  const repo = f.repo;
  const linked: string[] = [];
  const link = async (rel: string, target: string) => {
    await linkRelative(repo.path, rel, target);
    linked.push(rel);
  };
  for (const [hex, id] of g.images) {
    await link(`images/${hex}`, `objects/${id.objectPath()}`);
    f.stats.images++;
  }
  for (const node of g.streams.values()) {
    if (node === root) continue;
    const ct = node.reader.contentType;
    for (const key of node.keys) {
      if ((ct === CONTENT_TYPE.OCI_LAYER || ct === CONTENT_TYPE.OCI_BLOB) && DIGEST_KEY.test(key)) {
        await link(`streams/${layerStreamId(key)}`, `objects/${node.id.objectPath()}`);
      } else if (
        ct === CONTENT_TYPE.OCI_CONFIG && key.startsWith("config:") && DIGEST_KEY.test(key.slice(7))
      ) {
        await link(`streams/${configStreamId(key.slice(7))}`, `objects/${node.id.objectPath()}`);
      }
    }
  }
  const topTarget = `objects/${root.id.objectPath()}`;
  if (name.startsWith("refs/") && root.reader.contentType === CONTENT_TYPE.OCI_MANIFEST) {
    // A ref to a manifest: link the content id the stream's type gives it (tags point at
    // manifests), and the ref at that; any other ref or name straight at the object.
    const cid = manifestStreamId(topDigest);
    await link(`streams/${cid}`, topTarget);
    await link(`streams/${name}`, `streams/${cid}`);
  } else {
    await link(`streams/${name}`, topTarget);
  }
  return linked;
}

/**
 * Fetches `streams/<name>` from the repository served at `url` into `repo`, with every stream and
 * object it references. Returns the stream's content digest and object id.
 */
export async function fetchStream(
  repo: Repository,
  url: string,
  name: string,
  opts: FetchOptions = {},
): Promise<FetchResult> {
  leafPool()?.warm(); // starts the hashing threads while the first requests are on the way
  const src = await openSource(repo, url, name, opts);
  try {
    const reporter = opts.reporter ?? nullReporter;
    const f = new Fetcher(repo, src, reporter);
    const top = await fetchTop(f, name);
    const root: StreamNode = {
      id: top.id,
      reader: await parseStream(repo, top.id, top.bytes),
      keys: new Set(),
    };
    root.expected = digestOfName(name);
    reporter.report({ type: "started", id: `streams:${name}`, unit: "items" });
    const graph = await walkStreams(f, root);
    f.stats.streams = graph.streams.size;
    reporter.report({ type: "done", id: `streams:${name}`, transferred: f.stats.streamsFetched });
    const checks = new ContentChecks(f, graph, root, name);
    await fetchAllObjects(f, graph, name, opts, checks);
    // The sync runs on a thread while the last streams are hashed; the links wait for both.
    const synced = repo.syncAsync();
    synced.catch(() => {}); // awaited below
    const topDigest = await checks.all().catch(async (e) => {
      await synced.catch(() => {});
      throw e;
    });
    await synced;
    const linked = await publish(f, graph, root, name, topDigest);
    return { contentDigest: topDigest, verity: top.id, linked, stats: f.stats };
  } finally {
    src.close();
  }
}

/**
 * Downloads the given objects (each checked against its id, present ones skipped) from the
 * repository served at `url`, without touching streams or links: the share of one helper process
 * of a fetch (see FetchOptions.objectFetcher).
 */
export function fetchObjects(
  repo: Repository,
  url: string,
  ids: ObjectId[],
  opts: FetchOptions = {},
  stored?: (id: ObjectId) => void,
): Promise<ObjectFetchStats> {
  let i = 0;
  return fetchObjectsFrom(repo, url, () => Promise.resolve(i < ids.length ? ids[i++] : null), opts, stored);
}

/**
 * fetchObjects over ids that arrive while it runs (a fetch thread's share): `next()` gives the next id,
 * or null once there are no more; `stored(id)` is called as each one is in the store.
 */
export async function fetchObjectsFrom(
  repo: Repository,
  url: string,
  next: () => Promise<ObjectId | null>,
  opts: FetchOptions = {},
  stored?: (id: ObjectId) => void,
): Promise<ObjectFetchStats> {
  await repo.ensureWritable();
  const reporter = opts.reporter ?? nullReporter;
  if (!opts.hashInline) leafPool()?.warm();
  const src = await HttpRepositorySource.open(url, opts);
  try {
    const f = new Fetcher(repo, src, reporter, opts.hashInline);
    const progress = new ThrottledProgress(reporter, "objects", 0);
    let failed: { error: unknown } | undefined;
    const runner = async () => {
      for (let id = await next(); id !== null && !failed; id = failed ? null : await next()) {
        try {
          await f.object(id, progress, stored);
        } catch (e) {
          failed ??= { error: e };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, runner));
    await f.settle().catch((e) => {
      failed ??= { error: e };
    });
    if (failed) throw failed.error;
    await repo.settle();
    return { fetched: f.stats.objectsFetched, present: f.stats.objectsPresent, bytes: f.stats.bytesFetched };
  } finally {
    src.close();
  }
}
