// Every byte read from a registry is bounded in time, and bodies kept whole only for a message or a
// token are bounded in size: a server that stops sending in the middle of any body (manifest, token,
// error page, blob) counts as a dropped connection after the stall timeout, and a 3 GB "404 page" is
// never read past the cap. See docs/registry-limits.md.

/** Default for `--timeout`: no response headers, or no body bytes, for this long ends the read. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** The most of an error response's body read for its message (the registry's `errors` list). */
export const MAX_ERROR_BODY = 256 * 1024;
/** The largest token server reply accepted (real ones are a few KiB). */
export const MAX_TOKEN_BODY = 256 * 1024;

/**
 * The server sent nothing for too long; callers treat it like a dropped connection (retryable). Not a
 * CfsError on purpose: the retry loops (registry_client.ts, resumable_body.ts) take a CfsError as a
 * verdict and anything else as a transient failure, and turn the last one into a TransportError.
 */
export class StallError extends Error {
  override name = "StallError";
}

export function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

export function kib(n: number): string {
  return `${Math.round(n / 1024)} KiB`;
}

/**
 * `body` with a stall timer on each read: a read that gets no data within `ms` cancels the source
 * (closing the connection) and fails with StallError. The timer runs only while someone is reading,
 * so a slow consumer (a busy disk) is never mistaken for a stalled server.
 */
export function stallGuard(body: ReadableStream<Uint8Array>, ms: number): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stall = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new StallError(`no data for ${seconds(ms)}`)), ms);
      });
      try {
        const r = await Promise.race([reader.read(), stall]);
        if (r.done) ctl.close();
        else ctl.enqueue(r.value);
      } catch (e) {
        reader.cancel(e).catch(() => {});
        throw e;
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** At most `limit` bytes of `body`; `over` when it had more (the rest is not read: the body is cancelled). */
export async function readCapped(
  body: ReadableStream<Uint8Array>,
  limit: number,
): Promise<{ bytes: Uint8Array; over: boolean }> {
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.length > limit) {
        reader.cancel().catch(() => {});
        parts.push(value.subarray(0, limit - n));
        n = limit;
        return { bytes: join(parts, n), over: true };
      }
      parts.push(value);
      n += value.length;
    }
  } finally {
    reader.releaseLock();
  }
  return { bytes: join(parts, n), over: false };
}

function join(parts: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A declared Content-Length above `limit` (so the body need not be read at all). */
export function declaredOver(headers: Headers, limit: number): boolean {
  const v = headers.get("content-length");
  return v !== null && /^\d+$/.test(v.trim()) && Number(v) > limit;
}
