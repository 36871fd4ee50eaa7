// Multi-frame zstd (lib/compress/zstd.ts) checked against the zstd CLI.
import { createHash } from "node:crypto";
import { FormatError } from "../lib/errors.ts";
import {
  listZstdFrames,
  ZSTD_EMPTY_FRAME,
  zstdCompress,
  zstdDecompressAll,
  zstdDecompressFrames,
  zstdDecompressStream,
  zstdMultiFrameDecompressor,
  ZstdStreamCompressor,
} from "../lib/compress/zstd.ts";
import { concatBytes, equalBytes, toHex } from "../lib/util/bytes.ts";
import { runTool } from "./helpers/process.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { hasLibzstd, libzstdStreamCompress, libzstdVersion } from "./helpers/libzstd_ffi.ts";

/** Runs `zstd ARGS` with `input` on stdin; returns stdout (throws on failure). */
const zstdCli = (args: string[], input: Uint8Array) => runTool("zstd", ["-q", ...args], { stdin: input });

/** Deterministic, moderately compressible bytes. */
function sample(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = (i & 0x3ff) < 200 ? 0x20 : 0x41 + (x % 20);
  }
  return out;
}

function skippable(magicLow: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x184d2a50 + magicLow, true);
  v.setUint32(4, payload.length, true);
  out.set(payload, 8);
  return out;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(p);
  return concatBytes(parts);
}

async function* pieces(data: Uint8Array, step: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < data.length; o += step) yield data.slice(o, o + step);
}

/** Frames made by the CLI with different header options, a skippable frame, and the plain data. */
async function cliMultiFrame() {
  const a = sample(300_000, 1);
  const b = crypto.getRandomValues(new Uint8Array(1000)); // incompressible: raw blocks
  const c = new TextEncoder().encode("tiny");
  const d = new Uint8Array(200_000); // zeros: RLE blocks
  const e = new Uint8Array(0);
  const parts = [
    { data: a, args: ["-c", "--content-size", "--stream-size=300000"], checksum: true },
    { data: b, args: ["-c", "--no-check", "--stream-size=1000"], checksum: false },
    { data: c, args: ["-c", "--no-check", "--no-content-size"], checksum: false },
    { data: d, args: ["-c", "-19", "--no-content-size"], checksum: true },
    { data: e, args: ["-c"], checksum: true },
  ];
  const frames: Uint8Array[] = [];
  for (const p of parts) frames.push(await zstdCli(p.args, p.data));
  const skip = skippable(7, new TextEncoder().encode("zstd:chunked metadata"));
  const emptySkip = skippable(0, new Uint8Array(0));
  const file = concatBytes([skip, frames[0], frames[1], emptySkip, frames[2], frames[3], skip, frames[4]]);
  return { parts, frames, file, expected: concatBytes([a, b, c, d, e]), skipLen: skip.length };
}

Deno.test("zstd: CLI multi-frame file with skippable frames decodes fully (all-at-once and streamed)", async () => {
  const { file, expected } = await cliMultiFrame();
  // The CLI agrees this is one valid stream.
  assert(equalBytes(await zstdCli(["-d", "-c"], file), expected));
  assert(equalBytes(zstdDecompressAll(file), expected));
  for (const step of [1, 2, 3, 5, 7, 64, 4096, 1 << 20]) {
    const out = await collect(zstdDecompressFrames(pieces(file, step)));
    assert(equalBytes(out, expected), `step ${step}`);
  }
});

Deno.test("zstd: frame walker finds CLI frame boundaries and header fields", async () => {
  const { parts, frames, file, skipLen } = await cliMultiFrame();
  const got = listZstdFrames(file);
  // Expected from the separate CLI outputs: lengths, offsets, skippable frames in between.
  const order: ({ skip: number } | { frame: number })[] = [
    { skip: skipLen },
    { frame: 0 },
    { frame: 1 },
    { skip: 8 },
    { frame: 2 },
    { frame: 3 },
    { skip: skipLen },
    { frame: 4 },
  ];
  assertEquals(got.length, order.length);
  let off = 0;
  order.forEach((o, i) => {
    assertEquals(got[i].offset, off, `frame ${i} offset`);
    if ("skip" in o) {
      assertEquals(got[i].skippable, true);
      assertEquals(got[i].length, o.skip);
    } else {
      assertEquals(got[i].skippable, false);
      assertEquals(got[i].length, frames[o.frame].length, `frame ${i} length`);
      assertEquals(got[i].checksum, parts[o.frame].checksum, `frame ${i} checksum flag`);
    }
    off += got[i].length;
  });
  // Content size recorded when the CLI knew it (--stream-size), absent with --no-content-size.
  assertEquals(got[1].contentSize, 300_000);
  assertEquals(got[2].contentSize, 1000);
  assertEquals(got[4].contentSize, undefined);
  assertEquals(got[5].contentSize, undefined);
});

