// The objects of a `cfsctl fetch` downloaded by threads (docs/fetch.md#threads). Receiving a body,
// writing it and hashing it is CPU work that the one main thread could not keep up with (it topped out
// near 150 MB/s over loopback); each fetch thread opens the repository itself and runs the same
// fetchObjectsFrom() loop on the ids this side hands it, a few at a time, so a thread that got small
// objects takes more (no fixed shards). The main thread only schedules and runs the stream checks.
//
// The thread is a module worker (Web Worker) running ./fetch_thread.ts; from the single-file bundle
// (where there is no such file) it runs the bundle itself, and main.ts starts the thread's part when it
// finds itself in a worker of that name (FETCH_THREAD_NAME).
import { CfsError, errorFromNamed, InternalError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { addShutdownHook } from "../util/shutdown.ts";
import type { FetchOptions, ObjectFetcher, ObjectFetchStats } from "./fetch.ts";
import type { HttpSourceOptions } from "./http_source.ts";
import {
  FETCH_THREAD_NAME,
  type FetchThreadReply,
  type FetchThreadRequest,
} from "./fetch_thread_protocol.ts";

/** Below this many objects this thread does it all (a thread costs ~50 ms to start). */
const MIN_THREADED = 32;
/** Ids a thread holds at most beyond its downloads in flight (enough to keep its slots busy). */
const AHEAD = 4;

/** The module a fetch thread runs: its own file in a checkout (or a compiled binary), else the bundle. */
function threadModule(): URL {
  return import.meta.url.endsWith(".ts")
    ? new URL("./fetch_thread.ts", import.meta.url)
    : new URL(import.meta.url);
}

/** How many threads `opts` asks for: `threads`, else the number of cores (at most 4). */
function threadCount(opts: FetchOptions): number {
  if (opts.threads !== undefined) return opts.threads;
  return Math.min(4, Math.max(1, navigator.hardwareConcurrency || 1));
}

/** The HTTP options a thread needs (plain data: functions and the reporter stay here). */
function httpOptions(opts: FetchOptions): HttpSourceOptions {
  const { certDir, tlsVerify, creds, retries, retryDelayMs, certsDRoots, headers, timeoutMs } = opts;
  return { certDir, tlsVerify, creds, retries, retryDelayMs, certsDRoots, headers, timeoutMs };
}

/**
 * An ObjectFetcher that shares `count` objects out to fetch threads, or null when this thread should do
 * it (threads: 0, few objects, or no Worker).
 */
export function threadedFetcher(
  repo: Repository,
  url: string,
  opts: FetchOptions,
  count: number,
): ObjectFetcher | null {
  const threads = threadCount(opts);
  if (threads < 1 || count < MIN_THREADED || typeof Worker !== "function") return null;
  return (ids, stored) =>
    runThreads(repo, url, opts, Math.min(threads, Math.ceil(ids.length / MIN_THREADED)), ids, stored);
}

interface Thread {
  worker: Worker;
  /** Ids handed to it and not yet stored. */
  held: number;
  done: boolean;
}

// long: one closure over the shared schedule: starting the threads, the reply dispatch (stored → the
// next id, done, error), the stop on the first failure, and the shutdown hook.
function runThreads(
  repo: Repository,
  url: string,
  opts: FetchOptions,
  n: number,
  ids: ObjectId[],
  stored?: (id: ObjectId) => void,
): Promise<ObjectFetchStats> {
  const jobs = Math.max(1, Math.ceil((opts.concurrency ?? 4) / n));
  const byHex = new Map(ids.map((id) => [id.hex(), id]));
  const sum: ObjectFetchStats = { fetched: 0, present: 0, bytes: 0, processes: 1, threads: n };
  let next = 0;
  let failed: { error: unknown } | undefined;
  let running = n;
  const threads: Thread[] = [];
  return new Promise<ObjectFetchStats>((resolve, reject) => {
    const finish = () => {
      for (const t of threads) t.worker.terminate();
      removeHook();
      if (failed) reject(failed.error);
      else resolve(sum);
    };
    const removeHook = addShutdownHook(() => {
      for (const t of threads) t.worker.terminate();
    });
    const post = (t: Thread, m: FetchThreadRequest) => t.worker.postMessage(m);
    /** Tops the thread up to its window; tells it "end" once the list is out. */
    const feed = (t: Thread) => {
      if (failed) return;
      const hexes: string[] = [];
      while (t.held < jobs + AHEAD && next < ids.length) {
        hexes.push(ids[next++].hex());
        t.held++;
      }
      if (hexes.length) post(t, { t: "ids", hexes });
      if (next >= ids.length) post(t, { t: "end" });
    };
    const fail = (e: unknown) => {
      if (!failed) {
        failed = { error: e };
        for (const t of threads) if (!t.done) post(t, { t: "stop" });
      }
    };
    const onReply = (t: Thread, m: FetchThreadReply) => {
      if (m.t === "stored") {
        t.held--;
        const id = byHex.get(m.hex);
        if (!id) return fail(new InternalError(`fetch thread stored ${m.hex}, which it was not given`));
        stored?.(id);
        feed(t);
      } else if (m.t === "done" || m.t === "error") {
        t.done = true;
        if (m.t === "done") {
          sum.fetched += m.stats.fetched;
          sum.present += m.stats.present;
          sum.bytes += m.stats.bytes;
        } else fail(errorFromNamed(m.error));
        if (--running === 0) finish();
      }
    };
    for (let i = 0; i < n; i++) {
      let worker: Worker;
      try {
        worker = new Worker(threadModule(), { type: "module", name: FETCH_THREAD_NAME });
      } catch (e) {
        fail(new CfsError(`cannot start a fetch thread: ${e instanceof Error ? e.message : e}`));
        running -= n - i;
        if (running === 0) finish();
        return;
      }
      const t: Thread = { worker, held: 0, done: false };
      threads.push(t);
      worker.onmessage = (e: MessageEvent<FetchThreadReply>) => onReply(t, e.data);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        if (t.done) return;
        onReply(t, { t: "error", error: { name: "InternalError", message: `fetch thread: ${e.message}` } });
      };
      post(t, {
        t: "open",
        path: repo.path,
        open: repo.reopenOptions(),
        url,
        http: httpOptions(opts),
        jobs,
      });
      feed(t);
    }
  });
}
