// Slow and stalled varlink readers (docs/varlink.md#slow-readers): replies are written without
// blocking, so a client that sends calls and then reads nothing (without closing its socket) delays
// only itself; after the stall timeout the server shuts its connection down and aborts its running
// call, as on a hang-up. Checked on the real server process (`cfsctl varlink --stall-timeout`) with
// raw clients, on the in-process server with a streaming call, and on FdStream.sendAll itself.
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { DENO, MAIN, tempDir } from "./helpers/cli.ts";
import { FdStream } from "../lib/linux/fd_stream.ts";
import { closeFd, socketPair } from "../lib/linux/socket.ts";
import { Errno, SOCK_STREAM } from "../lib/linux/constants.ts";
import { KernelError } from "../lib/errors.ts";
import { serveUnix, type VarlinkCall, type VarlinkService } from "../lib/varlink/server.ts";

const RUN_FLAGS = MAIN.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"];
const S = "org.varlink.service";
const enc = new TextEncoder();
const dec = new TextDecoder();

// The stalled client: connects (with a small SO_RCVBUF — on AF_UNIX stream sockets it is the
// sender's buffer that fills, about 200 KiB here, but a small one does not hurt), sends N calls with
// large replies in one go, says "sent", and then never reads. It waits (poll, up to 30 s) for the
// server to hang up, then counts what had reached it, and prints that as JSON. The end of what it
// reads is "eof", or "reset" (ECONNRESET: the server closed with calls of this client unread).
const STALLED = String.raw`
import json, select, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(path)
call = {"method": "org.varlink.service.GetInterfaceDescription", "parameters": {"interface": "org.composefs.Oci"}}
s.sendall((json.dumps(call).encode() + b"\0") * n)
t0 = time.monotonic()
print("sent", flush=True)
p = select.poll()
p.register(s, select.POLLHUP | select.POLLERR)
ev = p.poll(30000)
hup = time.monotonic() - t0 if ev else None
got = 0
end = None
s.setblocking(False)
try:
    while True:
        b = s.recv(1 << 20)
        if not b:
            end = "eof"
            break
        got += len(b)
except BlockingIOError:
    end = "open"
except ConnectionResetError:
    end = "reset"  # the server closed with calls of ours still unread
print(json.dumps({"hup_after": hup, "received": got, "end": end}), flush=True)
`;

/** A well-behaved client on its own connection: one call, its one reply, within `timeoutMs`. */
async function callOnce(
  conn: Deno.UnixConn,
  method: string,
  parameters: Record<string, unknown> = {},
  timeoutMs = 10_000,
): Promise<Record<string, any>> {
  await conn.write(enc.encode(JSON.stringify({ method, parameters }) + "\0"));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(1 << 16);
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) throw new Error(`${method}: no reply within ${timeoutMs} ms`);
      chunks.push(buf.slice(0, n));
      if (buf[n - 1] === 0) break;
    }
  } finally {
    clearTimeout(timer);
  }
  const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let off = 0;
  for (const c of chunks) all.set(c, (off += c.length) - c.length);
  return JSON.parse(dec.decode(all.subarray(0, all.length - 1)));
}

async function fdCount(pid: number): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) n++;
  return n;
}

async function waitFor(what: string, cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts a stalled client; resolves once its calls are sent, with the promise of its report. */
async function stalledClient(script: string, sock: string, calls: number) {
  const child = new Deno.Command("python3", { args: [script, sock, String(calls)], stdout: "piped" }).spawn();
  const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const r = await out.read();
    if (r.done) throw new Error(`stalled client ended early: ${text}`);
    text += r.value;
  }
  assertEquals(text.split("\n")[0], "sent");
  const report = (async () => {
    for (let r = await out.read(); !r.done; r = await out.read()) text += r.value;
    assertEquals((await child.status).code, 0);
    return JSON.parse(text.split("\n")[1]) as { hup_after: number | null; received: number; end: string };
  })();
  return { report };
}

const STALL_S = 2;

