// Messages between `cfsctl fetch` and its fetch threads (./fetch_threads.ts, ./fetch_thread.ts).
import type { NamedError } from "../errors.ts";
import type { OpenOptions } from "../repository/repository.ts";
import type { ObjectFetchStats } from "./fetch.ts";
import type { HttpSourceOptions } from "./http_source.ts";

/** The Worker name that marks a fetch thread (main.ts starts the thread's part under it). */
export const FETCH_THREAD_NAME = "cfsctl-fetch-thread";

/** True inside a Web Worker started as a fetch thread (import.meta.main is true there as well). */
export function isFetchThread(): boolean {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  return typeof g.WorkerGlobalScope === "function" && g instanceof g.WorkerGlobalScope &&
    g.name === FETCH_THREAD_NAME;
}

/** Main → thread. */
export type FetchThreadRequest =
  /** First message: the repository to open, the server, `jobs` downloads at once. */
  | { t: "open"; path: string; open: OpenOptions; url: string; http: HttpSourceOptions; jobs: number }
  /** More object ids (hex) to fetch. */
  | { t: "ids"; hexes: string[] }
  /** No more ids will come: finish those held and report. */
  | { t: "end" }
  /** Another thread failed: start nothing new, finish what runs, report. */
  | { t: "stop" };

/** Thread → main. */
export type FetchThreadReply =
  /** The object is in the store (downloaded and checked, or present already). */
  | { t: "stored"; hex: string }
  /** Every id given is stored. */
  | { t: "done"; stats: ObjectFetchStats }
  | { t: "error"; error: NamedError };