Deno.test("zstd: every truncation of a multi-frame stream is a FormatError", async () => {
  const a = await zstdCli(["-c"], sample(5000, 2));
  const b = await zstdCli(["-c", "--no-check"], new TextEncoder().encode("second frame"));
  const file = concatBytes([a, skippable(1, Uint8Array.of(1, 2, 3)), b]);
  const frames = listZstdFrames(file);
  const boundaries = new Set(frames.map((f) => f.offset + f.length));
  for (let cut = 0; cut < file.length; cut++) {
    if (boundaries.has(cut)) continue;
    const part = file.slice(0, cut);
    const e = assertThrows(() => zstdDecompressAll(part), FormatError);
    assert(/truncated zstd stream|empty zstd stream/.test(e.message), e.message);
    await assertRejects(() => collect(zstdDecompressFrames(pieces(part, 97))), FormatError);
  }
  // Cut at a frame boundary: valid (fewer frames).
  assertEquals(zstdDecompressAll(file.slice(0, a.length)).length, 5000);
});

Deno.test("zstd: trailing garbage, reserved bits and corrupt block data are rejected with context", async () => {
  const a = await zstdCli(["-c"], sample(5000, 3));
  let e = assertThrows(() => zstdDecompressAll(concatBytes([a, Uint8Array.of(1, 2, 3, 4, 5)])), FormatError);
  assert(
    /not a zstd frame at offset \d+: magic 0x04030201 \(trailing data after 1 frame/.test(e.message),
    e.message,
  );
  e = assertThrows(() => zstdDecompressAll(new TextEncoder().encode("plain text")), FormatError);
  assert(/not a zstd frame at offset 0/.test(e.message), e.message);
  assertThrows(() => zstdDecompressAll(new Uint8Array(0)), /empty zstd stream/);

  // Reserved bit in the frame header descriptor (byte 4).
  const bad = a.slice();
  bad[4] |= 0x08;
  assertThrows(() => zstdDecompressAll(bad), /reserved bit/);

  // Flip bytes inside the compressed block: the decoder (or the checksum) must object.
  const corrupt = a.slice();
  for (let i = 20; i < 40; i++) corrupt[i] ^= 0x5a;
  assertThrows(() => zstdDecompressAll(corrupt), FormatError);
  await assertRejects(() => collect(zstdDecompressFrames(pieces(corrupt, 100))), FormatError);

  // A wrong checksum only.
  const badSum = a.slice();
  badSum[badSum.length - 1] ^= 0xff;
  assertThrows(() => zstdDecompressAll(badSum), FormatError);
});

Deno.test("zstd: compressors produce standard single frames; empty input = libzstd's empty frame", async () => {
  const data = sample(3 << 20, 4);
  assert(equalBytes(await zstdCli(["-d", "-c"], zstdCompress(data)), data));

  // Streaming: written in 4 KiB pieces (where Deno's encoder appends an empty extra frame).
  const z = new ZstdStreamCompressor();
  for (let o = 0; o < data.length; o += 4096) z.write(data.subarray(o, o + 4096));
  const streamed = await z.finish();
  const frames = listZstdFrames(streamed);
  assertEquals(frames.length, 1);
  assertEquals(frames[0].contentSize, undefined); // streaming: size not known up front
  assertEquals(frames[0].checksum, false);
  assert(equalBytes(await zstdCli(["-d", "-c"], streamed), data));
  // The output does not depend on how the input was split.
  const z2 = new ZstdStreamCompressor();
  z2.write(data);
  assert(equalBytes(await z2.finish(), streamed));

  // Empty: what libzstd's streaming API (and so the zstd CLI reading a pipe) writes.
  const cliEmpty = await zstdCli(["-c", "--no-check"], new Uint8Array(0));
  assert(equalBytes(ZSTD_EMPTY_FRAME, cliEmpty));
  assert(equalBytes(await new ZstdStreamCompressor().finish(), cliEmpty));
  assert(equalBytes(zstdCompress(new Uint8Array(0)), cliEmpty));
  assertEquals(zstdDecompressAll(cliEmpty).length, 0);
});

Deno.test("zstd: many small frames (zstd:chunked-like) through the stream APIs", async () => {
  const chunks: Uint8Array[] = [];
  const framed: Uint8Array[] = [];
  for (let i = 0; i < 2000; i++) {
    const c = sample(1 + (i * 37) % 5000, i + 10);
    chunks.push(c);
    framed.push(zstdCompress(c));
    if (i % 100 === 0) framed.push(skippable(i % 16, sample(i, i)));
  }
  const file = concatBytes(framed);
  const expected = concatBytes(chunks);
  assert(equalBytes(await zstdCli(["-d", "-c"], file), expected), "CLI decodes our frames");
  const viaStream = await collect(zstdDecompressStream(ReadableStream.from(pieces(file, 65536))));
  assert(equalBytes(viaStream, expected));
  const viaTransform = await collect(
    ReadableStream.from(pieces(file, 1000)).pipeThrough(zstdMultiFrameDecompressor()),
  );
  assert(equalBytes(viaTransform, expected));
});

Deno.test("zstd: 200 MB multi-frame stream decodes with bounded memory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zstd-test-" });
  try {
    // Two frames from the CLI: a 150 MB one without content size (from a pipe), a 50 MB one
    // with it, and a skippable frame between them.
    const script = `set -e
      seq 1 30000000 | head -c 150000000 | zstd -q -T1 -3 -c > ${dir}/a.zst
      seq 1 30000000 | head -c 150000000 > ${dir}/plain
      head -c 50000000 /dev/zero > ${dir}/zeros
      cat ${dir}/zeros >> ${dir}/plain
      zstd -q -T1 -c ${dir}/zeros > ${dir}/b.zst
      printf '\\123\\052\\115\\030\\004\\000\\000\\000abcd' > ${dir}/skip
      cat ${dir}/a.zst ${dir}/skip ${dir}/b.zst > ${dir}/all.zst
      sha256sum ${dir}/plain | cut -d' ' -f1 > ${dir}/plain.sha
      rm ${dir}/plain ${dir}/zeros`;
    const gen = await new Deno.Command("sh", { args: ["-c", script] }).output();
    assert(gen.success, new TextDecoder().decode(gen.stderr));
    const expectedSha = (await Deno.readTextFile(`${dir}/plain.sha`)).trim();
    const frames = listZstdFrames(await Deno.readFile(`${dir}/all.zst`));
    assertEquals(frames.map((f) => [f.skippable, f.contentSize]), [[false, undefined], [true, undefined], [
      false,
      50_000_000,
    ]]);

    const baseline = Deno.memoryUsage().rss;
    let peak = baseline;
    const file = await Deno.open(`${dir}/all.zst`);
    const h = createHash("sha256");
    let n = 0;
    const t0 = performance.now();
    for await (const out of zstdDecompressFrames(file.readable)) {
      h.update(out);
      n += out.length;
      if ((n & 0xfffff) < out.length) peak = Math.max(peak, Deno.memoryUsage().rss);
    }
    const ms = performance.now() - t0;
    assertEquals(n, 200_000_000);
    assertEquals(h.digest("hex"), expectedSha);
    const grew = (peak - baseline) / 1e6;
    console.log(`200 MB decoded in ${ms.toFixed(0)} ms, RSS grew ${grew.toFixed(1)} MB`);
    assert(grew < 100, `RSS grew by ${grew.toFixed(1)} MB while decoding`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Frame header bytes and the block list (last flag, type, size) of a single frame, parsed here. */
function frameShape(f: Uint8Array) {
  const d = f[4];
  const single = (d >> 5) & 1;
  const hdr = 5 + (single ? 0 : 1) + [0, 1, 2, 4][d & 3] + (d >> 6 === 0 ? single : [0, 2, 4, 8][d >> 6]);
  const blocks: string[] = [];
  let p = hdr;
  for (;;) {
    const h = f[p] | (f[p + 1] << 8) | (f[p + 2] << 16);
    const type = (h >> 1) & 3, size = h >>> 3, last = h & 1;
    blocks.push(`${last ? "last " : ""}${["raw", "rle", "compressed"][type]}${type === 0 ? " " + size : ""}`);
    p += 3 + (type === 1 ? 1 : type === 0 ? size : size);
    if (last) break;
  }
  if ((d >> 2) & 1) p += 4;
  assertEquals(p, f.length, "one frame");
  return { header: toHex(f.subarray(0, hdr)), blocks };
}

Deno.test({
  name: "zstd: streaming compressor drives libzstd like the Rust encoder (system libzstd via FFI)",
  ignore: !hasLibzstd,
  fn: async () => {
    const ours = async (b: Uint8Array) => {
      const z = new ZstdStreamCompressor();
      for (let o = 0; o < b.length; o += 5000) z.write(b.subarray(o, o + 5000));
      return await z.finish();
    };
    // Small inputs (splitstream records of configs/manifests, named-ref tables): identical bytes.
    // (Larger inputs compress differently across libzstd versions, so only their shape is compared.)
    for (const n of [0, 1, 8, 300, 1000]) {
      const b = sample(n, 12);
      assertEquals(toHex(await ours(b)), toHex(libzstdStreamCompress([b])), `${n} bytes`);
    }
    // Around the 128 KiB block size: same header (no content size, no checksum) and the same
    // block structure, e.g. an empty last block when the input ends exactly on a block boundary.
    const data = sample(3 << 20, 11);
    for (const n of [131071, 131072, 131073, 1 << 20, 3 << 20]) {
      const b = data.subarray(0, n);
      const want = frameShape(libzstdStreamCompress([b.subarray(0, n >> 1), b.subarray(n >> 1)]));
      const got = frameShape(await ours(b));
      assertEquals(got.header, want.header, `${n}: header (libzstd ${libzstdVersion()})`);
      assertEquals(got.blocks.length, want.blocks.length, `${n}: block count`);
      assertEquals(got.blocks.at(-1), want.blocks.at(-1), `${n}: last block`);
    }
  },
});