Deno.test("varlink stall: clients that stop reading are dropped after --stall-timeout; others are answered meanwhile", async () => {
  await using dir = await tempDir("cfsctl-varlink-stall-");
  const sock = `${dir.path}/cfsctl.sock`;
  const script = `${dir.path}/stalled.py`;
  await Deno.writeTextFile(script, STALLED);
  const server = new Deno.Command(DENO, {
    args: [...RUN_FLAGS, MAIN, "varlink", "--stall-timeout", String(STALL_S), "--address", sock],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    await waitFor("the socket", () => Deno.lstat(sock).then(() => true, () => false), 20_000);
    const good = await Deno.connect({ transport: "unix", path: sock });
    const desc = await callOnce(good, `${S}.GetInterfaceDescription`, { interface: "org.composefs.Oci" });
    const replyBytes = JSON.stringify(desc).length + 1;
    const baseline = await fdCount(server.pid);

    // Three clients each ask for 1000 descriptions (about 10 MB of replies) and read none of them.
    const CALLS = 1000;
    const stalled = await Promise.all([1, 2, 3].map(() => stalledClient(script, sock, CALLS)));
    await new Promise((r) => setTimeout(r, 300)); // the server has filled their buffers by now
    const t0 = performance.now();
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      const r = i % 2
        ? await callOnce(good, `${S}.GetInfo`)
        : await callOnce(good, `${S}.GetInterfaceDescription`, { interface: "org.composefs.Repository" });
      assert(r.parameters && !r.error, JSON.stringify(r));
      times.push(performance.now() - t);
    }
    const total = performance.now() - t0;
    // …while the stalled connections are still open (their descriptors are still there).
    const during = await fdCount(server.pid);
    assertEquals(
      during,
      baseline + 3,
      "the three stalled connections are open while the good client is served",
    );
    assert(total < 1500, `20 calls took ${total.toFixed(0)} ms beside the stalled clients`);
    console.log(
      `good client beside 3 stalled ones: 20 calls in ${total.toFixed(0)} ms, slowest ${
        Math.max(...times).toFixed(1)
      } ms`,
    );

    // The server hangs up on each stalled client about STALL_S seconds after it stopped making room.
    for (const { report } of stalled) {
      const r = await report;
      console.log(`stalled client: ${JSON.stringify(r)}`);
      assert(r.hup_after !== null, "the server never closed the stalled connection");
      assert(r.hup_after >= STALL_S * 0.75 && r.hup_after < STALL_S + 6, `hung up after ${r.hup_after} s`);
      assert(r.received > 0 && r.received < CALLS * replyBytes, `received ${r.received} bytes`);
      assert(r.end === "eof" || r.end === "reset", `the connection is still open: ${r.end}`);
    }
    // Their descriptors are gone (the count is back where it was), and the server still answers.
    await waitFor("the fd count to come back", async () => (await fdCount(server.pid)) === baseline, 5_000);
    assertEquals((await callOnce(good, `${S}.GetInfo`)).parameters.product, "cfsctl");
    const fresh = await Deno.connect({ transport: "unix", path: sock });
    assertEquals((await callOnce(fresh, `${S}.GetInfo`)).parameters.product, "cfsctl");
    fresh.close();
    good.close();
  } finally {
    server.kill("SIGTERM");
    const st = await server.output();
    assert(st.code === 0 || st.signal === "SIGTERM", `server exit ${st.code}: ${dec.decode(st.stderr)}`);
  }
});

Deno.test("varlink stall: --stall-timeout and CFSCTL_VARLINK_STALL_TIMEOUT take seconds", async () => {
  for (
    const [args, env, re] of [
      [["--stall-timeout", "0"], {}, /--stall-timeout takes seconds/],
      [["--stall-timeout", "soon"], {}, /--stall-timeout takes seconds/],
      [[], { CFSCTL_VARLINK_STALL_TIMEOUT: "-1" }, /CFSCTL_VARLINK_STALL_TIMEOUT takes seconds/],
    ] as [string[], Record<string, string>, RegExp][]
  ) {
    const o = await new Deno.Command(DENO, {
      args: [...RUN_FLAGS, MAIN, "varlink", ...args, "--address", "/nonexistent/x.sock"],
      env,
      stdout: "null",
      stderr: "piped",
    }).output();
    assertEquals(o.code, 2, dec.decode(o.stderr));
    assert(re.test(dec.decode(o.stderr)), dec.decode(o.stderr));
  }
});

/** A service whose one method streams 64 KiB progress frames until its call is aborted. */
function streamingService() {
  const seen = { aborted: null as null | number, reason: "", closed: 0, frames: 0 };
  const service: VarlinkService = {
    async handle(call: VarlinkCall, sink) {
      const blob = "x".repeat(64 << 10);
      while (!call.signal.aborted) {
        sink.progress({ blob });
        seen.frames++;
        await new Promise((r) => setTimeout(r, 2));
      }
      seen.aborted = performance.now();
      seen.reason = String((call.signal.reason as Error)?.message);
      throw call.signal.reason;
    },
    closed() {
      seen.closed++;
    },
  };
  return { service, seen };
}

