// Layer decompression: every gzip member and every zstd frame (skippable frames skipped), with the
// compressed data made by the gzip and zstd command-line tools.
import { FormatError, IntegrityError } from "../lib/errors.ts";
import { inPlaceChunks, inPlaceDecoding, releaseDecoders } from "../lib/compress/decompress.ts";
import { createHash } from "node:crypto";
import { decompressLayer, isTarLayerMediaType, layerCompressionOf } from "../lib/oci/media_types.ts";
import { nativeCodecAvailable, RECYCLE_DISTANCE } from "../lib/linux/native_decompress.ts";
import { concatBytes } from "../lib/util/bytes.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { run, sha256Hex } from "./helpers/tar_fixtures.ts";

/** The data in `chunk`-sized pieces; `tiny` first pieces of one byte (to split magic numbers). */
function streamOf(data: Uint8Array, chunk = 7000, tiny = 0): ReadableStream<Uint8Array> {
  let o = 0;
  let n = 0;
  return new ReadableStream({
    pull(ctl) {
      if (o >= data.length) return ctl.close();
      const len = n++ < tiny ? 1 : chunk;
      ctl.enqueue(data.slice(o, o + len));
      o += len;
    },
  });
}

async function collect(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of s) parts.push(c);
  return concatBytes(parts);
}

/** Some compressible, some random bytes (a few MiB), cut into three unequal parts. */
function sample(): { whole: Uint8Array; parts: Uint8Array[] } {
  const text = new TextEncoder().encode("usr/share/doc/some/file.txt\n".repeat(60000));
  const rnd = new Uint8Array(700_000);
  for (let o = 0; o < rnd.length; o += 65536) crypto.getRandomValues(rnd.subarray(o, o + 65536));
  const whole = concatBytes([text, rnd, text.subarray(0, 12345)]);
  return {
    whole,
    parts: [whole.subarray(0, 100), whole.subarray(100, 1_500_001), whole.subarray(1_500_001)],
  };
}

function skippable(n: number, payloadLen: number): Uint8Array {
  const b = new Uint8Array(8 + payloadLen).fill(0xab);
  new DataView(b.buffer).setUint32(0, 0x184d2a50 + n, true);
  new DataView(b.buffer).setUint32(4, payloadLen, true);
  return b;
}

const GZ = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZST = "application/vnd.oci.image.layer.v1.tar+zstd";
const TAR = "application/vnd.oci.image.layer.v1.tar";

/** Both decoders: the system library through FFI (default) and node:zlib. */
const PATHS = [{ native: true }, { native: false }];

Deno.test("native decoders: libzstd and zlib load here (the fast path is what the other tests cover)", () => {
  assert(nativeCodecAvailable("zstd"));
  assert(nativeCodecAvailable("gzip"));
});

Deno.test("gzip: every member of a multi-member file is decoded (gzip CLI)", async () => {
  const { whole, parts } = sample();
  const members = await Promise.all(parts.map((p) => run("gzip", ["-c", "-6"], { stdin: p })));
  const gz = concatBytes(members);
  for (const path of PATHS) {
    for (const mt of [GZ, "application/vnd.docker.image.rootfs.diff.tar.gzip"]) {
      const out = await collect(decompressLayer(streamOf(gz), mt, path));
      assertEquals(sha256Hex(out), sha256Hex(whole), `${mt} ${JSON.stringify(path)}`);
    }
  }
  // Bytes after the last member that do not start another one are ignored (as gzip -dc does).
  const trailing = concatBytes([gz, new Uint8Array(1000)]);
  const out = await collect(decompressLayer(streamOf(trailing), GZ));
  assertEquals(sha256Hex(out), sha256Hex(whole));
  // Independent check: the CLI decodes the same bytes.
  assertEquals(sha256Hex(await run("gzip", ["-dc"], { stdin: gz })), sha256Hex(whole));
});

