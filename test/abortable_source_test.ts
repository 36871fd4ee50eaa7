// An aborted pull stops its downloads (lib/oci/transport/abortable_source.ts): a blob being read
// errors with the abort reason and the stream below is cancelled — and a resumable registry body
// that is cancelled does not take the cancel for a dropped connection and request the blob again.
import { assert, assertEquals } from "./helpers/assert.ts";
import { abortableSource, abortableStream } from "../lib/oci/transport/abortable_source.ts";
import { resumableBody } from "../lib/oci/transport/registry/resumable_body.ts";
import { retryPolicy } from "../lib/oci/transport/registry/retry_policy.ts";
import type { ImageSource } from "../lib/oci/transport/source.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A body that yields a 1000-byte chunk every 20 ms, `chunks` times; records being cancelled. */
function slowBody(chunks: number, state: { cancelled?: unknown }): ReadableStream<Uint8Array> {
  let n = 0;
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      await sleep(20);
      if (n++ >= chunks) ctl.close();
      else ctl.enqueue(new Uint8Array(1000).fill(n));
    },
    cancel(reason) {
      state.cancelled = reason ?? "cancelled";
    },
  }, { highWaterMark: 0 });
}

async function readError(r: ReadableStreamDefaultReader<Uint8Array>): Promise<unknown> {
  try {
    for (;;) if ((await r.read()).done) return undefined;
  } catch (e) {
    return e;
  }
}

Deno.test("abortableStream: passes bytes through, then an abort during a read errors it and cancels the source", async () => {
  const state: { cancelled?: unknown } = {};
  const ac = new AbortController();
  const r = abortableStream(slowBody(100, state), ac.signal).getReader();
  const first = await r.read();
  assertEquals(first.value?.length, 1000);
  const reason = new Error("the client hung up");
  setTimeout(() => ac.abort(reason), 5); // while the next read is pending
  assertEquals(await readError(r), reason);
  assertEquals(state.cancelled, reason, "the stream below was cancelled with the reason");

  // Not aborted: the whole stream, and its end.
  const all = abortableStream(slowBody(3, {}), new AbortController().signal);
  let total = 0;
  for await (const c of all) total += c.length;
  assertEquals(total, 3000);
});

Deno.test("resumableBody: a cancel during a read does not request the blob again", async () => {
  let opens = 0;
  const state: { cancelled?: unknown } = {};
  const body = resumableBody(
    (offset) => {
      opens++;
      return Promise.resolve({ body: slowBody(1000, state), offset });
    },
    1_000_000,
    retryPolicy(4, 10),
    "blob sha256:test",
  );
  const ac = new AbortController();
  const r = abortableStream(body, ac.signal).getReader();
  await r.read();
  setTimeout(() => ac.abort(new Error("gone")), 5);
  assert(await readError(r) instanceof Error);
  await sleep(300); // longer than every backoff of the 4 retries together
  assertEquals(opens, 1);
  assert(state.cancelled !== undefined, "the connection's body was cancelled");
});

Deno.test("abortableSource: nothing is requested after the abort", async () => {
  const calls: string[] = [];
  const inner: ImageSource = {
    description: "test",
    getManifest: () => {
      calls.push("manifest");
      return Promise.resolve({ bytes: new Uint8Array(), digest: "sha256:00", mediaType: "x" });
    },
    getBlob: () => {
      calls.push("blob");
      return Promise.resolve(slowBody(1, {}));
    },
    close: () => {
      calls.push("close");
      return Promise.resolve();
    },
  };
  const ac = new AbortController();
  const s = abortableSource(inner, ac.signal);
  assertEquals(s.splitLayer, undefined, "no in-place import where the source has none");
  await s.getManifest({ os: "linux", architecture: "amd64" });
  ac.abort(new Error("stop"));
  const refused = async (p: () => Promise<unknown>) => {
    try {
      await p();
      return false;
    } catch (e) {
      return (e as Error).message === "stop";
    }
  };
  assert(await refused(() => s.getManifest({ os: "linux", architecture: "amd64" })));
  assert(await refused(() => s.getBlob({ mediaType: "x", digest: "sha256:00", size: 1 })));
  await s.close();
  assertEquals(calls, ["manifest", "close"]);
});