Deno.test({
  name:
    "varlink stall: a streaming call whose client reads nothing is aborted as on a hang-up (in-process server)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using dir = await tempDir("cfsctl-varlink-stall-");
    const sock = `${dir.path}/s.sock`;
    const { service, seen } = streamingService();
    const server = serveUnix(sock, service, { stallTimeoutMs: 700 });
    try {
      const conn = await Deno.connect({ transport: "unix", path: sock });
      await conn.write(enc.encode(JSON.stringify({ method: "x.Stream", more: true }) + "\0"));
      const t0 = performance.now();
      // The event loop keeps running meanwhile: timers fire on time.
      let late = 0;
      for (let i = 0; i < 10; i++) {
        const t = performance.now();
        await new Promise((r) => setTimeout(r, 50));
        late = Math.max(late, performance.now() - t - 50);
      }
      assert(late < 200, `a timer was ${late.toFixed(0)} ms late`);
      await waitFor("the call to be aborted", () => Promise.resolve(seen.aborted !== null), 5_000);
      const after = seen.aborted! - t0;
      assert(after >= 600 && after < 3000, `aborted after ${after.toFixed(0)} ms`);
      assertEquals(seen.reason, "the varlink client stopped reading its replies");
      await waitFor("the connection to close", () => Promise.resolve(seen.closed === 1), 2_000);
      // The client finds a part of the frames, then the end of the stream.
      let got = 0;
      const buf = new Uint8Array(1 << 20);
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) got += n;
      assert(got > 0 && got < seen.frames * (64 << 10), `${got} bytes of ${seen.frames} frames`);
      conn.close();
    } finally {
      server.close();
      await server.done;
    }
  },
});

Deno.test("FdStream.sendAll: a slow reader gets everything; a stalled one times out (the passed descriptor went once); a gone one fails at once", async () => {
  // A slow reader (it reads 64 KiB every 20 ms) makes progress: 2 MiB arrive whole, no timeout.
  {
    const [a, b] = socketPair(SOCK_STREAM);
    const tx = new FdStream(a);
    const rx = new FdStream(b);
    const data = crypto.getRandomValues(new Uint8Array(64 << 10));
    const big = new Uint8Array(2 << 20);
    for (let o = 0; o < big.length; o += data.length) big.set(data, o);
    const sent = tx.sendAll(big, { stallTimeoutMs: 300 });
    const got: Uint8Array[] = [];
    let n = 0;
    while (n < big.length) {
      await new Promise((r) => setTimeout(r, 20));
      const m = await rx.recv(64 << 10);
      assert(m !== null);
      got.push(m.data);
      n += m.data.length;
    }
    await sent;
    const joined = new Uint8Array(n);
    let off = 0;
    for (const c of got) joined.set(c, (off += c.length) - c.length);
    assertEquals(joined, big);
    tx.close();
    rx.close();
  }
  // A peer that reads nothing: the send gives up after the stall timeout and shuts the socket down;
  // the descriptor passed with the first byte arrives once, with that byte.
  {
    const [a, b] = socketPair(SOCK_STREAM);
    const tx = new FdStream(a);
    const rx = new FdStream(b);
    const [p0, p1] = socketPair(SOCK_STREAM); // a descriptor to pass
    const t = performance.now();
    const e = await assertRejects(
      () => tx.sendAll(new Uint8Array(4 << 20), { fds: [p0], stallTimeoutMs: 400 }),
      KernelError,
    );
    const took = performance.now() - t;
    assertEquals((e as KernelError).errno, Errno.ETIMEDOUT);
    assert(took >= 380 && took < 2500, `gave up after ${took.toFixed(0)} ms`);
    let fds: number[] = [];
    let bytes = 0;
    for (let m = await rx.recv(); m !== null; m = await rx.recv()) {
      fds = fds.concat(m.fds);
      bytes += m.data.length;
    }
    assertEquals(fds.length, 1, "the descriptor came with the first byte");
    assert(bytes > 0 && bytes < 4 << 20, `${bytes} bytes before the end of the stream`);
    for (const f of [...fds, p0, p1]) closeFd(f);
    tx.close();
    rx.close();
  }
  // A peer that is gone: EPIPE, no SIGPIPE (this process lives on), no waiting for the timeout.
  {
    const [a, b] = socketPair(SOCK_STREAM);
    closeFd(b);
    const tx = new FdStream(a);
    const t = performance.now();
    const e = await assertRejects(
      () => tx.sendAll(new Uint8Array(1000), { stallTimeoutMs: 10_000 }),
      KernelError,
    );
    assert(([Errno.EPIPE, Errno.ECONNRESET] as number[]).includes((e as KernelError).errno), String(e));
    assert(performance.now() - t < 1000);
    tx.close();
  }
});
