// A blob body that survives connection drops: when the stream breaks (or ends short of the expected
// size) it is re-requested from the byte already received (HTTP Range), and the bytes a server that
// ignores Range sends again are skipped. The consumer sees one uninterrupted stream. A stalled body
// (StallError from the transport's stallGuard) is a dropped connection like any other. The expected
// size (the descriptor's) decides when the blob is complete: once it has arrived the connection is let
// go, whatever Content-Length promised.
import { CfsError, TransportError } from "../../../errors.ts";
import { backoffDelay, type RetryPolicy, sleep } from "./retry_policy.ts";

export interface OpenedBody {
  body: ReadableStream<Uint8Array>;
  /** Offset of the first byte of `body` in the blob (0 when the server ignored Range). */
  offset: number;
}

/** Progress after which a connection counts as healthy again (the failure count restarts). */
const HEALTHY_BYTES = 1 << 20;
/**
 * `open(offset)` performs the (re)request; errors it throws are final (it retries on its own).
 * `expectedSize`, when known, lets a short body be recognised as a cut.
 */
export function resumableBody(
  open: (offset: number) => Promise<OpenedBody>,
  expectedSize: number | undefined,
  policy: RetryPolicy,
  what: string,
): ReadableStream<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let received = 0;
  let skip = 0;
  let failures = 0;
  let sinceFailure = 0;
  let cancelled = false; // by the consumer: the read the cancel cut short is no dropped connection
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      for (;;) {
        if (cancelled) return;
        if (!reader) {
          const opened = await open(received);
          if (cancelled || opened.offset > received) {
            await opened.body.cancel().catch(() => {});
            if (cancelled) return;
            throw new TransportError(`${what}: server resumed at byte ${opened.offset}, wanted ${received}`);
          }
          reader = opened.body.getReader();
          skip = received - opened.offset;
        }
        let problem: string;
        try {
          const { done, value } = await reader.read();
          if (cancelled) return;
          if (!done) {
            let chunk = value;
            if (skip > 0) {
              const n = Math.min(skip, chunk.length);
              skip -= n;
              chunk = chunk.subarray(n);
              if (chunk.length === 0) continue;
            }
            if (expectedSize !== undefined && received + chunk.length >= expectedSize) {
              // Complete: bytes past the size are not the blob's (the digest check sees exactly `size`).
              chunk = chunk.subarray(0, expectedSize - received);
              received += chunk.length;
              if (chunk.length > 0) ctl.enqueue(chunk);
              reader.cancel().catch(() => {});
              reader = undefined;
              ctl.close();
              return;
            }
            received += chunk.length;
            sinceFailure += chunk.length;
            if (sinceFailure >= HEALTHY_BYTES) failures = 0;
            ctl.enqueue(chunk);
            return;
          }
          if (expectedSize === undefined || received >= expectedSize) {
            ctl.close();
            return;
          }
          problem = `connection ended after ${received} of ${expectedSize} bytes`;
        } catch (e) {
          if (cancelled) return;
          if (e instanceof CfsError) throw e;
          problem = `connection lost after ${received} bytes: ${e instanceof Error ? e.message : String(e)}`;
        }
        reader?.cancel().catch(() => {});
        reader = undefined;
        failures++;
        sinceFailure = 0;
        if (failures >= policy.tries) {
          throw new TransportError(`${what}: ${problem} (gave up after ${failures} tries)`);
        }
        await sleep(backoffDelay(policy, failures));
      }
    },
    cancel(reason) {
      cancelled = true;
      return reader?.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