Deno.test("zstd: every frame is decoded, skippable frames skipped (zstd CLI + cat)", async () => {
  const { whole, parts } = sample();
  const frames = [
    await run("zstd", ["-q", "-c", "-3"], { stdin: parts[0] }),
    await run("zstd", ["-q", "-c", "-19", "--no-check"], { stdin: parts[1] }),
    // Streamed from a pipe: no content size in the frame header.
    await run("sh", ["-c", "cat | zstd -q -c --no-content-size -1"], { stdin: parts[2] }),
  ];
  const zst = concatBytes([
    skippable(0, 16),
    frames[0],
    skippable(15, 0),
    frames[1],
    skippable(3, 100),
    frames[2],
  ]);
  assertEquals(sha256Hex(await run("zstd", ["-dc"], { stdin: zst })), sha256Hex(whole)); // the CLI agrees
  for (const path of PATHS) {
    for (const chunk of [1 << 16, 999]) {
      const out = await collect(decompressLayer(streamOf(zst, chunk), ZST, path));
      assertEquals(sha256Hex(out), sha256Hex(whole), `chunk ${chunk} ${JSON.stringify(path)}`);
    }
  }
  const nd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
  assertEquals(sha256Hex(await collect(decompressLayer(streamOf(zst), nd))), sha256Hex(whole));
});

Deno.test("uncompressed: passed through; compressed bytes under the plain tar type are sniffed", async () => {
  const { whole } = sample();
  assertEquals(sha256Hex(await collect(decompressLayer(streamOf(whole), TAR))), sha256Hex(whole));
  const gz = await run("gzip", ["-c"], { stdin: whole });
  const zst = await run("zstd", ["-q", "-c"], { stdin: whole });
  assertEquals(sha256Hex(await collect(decompressLayer(streamOf(gz, 65536, 3), TAR))), sha256Hex(whole));
  assertEquals(sha256Hex(await collect(decompressLayer(streamOf(zst, 65536, 5), TAR))), sha256Hex(whole));
  const raw = await collect(decompressLayer(streamOf(gz), TAR, { sniff: false }));
  assertEquals(sha256Hex(raw), sha256Hex(gz));
  assertEquals((await collect(decompressLayer(streamOf(new Uint8Array(0)), TAR))).length, 0);
});

