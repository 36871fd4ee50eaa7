// A throttling TCP proxy on loopback: it stands for a slow, distant link in front of a local server
// (this kernel has `tc tbf` but no `netem`, so there is no kernel way to add delay). Model of the
// link, per direction (client → server, server → client):
// - one shared rate for all connections: a chunk occupies the link for `bytes / rate` seconds, chunks
//   of every connection queue for it one after the other (a serialising link, not a per-connection
//   limit, so parallel downloads share the bandwidth as they would on one wire);
// - a fixed one-way delay added to every chunk after it left the link (propagation), so a request /
//   response exchange costs 2 × delay plus transmission time;
// - a new connection starts forwarding one round trip (2 × delay) after it was accepted, as a TCP
//   handshake would cost.
// Chunks are at most 64 KiB (one read); queued bytes per direction and connection are bounded, so a
// reader that stops reading stops the proxy reading the other side too.

export interface ThrottleOptions {
  /** Link rate per direction, bits per second. */
  bitsPerSecond: number;
  /** One-way delay, milliseconds (the round trip is twice this). */
  delayMs: number;
  /** Upstream host (default 127.0.0.1). */
  upstreamHost?: string;
}

export interface ThrottleProxy {
  /** `127.0.0.1:PORT` of the proxy. */
  host: string;
  port: number;
  /** Bytes forwarded so far, per direction. */
  bytesUp: number;
  bytesDown: number;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const sleepUntil = (t: number) =>
  new Promise<void>((r) => {
    const ms = t - performance.now();
    if (ms <= 0) r();
    else setTimeout(r, ms);
  });

/**
 * Timers fire late (≥ 1 ms); without slack every late wake-up would be lost link time and the rate
 * would fall well below the nominal one. A link idle for longer than this starts from "now" again
 * (at 200 Mbit/s, 5 ms is a burst of 125 KB, like a tbf bucket).
 */
const SLACK_MS = 5;

/** The shared link of one direction: the time (performance.now ms) at which it is next free. */
class Link {
  #freeAt = 0;
  constructor(private readonly bytesPerMs: number) {}
  /** Reserves the link for `n` bytes; returns when their last bit has been sent. */
  async send(n: number): Promise<number> {
    const start = Math.max(performance.now() - SLACK_MS, this.#freeAt);
    this.#freeAt = start + n / this.bytesPerMs;
    const done = this.#freeAt;
    await sleepUntil(done);
    return done;
  }
}

const MAX_QUEUED = 1 << 20;

/**
 * Pumps `from` → `to` through `link`: a reader that pays for each chunk on the link and queues it
 * with its arrival time (sent + delay), and a writer that delivers each chunk at its arrival time.
 */
async function pump(
  from: Deno.Conn,
  to: Deno.Conn,
  link: Link,
  delayMs: number,
  count: (n: number) => void,
): Promise<void> {
  const queue: { chunk: Uint8Array; due: number }[] = [];
  let queued = 0;
  let ended = false;
  // Who waits: the writer for a chunk, the reader for room in the queue.
  const waiting: { data?: () => void; room?: () => void } = {};
  const signal = () => {
    waiting.data?.();
    waiting.data = undefined;
  };
  const reader = (async () => {
    try {
      for (;;) {
        while (queued > MAX_QUEUED) await new Promise<void>((r) => (waiting.room = r));
        const buf = new Uint8Array(64 * 1024);
        const n = await from.read(buf);
        if (n === null) break;
        const readAt = performance.now();
        // The delay counts from the end of the transmission, never from before the bytes were read
        // (the link's slack can put the end of a small chunk's transmission slightly in the past).
        const sent = await link.send(n);
        queue.push({ chunk: buf.subarray(0, n), due: Math.max(sent, readAt) + delayMs });
        queued += n;
        signal();
      }
    } catch {
      // the peer went away: end this direction
    } finally {
      ended = true;
      signal();
    }
  })();
  try {
    for (;;) {
      if (queue.length === 0) {
        if (ended) break;
        await new Promise<void>((r) => (waiting.data = r));
        continue;
      }
      const { chunk, due } = queue.shift()!;
      await sleepUntil(due);
      let o = 0;
      while (o < chunk.length) o += await to.write(chunk.subarray(o));
      queued -= chunk.length;
      count(chunk.length);
      waiting.room?.();
      waiting.room = undefined;
    }
    await to.closeWrite().catch(() => {});
  } catch {
    // the receiver went away: stop reading the sender too
    try {
      from.close();
    } catch { /* closed */ }
  }
  await reader;
}

/** Starts the proxy on 127.0.0.1 (ephemeral port), forwarding to `upstreamPort`. */
export function startThrottleProxy(upstreamPort: number, opts: ThrottleOptions): ThrottleProxy {
  if (!(opts.bitsPerSecond > 0) || !(opts.delayMs >= 0)) {
    throw new RangeError(`throttle proxy: bad rate ${opts.bitsPerSecond} bit/s or delay ${opts.delayMs} ms`);
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const bytesPerMs = opts.bitsPerSecond / 8 / 1000;
  const up = new Link(bytesPerMs);
  const down = new Link(bytesPerMs);
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const proxy: ThrottleProxy = {
    host: `127.0.0.1:${port}`,
    port,
    bytesUp: 0,
    bytesDown: 0,
    close,
    [Symbol.asyncDispose]: close,
  };

  const serve = async (client: Deno.Conn) => {
    open.add(client);
    let upstream: Deno.Conn | undefined;
    try {
      const accepted = performance.now();
      upstream = await Deno.connect({ hostname: opts.upstreamHost ?? "127.0.0.1", port: upstreamPort });
      open.add(upstream);
      await sleepUntil(accepted + 2 * opts.delayMs);
      await Promise.all([
        pump(client, upstream, up, opts.delayMs, (n) => (proxy.bytesUp += n)),
        pump(upstream, client, down, opts.delayMs, (n) => (proxy.bytesDown += n)),
      ]);
    } catch {
      // upstream refused or a peer went away
    } finally {
      for (const c of [client, upstream]) {
        if (!c) continue;
        open.delete(c);
        try {
          c.close();
        } catch { /* closed */ }
      }
    }
  };

  const accepting = (async () => {
    try {
      for await (const c of listener) {
        const t = serve(c);
        tasks.add(t);
        t.finally(() => tasks.delete(t));
      }
    } catch {
      // listener closed
    }
  })();

  let closed = false;
  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    listener.close();
    for (const c of open) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await accepting;
    await Promise.all([...tasks]);
  }
  return proxy;
}
