// The thread's part of a threaded `cfsctl fetch` (docs/fetch.md#threads, ./fetch_threads.ts): opens
// the repository, then downloads, writes and hashes the object ids it is handed with the same
// fetchObjectsFrom() loop a single-threaded fetch runs, large objects hashed as they are written (the
// thread has the CPU for it; reading them back on the hashing pool would only add a copy).
import { toNamed } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { Repository } from "../repository/repository.ts";
import { fetchObjectsFrom } from "./fetch.ts";
import { type FetchThreadReply, type FetchThreadRequest, isFetchThread } from "./fetch_thread_protocol.ts";

interface WorkerScope {
  onmessage: ((e: MessageEvent<FetchThreadRequest>) => void) | null;
  postMessage(m: FetchThreadReply): void;
}

let started = false;

/** Serves the fetch thread protocol on this worker's message port (once). */
export function fetchThreadMain(): void {
  if (started) return;
  started = true;
  const scope = globalThis as unknown as WorkerScope;
  const post = (m: FetchThreadReply) => scope.postMessage(m);
  const queue: string[] = [];
  let ended = false;
  let stopped = false;
  let wake: (() => void) | undefined;
  let repo: Repository | undefined;
  const next = async (): Promise<ObjectId | null> => {
    for (;;) {
      if (stopped) return null;
      const hex = queue.shift();
      if (hex !== undefined) return repo!.parseObjectId(hex);
      if (ended) return null;
      await new Promise<void>((r) => {
        const prev = wake;
        wake = () => {
          prev?.();
          r();
        };
      });
    }
  };
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const run = async (m: Extract<FetchThreadRequest, { t: "open" }>) => {
    try {
      repo = await Repository.open(m.path, m.open);
      const stats = await fetchObjectsFrom(
        repo,
        m.url,
        next,
        { ...m.http, concurrency: m.jobs, hashInline: true },
        (id) => post({ t: "stored", hex: id.hex() }),
      );
      post({ t: "done", stats });
    } catch (e) {
      post({ t: "error", error: toNamed(e) });
    } finally {
      repo?.close();
    }
  };
  scope.onmessage = (e) => {
    const m = e.data;
    if (m.t === "open") run(m);
    else if (m.t === "ids") queue.push(...m.hexes);
    else if (m.t === "end") ended = true;
    else if (m.t === "stop") stopped = true;
    poke();
  };
}

// Loaded as the worker's own module (a source checkout): start serving.
if (isFetchThread()) fetchThreadMain();