Deno.test("media types: the nine tar layer types, artifacts are not layers", () => {
  const want: [string, string][] = [
    [TAR, "none"],
    [GZ, "gzip"],
    [ZST, "zstd"],
    ["application/vnd.oci.image.layer.nondistributable.v1.tar", "none"],
    ["application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip"],
    ["application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", "zstd"],
    ["application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"],
    ["application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "gzip"],
  ];
  for (const [mt, c] of want) {
    assert(isTarLayerMediaType(mt), mt);
    assertEquals(layerCompressionOf(mt), c);
  }
  for (
    const mt of ["application/octet-stream", "application/vnd.oci.image.config.v1+json", "text/plain", ""]
  ) {
    assert(!isTarLayerMediaType(mt), mt);
  }
  assertThrows(() => decompressLayer(streamOf(new Uint8Array(1)), "application/x-thing"), FormatError);
});

Deno.test("corrupt and truncated compressed data → FormatError", async () => {
  const { whole } = sample();
  const gz = await run("gzip", ["-c"], { stdin: whole });
  const zst = await run("zstd", ["-q", "-c"], { stdin: whole });
  const badGz = gz.slice();
  badGz.fill(0x55, 1000, 1100);
  const badZst = zst.slice();
  badZst.fill(0x55, 1000, 1100);
  for (const path of PATHS) {
    await assertRejects(() => collect(decompressLayer(streamOf(badGz), GZ, path)), FormatError);
    await assertRejects(
      () => collect(decompressLayer(streamOf(gz.subarray(0, gz.length - 100)), GZ, path)),
      FormatError,
    );
    await assertRejects(
      () => collect(decompressLayer(streamOf(zst.subarray(0, zst.length - 100)), ZST, path)),
      FormatError,
    );
    await assertRejects(
      () => collect(decompressLayer(streamOf(new Uint8Array([1, 2, 3, 4, 5])), ZST, path)),
      FormatError,
    );
  }
  await assertRejects(() => collect(decompressLayer(streamOf(badZst), ZST)), FormatError);
  await assertRejects(() => collect(decompressLayer(streamOf(new Uint8Array(0)), GZ)), FormatError);
});

Deno.test("in-place chunks: the decoder's own buffers, intact for RECYCLE_DISTANCE more chunks", async () => {
  // ~9 MiB of varied text: several 1 MiB output chunks.
  const lines: string[] = [];
  for (let i = 0; i < 400_000; i++) lines.push(`line ${i} ${(i * 2654435761) >>> 0}`);
  const whole = new TextEncoder().encode(lines.join("\n"));
  const zst = await run("zstd", ["-q", "-c"], { stdin: whole });
  const s = decompressLayer(streamOf(zst, 65536), ZST);
  const it = inPlaceChunks(s);
  assert(it !== null);
  assertEquals(inPlaceChunks(s), null, "claimed once");
  const seen: { view: Uint8Array; copy: Uint8Array }[] = [];
  for await (const c of it) {
    seen.push({ view: c, copy: c.slice() });
    // Every chunk still held within the promised distance is unchanged.
    for (const old of seen.slice(-1 - RECYCLE_DISTANCE)) assertEquals(old.view, old.copy);
  }
  assert(seen.length > RECYCLE_DISTANCE + 2, `${seen.length} chunks`);
  assertEquals(sha256Hex(concatBytes(seen.map((x) => x.copy))), sha256Hex(whole));
  // Read as a stream, every chunk is the consumer's own.
  const kept: Uint8Array[] = [];
  for await (const c of decompressLayer(streamOf(zst, 65536), ZST)) kept.push(c);
  assertEquals(sha256Hex(concatBytes(kept)), sha256Hex(whole));
});

/** ~`mib` MiB of varied text (compresses, but not to nothing). */
function textOf(mib: number, seed: number): Uint8Array {
  const lines: string[] = [];
  for (let i = 0; lines.length * 24 < mib << 20; i++) {
    lines.push(`line ${i} ${((i + seed) * 2654435761) >>> 0}`);
  }
  return new TextEncoder().encode(lines.join("\n"));
}

Deno.test("decoding thread: streams decoded at once share it; the output digest comes from it", async () => {
  const a = textOf(6, 1);
  const b = textOf(3, 2);
  const gz = await run("gzip", ["-c"], { stdin: a });
  const zst = await run("zstd", ["-q", "-c"], { stdin: b });
  const read = async (data: Uint8Array, mt: string) => {
    const dec = inPlaceDecoding(decompressLayer(streamOf(data, 50_000), mt));
    assert(dec !== null);
    dec.hashOutput("sha256");
    const parts: Uint8Array[] = [];
    for await (const c of dec.chunks) parts.push(c.slice());
    return { whole: concatBytes(parts), digest: dec.outputDigest() };
  };
  // Interleaved on the one thread: each stream gets its own bytes and digest.
  const [ra, rb] = await Promise.all([read(gz, GZ), read(zst, ZST)]);
  assertEquals(sha256Hex(ra.whole), sha256Hex(a));
  assertEquals(sha256Hex(rb.whole), sha256Hex(b));
  assertEquals(ra.digest, { hex: sha256Hex(a), size: a.length });
  assertEquals(rb.digest, { hex: sha256Hex(b), size: b.length });
  // sha512 is hashed as asked.
  const dec = inPlaceDecoding(decompressLayer(streamOf(gz), GZ))!;
  dec.hashOutput("sha512");
  for await (const _ of dec.chunks);
  assertEquals(dec.outputDigest()?.hex, createHash("sha512").update(a).digest("hex"));
});

Deno.test("decoding thread: a consumer that stops early, a failing source, a stopped thread", async () => {
  const a = textOf(8, 3);
  const gz = await run("gzip", ["-c"], { stdin: a });
  // Stop after two chunks: the thread drops the stream and the next one decodes fully.
  let n = 0;
  for await (const _ of inPlaceChunks(decompressLayer(streamOf(gz), GZ))!) if (++n === 2) break;
  assertEquals(sha256Hex(await collect(decompressLayer(streamOf(gz), GZ))), sha256Hex(a));
  // The source's own error (e.g. a digest check at its end) reaches the consumer as it is, even
  // though the decoder itself saw a complete stream.
  const failing = streamOf(gz).pipeThrough(
    new TransformStream({ flush: () => Promise.reject(new IntegrityError("digest mismatch")) }),
  );
  const e = await assertRejects(() => collect(decompressLayer(failing, GZ)), IntegrityError);
  assertEquals(e.message, "digest mismatch");
  // Once let go (a pull's image build needs the memory), the next stream starts a new thread.
  releaseDecoders();
  assertEquals(sha256Hex(await collect(decompressLayer(streamOf(gz), GZ))), sha256Hex(a));
  releaseDecoders();
});
