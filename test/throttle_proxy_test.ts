// The throttling proxy of the shaped-link benchmark (scripts/bench_shaped_pull.ts): its rate, shared
// by all connections of a direction, and its one-way delay, measured through a loopback echo server.
import { assert, assertEquals } from "./helpers/assert.ts";
import { startThrottleProxy } from "./helpers/throttle_proxy.ts";

/** An echo server on 127.0.0.1: every byte read is written back. */
function startEcho(): { port: number; close(): Promise<void> } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const loop = (async () => {
    try {
      for await (const c of l) {
        conns.add(c);
        (async () => {
          const buf = new Uint8Array(64 * 1024);
          try {
            for (;;) {
              const n = await c.read(buf);
              if (n === null) break;
              let o = 0;
              while (o < n) o += await c.write(buf.subarray(o, n));
            }
            await c.closeWrite();
          } catch { /* peer gone */ }
        })();
      }
    } catch { /* closed */ }
  })();
  return {
    port: (l.addr as Deno.NetAddr).port,
    close: async () => {
      l.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
    },
  };
}

/** Sends `bytes` through a new connection to `port` and reads them all back; returns the bytes read. */
async function echoThrough(port: number, bytes: Uint8Array): Promise<Uint8Array> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const writing = (async () => {
    let o = 0;
    while (o < bytes.length) o += await c.write(bytes.subarray(o));
    await c.closeWrite();
  })();
  const out = new Uint8Array(bytes.length);
  let n = 0;
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const r = await c.read(buf);
    if (r === null) break;
    out.set(buf.subarray(0, r), n);
    n += r;
  }
  await writing;
  c.close();
  return out.subarray(0, n);
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

Deno.test("throttle proxy: 2 MB at 16 Mbit/s take about 1 s, bytes intact", async () => {
  const echo = startEcho();
  const proxy = startThrottleProxy(echo.port, { bitsPerSecond: 16e6, delayMs: 10 });
  try {
    const data = pattern(2_000_000, 7);
    const t0 = performance.now();
    const back = await echoThrough(proxy.port, data);
    const secs = (performance.now() - t0) / 1000;
    assertEquals(back.length, data.length);
    assert(back.every((v, i) => v === data[i]), "echoed bytes differ");
    // 2 MB each way at 2 MB/s; the directions run side by side, so ≈ 1.0 s + a few round trips.
    assert(secs >= 0.9, `2 MB through 16 Mbit/s took only ${secs.toFixed(3)} s`);
    assert(secs < 3, `2 MB through 16 Mbit/s took ${secs.toFixed(3)} s (rate far below the limit)`);
    assertEquals(proxy.bytesUp, 2_000_000);
    assertEquals(proxy.bytesDown, 2_000_000);
  } finally {
    await proxy.close();
    await echo.close();
  }
});

Deno.test("throttle proxy: connections share one rate per direction", async () => {
  const echo = startEcho();
  const proxy = startThrottleProxy(echo.port, { bitsPerSecond: 16e6, delayMs: 1 });
  try {
    const t0 = performance.now();
    const backs = await Promise.all([1, 2].map((s) => echoThrough(proxy.port, pattern(1_000_000, s))));
    const secs = (performance.now() - t0) / 1000;
    for (const [i, b] of backs.entries()) {
      assertEquals(b.length, 1_000_000);
      assertEquals(b[12345], pattern(1_000_000, i + 1)[12345]);
    }
    assert(secs >= 0.9, `2 × 1 MB in parallel through one 16 Mbit/s link took only ${secs.toFixed(3)} s`);
  } finally {
    await proxy.close();
    await echo.close();
  }
});

Deno.test("throttle proxy: a round trip costs twice the one-way delay, set-up one round trip", async () => {
  const echo = startEcho();
  const proxy = startThrottleProxy(echo.port, { bitsPerSecond: 200e6, delayMs: 10 });
  try {
    const t0 = performance.now();
    const c = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    const buf = new Uint8Array(16);
    const rtts: number[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        await c.write(new Uint8Array([i]));
        const n = await c.read(buf);
        rtts.push(performance.now() - t);
        assertEquals(n, 1);
        assertEquals(buf[0], i);
      }
    } finally {
      c.close();
    }
    const first = rtts[0];
    const rest = rtts.slice(1);
    // The first exchange also pays the simulated handshake (one more round trip).
    assert(first >= 39, `first exchange took ${first.toFixed(1)} ms (handshake + round trip ≥ 40 ms)`);
    for (const r of rest) assert(r >= 19.5, `round trip took only ${r.toFixed(1)} ms (≥ 20 ms)`);
    assert(Math.min(...rest) < 60, `round trips ${rest.map((r) => r.toFixed(1))} ms: delay far too long`);
    assert(performance.now() - t0 < 2000);
  } finally {
    await proxy.close();
    await echo.close();
  }
});
