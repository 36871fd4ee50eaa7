// The body of a thread that decodes gzip and zstd streams with the system's zlib / libzstd (every gzip
// member and every zstd frame; docs/oci.md#media-types), several streams ("jobs") at once (one isolate for
// all the layers a pull imports in parallel). It decodes ahead of
// its consumer into a few 1 MiB output buffers that travel to the calling thread and back (transferred, not
// copied), and it can hash what it hands out (a layer's diff_id), so neither the decoding nor that hash
// waits for the calling thread's turns: the two-process shape of `gzip -dc | tar -x`
// (docs/performance.md#where-the-time-goes-rootfs-pull). lib/linux/native_decompress.ts runs it on a
// node:worker_threads worker built from source text (so it also runs from the single-file bundle): the
// function may use only its arguments and globals (Deno FFI, node:crypto through `req`).
//
// Bytes after the last gzip member that do not start another member are ignored, as `gzip -dc` does;
// libzstd skips skippable frames itself.

export type DecodeCodec = "gzip" | "zstd";

/** Decoded chunk size (every chunk but a stream's last is full). */
export const DECODE_CHUNK = 1 << 20;

/** Calling thread → decoding thread. */
export type DecodeRequest =
  /** A new stream; `hash` (a node:crypto name) digests the output. `outputs` bounds the output buffers. */
  | { t: "start"; job: number; codec: DecodeCodec; hash: string | null; outputs: number }
  /** Compressed bytes `buf[0, len)` (transferred; it comes back in an "in-free" reply). */
  | { t: "in"; job: number; buf: ArrayBuffer; len: number }
  /** No more input for the job. */
  | { t: "end"; job: number }
  /** An output buffer of the job back for reuse (transferred). */
  | { t: "free"; job: number; buf: ArrayBuffer }
  /** Abandon the job (its consumer stopped or failed). */
  | { t: "stop"; job: number };

/** Decoding thread → calling thread. */
export type DecodeReply =
  /** Decoded bytes `buf[0, len)` (transferred; send it back with "free" once read). */
  | { t: "out"; job: number; buf: ArrayBuffer; len: number }
  /** An input buffer fully taken in (transferred back for reuse). */
  | { t: "in-free"; job: number; buf: ArrayBuffer }
  /** The stream ended cleanly: the digest of the output (hex, when asked for) and its size. */
  | { t: "done"; job: number; digest: string | null; size: number }
  /** The job failed; `format` = the data is bad (else the thread could not work: library, memory). */
  | { t: "error"; job: number; format: boolean; message: string };

/** Source text of the thread. */
export function decodeThreadSource(): string {
  return `const wt = require("node:worker_threads"); (${decodeThreadMain.toString()})(wt, require);`;
}

