// An ImageSource that stops when a signal aborts (a pull whose caller went away, docs/varlink.md): no
// request starts after the abort, and a blob being read is cancelled at once — its stream errors with
// the abort reason and the transport below is cancelled, so the download stops instead of finishing
// in the background.
import type { Platform } from "../platform.ts";
import type { SplitSink } from "../layer_split.ts";
import type { Repository } from "../../repository/repository.ts";
import type { Descriptor, ImageSource, ResolvedManifest } from "./source.ts";

/** `stream`, erroring with `signal.reason` (and cancelling `stream`) as soon as `signal` aborts. */
export function abortableStream(
  stream: ReadableStream<Uint8Array>,
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  const onAbort = () => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  const release = () => signal.removeEventListener("abort", onAbort);
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        release();
        throw signal.aborted ? signal.reason : e;
      }
      // A read the abort cut short ends "done": that is the abort, not the end of the blob.
      if (signal.aborted) throw signal.reason;
      if (r.done) {
        release();
        ctl.close();
      } else ctl.enqueue(r.value);
    },
    cancel(reason) {
      release();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** `source` with every call refused after `signal` aborted, and blobs cut off by the abort. */
export function abortableSource(source: ImageSource, signal: AbortSignal): ImageSource {
  return {
    description: source.description,
    async getManifest(platform: Platform): Promise<ResolvedManifest> {
      signal.throwIfAborted();
      const m = await source.getManifest(platform);
      signal.throwIfAborted();
      return m;
    },
    async getBlob(desc: Descriptor): Promise<ReadableStream<Uint8Array>> {
      signal.throwIfAborted();
      const s = await source.getBlob(desc);
      if (signal.aborted) {
        await s.cancel(signal.reason).catch(() => {});
        throw signal.reason;
      }
      return abortableStream(s, signal);
    },
    splitLayer: source.splitLayer &&
      ((desc: Descriptor, diffId: string, repo: Repository, sink: SplitSink, onProgress) => {
        signal.throwIfAborted();
        // The in-place import reports progress file by file: the abort ends it at the next file.
        return source.splitLayer!(desc, diffId, repo, sink, (done, total) => {
          signal.throwIfAborted();
          onProgress(done, total);
        });
      }),
    close: () => source.close(),
  };
}