// long: the thread runs this function from its source text, so everything it uses must be inside
// it: the libraries, the two codecs' single steps (as small nested functions), each job's input
// buffer and pump (decoding while its input and output buffers allow), and the message dispatch.
// deno-lint-ignore no-explicit-any
function decodeThreadMain(wt: any, req: any): void {
  // deno-lint-ignore no-explicit-any
  const D = (globalThis as any).Deno;
  const OUT = 1 << 20;
  const IN = 1 << 20;
  const NEED_INPUT = -1;
  const Z_OK = 0, Z_STREAM_END = 1, Z_BUF_ERROR = -5, Z_STREAM_SIZE = 112; // zlib.h, 64-bit Linux
  const port = wt.parentPort;
  const open = (names: string[], symbols: object) => {
    for (const n of names) {
      try {
        return D.dlopen(n, symbols).symbols;
      } catch { /* next name */ }
    }
    return null;
  };
  const addr = (b: Uint8Array) => Number(D.UnsafePointer.value(D.UnsafePointer.of(b)));
  const bad = (message: string) => ({ format: true, message });
  // deno-lint-ignore no-explicit-any
  let zlib: any, zstd: any;

  /** Compressed bytes of one job, contiguous (a gzip member boundary may straddle input messages). */
  interface Input {
    bytes: Uint8Array;
    addr: number;
    pos: number;
    end: number;
    /** No bytes will come beyond those in the buffer. */
    eof: boolean;
  }
  /** One codec's state: step() decodes into out[outPos..] and returns the new position or NEED_INPUT. */
  interface Codec {
    step(out: Uint8Array, outAddr: number, outPos: number): number;
    end(): void;
    free(): void;
  }
  interface Job {
    id: number;
    codec: Codec;
    input: Input;
    queue: { buf: ArrayBuffer; bytes: Uint8Array; pos: number }[];
    // deno-lint-ignore no-explicit-any
    hash: any;
    /** Output buffers: at most `outputs` made, `free` back from the consumer, `cur` being filled. */
    outputs: number;
    made: number;
    free: ArrayBuffer[];
    cur: { buf: ArrayBuffer; bytes: Uint8Array; addr: number; pos: number } | null;
    /** The last input has arrived. */
    ended: boolean;
    size: number;
  }
  const jobs = new Map<number, Job>();
  /** Input buffers and output buffers of ended jobs, for the next ones. */
  const spareInputs: Uint8Array[] = [];
  const spareOutputs: ArrayBuffer[] = [];

  /** Moves queued input into the buffer; false when nothing could be added (more must arrive). */
  function fill(j: Job): boolean {
    const input = j.input;
    if (input.pos > 0) {
      input.bytes.copyWithin(0, input.pos, input.end);
      input.end -= input.pos;
      input.pos = 0;
    }
    let added = false;
    while (j.queue.length && input.end < IN) {
      const q = j.queue[0];
      const take = Math.min(q.bytes.length - q.pos, IN - input.end);
      input.bytes.set(q.bytes.subarray(q.pos, q.pos + take), input.end);
      input.end += take;
      q.pos += take;
      added = true;
      if (q.pos === q.bytes.length) {
        j.queue.shift();
        port.postMessage({ t: "in-free", job: j.id, buf: q.buf }, [q.buf]);
      }
    }
    return added;
  }

  function gzipCodec(input: Input): Codec {
    const strm = new Uint8Array(4096).subarray(0, Z_STREAM_SIZE); // off-heap: zlib keeps its address
    const sv = new DataView(strm.buffer);
    const r0 = zlib.inflateInit2_(strm, 31, zlib.zlibVersion(), Z_STREAM_SIZE); // 15 + 16: gzip only
    if (r0 !== Z_OK) throw { format: false, message: `inflateInit2 failed (${r0})` };
    let started = false, memberDone = false, trailing = false, full = false;
    return {
      step(out, outAddr, outPos) {
        if (trailing) {
          input.pos = input.end;
          return NEED_INPUT;
        }
        if (memberDone) {
          const avail = input.end - input.pos;
          if (avail === 0 || (avail < 2 && !input.eof)) return NEED_INPUT;
          const b = input.bytes;
          if (avail >= 2 && b[input.pos] === 0x1f && b[input.pos + 1] === 0x8b) {
            zlib.inflateReset(strm);
            memberDone = false;
          } else {
            trailing = true;
            input.pos = input.end;
            return NEED_INPUT;
          }
        }
        const availIn = input.end - input.pos;
        if (availIn === 0 && !full) return NEED_INPUT;
        const availOut = out.length - outPos;
        sv.setBigUint64(0, BigInt(input.addr + input.pos), true); // next_in
        sv.setUint32(8, availIn, true); // avail_in
        sv.setBigUint64(24, BigInt(outAddr + outPos), true); // next_out
        sv.setUint32(32, availOut, true); // avail_out
        started = true;
        const r = zlib.inflate(strm, 0);
        const leftIn = sv.getUint32(8, true);
        const leftOut = sv.getUint32(32, true);
        if (r !== Z_OK && r !== Z_STREAM_END && r !== Z_BUF_ERROR) {
          const msg = sv.getBigUint64(48, true);
          const text = msg === 0n
            ? `zlib error ${r}`
            : D.UnsafePointerView.getCString(D.UnsafePointer.create(msg));
          throw bad(`corrupt gzip layer data: ${text}`);
        }
        input.pos += availIn - leftIn;
        const newOut = outPos + (availOut - leftOut);
        if (r === Z_STREAM_END) memberDone = true;
        else if (newOut === outPos && leftIn === availIn) {
          // Z_BUF_ERROR: nothing could be done; only acceptable when the decoder wants more input.
          if (availIn > 0 && availOut > 0) throw bad("corrupt gzip layer data: no progress");
          full = false;
          return NEED_INPUT;
        }
        full = leftOut === 0;
        return newOut;
      },
      end() {
        if (!started) throw bad("truncated gzip layer data: no data");
        if (!memberDone && !trailing) throw bad("truncated gzip layer data: unexpected end of file");
      },
      free() {
        zlib.inflateEnd(strm);
      },
    };
  }

  function zstdCodec(input: Input): Codec {
    const dctx = zstd.ZSTD_createDCtx();
    if (dctx === null) throw { format: false, message: "ZSTD_createDCtx failed" };
    // ZSTD_inBuffer {src, size, pos} at 0, ZSTD_outBuffer {dst, size, pos} at 64.
    const struct = new Uint8Array(4096);
    const sv = new DataView(struct.buffer);
    const inBuf = struct.subarray(0, 24);
    const outBuf = struct.subarray(64, 88);
    let last = 0n, full = false;
    return {
      step(out, outAddr, outPos) {
        if (input.end === input.pos && !full) return NEED_INPUT;
        sv.setBigUint64(0, BigInt(input.addr), true);
        sv.setBigUint64(8, BigInt(input.end), true);
        sv.setBigUint64(16, BigInt(input.pos), true);
        sv.setBigUint64(64, BigInt(outAddr), true);
        sv.setBigUint64(72, BigInt(out.length), true);
        sv.setBigUint64(80, BigInt(outPos), true);
        const ret = BigInt(zstd.ZSTD_decompressStream(dctx, outBuf, inBuf));
        if (zstd.ZSTD_isError(ret)) {
          throw bad(
            `corrupt zstd layer data: ${D.UnsafePointerView.getCString(zstd.ZSTD_getErrorName(ret))}`,
          );
        }
        const inPos = Number(sv.getBigUint64(16, true));
        const newOut = Number(sv.getBigUint64(80, true));
        if (inPos === input.pos && newOut === outPos && !full) {
          throw bad("corrupt zstd layer data: the decoder made no progress");
        }
        input.pos = inPos;
        last = ret;
        full = newOut === out.length;
        return newOut;
      },
      end() {
        if (last !== 0n) throw bad("truncated zstd layer data: the last frame is incomplete");
      },
      free() {
        zstd.ZSTD_freeDCtx(dctx);
      },
    };
  }

  function takeOutput(j: Job): boolean {
    if (j.cur) return true;
    let buf = j.free.pop();
    if (!buf && j.made < j.outputs) {
      buf = spareOutputs.pop() ?? new ArrayBuffer(OUT);
      j.made++;
    }
    if (!buf) return false;
    const bytes = new Uint8Array(buf);
    j.cur = { buf, bytes, addr: addr(bytes), pos: 0 };
    return true;
  }

  function emit(j: Job): void {
    const c = j.cur!;
    j.cur = null;
    j.hash?.update(c.bytes.subarray(0, c.pos));
    j.size += c.pos;
    port.postMessage({ t: "out", job: j.id, buf: c.buf, len: c.pos }, [c.buf]);
  }

  /** Frees a job's decoder; its buffers become spares (those with the consumer stay there). */
  function endJob(j: Job): void {
    jobs.delete(j.id);
    j.codec.free();
    if (j.cur) j.free.push(j.cur.buf);
    spareOutputs.push(...j.free.splice(0, Math.max(0, 8 - spareOutputs.length)));
    for (const q of j.queue) port.postMessage({ t: "in-free", job: j.id, buf: q.buf }, [q.buf]);
    if (spareInputs.length < 2) spareInputs.push(j.input.bytes);
  }

  /** Decodes while the job has input and a free output buffer. */
  function pump(j: Job): void {
    const input = j.input;
    while (takeOutput(j)) {
      const c = j.cur!;
      const r = j.codec.step(c.bytes, c.addr, c.pos);
      if (r !== NEED_INPUT) {
        c.pos = r;
        if (c.pos === OUT) emit(j);
        continue;
      }
      if (fill(j)) continue;
      if (!j.ended) return; // more input is coming
      if (!input.eof) {
        input.eof = true; // a gzip member end may now be decided
        continue;
      }
      if (input.pos < input.end) continue;
      j.codec.end();
      if (c.pos > 0) emit(j);
      const digest = j.hash ? j.hash.digest("hex") : null;
      endJob(j);
      port.postMessage({ t: "done", job: j.id, digest, size: j.size });
      return;
    }
  }

  function loadCodec(codec: DecodeCodec): void {
    if (codec === "gzip") {
      zlib ??= open(["libz.so.1", "libz.so"], {
        zlibVersion: { parameters: [], result: "pointer" },
        inflateInit2_: { parameters: ["buffer", "i32", "pointer", "i32"], result: "i32" },
        inflate: { parameters: ["buffer", "i32"], result: "i32" },
        inflateReset: { parameters: ["buffer"], result: "i32" },
        inflateEnd: { parameters: ["buffer"], result: "i32" },
      });
      if (!zlib) throw { format: false, message: "zlib cannot be loaded in the decoding thread" };
    } else {
      zstd ??= open(["libzstd.so.1", "libzstd.so"], {
        ZSTD_createDCtx: { parameters: [], result: "pointer" },
        ZSTD_freeDCtx: { parameters: ["pointer"], result: "usize" },
        ZSTD_decompressStream: { parameters: ["pointer", "buffer", "buffer"], result: "usize" },
        ZSTD_isError: { parameters: ["usize"], result: "u32" },
        ZSTD_getErrorName: { parameters: ["usize"], result: "pointer" },
      });
      if (!zstd) throw { format: false, message: "libzstd cannot be loaded in the decoding thread" };
    }
  }

  function start(m: Extract<DecodeRequest, { t: "start" }>): void {
    loadCodec(m.codec);
    const bytes = spareInputs.pop() ?? new Uint8Array(IN); // off-heap (large): its address is stable
    const input: Input = { bytes, addr: addr(bytes), pos: 0, end: 0, eof: false };
    const codec = m.codec === "gzip" ? gzipCodec(input) : zstdCodec(input);
    const hash = m.hash ? req("node:crypto").createHash(m.hash) : null;
    jobs.set(m.job, {
      id: m.job,
      codec,
      input,
      queue: [],
      hash,
      outputs: m.outputs,
      made: 0,
      free: [],
      cur: null,
      ended: false,
      size: 0,
    });
  }

  port.on("message", (m: DecodeRequest) => {
    try {
      if (m.t === "start") return start(m);
      const j = jobs.get(m.job);
      if (!j) {
        // A stopped or failed job's buffers: input goes back, output becomes a spare.
        if (m.t === "in") port.postMessage({ t: "in-free", job: m.job, buf: m.buf }, [m.buf]);
        else if (m.t === "free" && spareOutputs.length < 8) spareOutputs.push(m.buf);
        return;
      }
      if (m.t === "stop") return endJob(j);
      if (m.t === "free") j.free.push(m.buf);
      else if (m.t === "in") j.queue.push({ buf: m.buf, bytes: new Uint8Array(m.buf, 0, m.len), pos: 0 });
      else if (m.t === "end") j.ended = true;
      pump(j);
    } catch (e) {
      // deno-lint-ignore no-explicit-any
      const err = e as any;
      const j = jobs.get(m.job);
      if (j) endJob(j);
      port.postMessage({
        t: "error",
        job: m.job,
        format: err?.format === true,
        message: String(err?.message ?? err),
      });
    }
  });
}
