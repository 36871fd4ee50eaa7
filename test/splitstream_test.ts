// Splitstream writer/reader (lib/splitstream) against the byte layout of docs/splitstream.md. Sections are
// decoded with the zstd CLI and the records parsed by hand here, independently of the reader.
import { describeError, FormatError } from "../lib/errors.ts";
import { type HashAlgorithm, ObjectId } from "../lib/fsverity/object_id.ts";
import { CONTENT_TYPE } from "../lib/oci/content_types.ts";
import {
  contentTypeFromAscii,
  contentTypeName,
  reassemble,
  type SplitStreamChunk,
  SplitStreamReader,
  SplitStreamWriter,
} from "../lib/splitstream/mod.ts";
import { concatBytes, equalBytes, toHex } from "../lib/util/bytes.ts";
import { listZstdFrames } from "../lib/compress/zstd.ts";
import { runTool } from "./helpers/process.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { hasLibzstd, libzstdStreamCompress } from "./helpers/libzstd_ffi.ts";

const enc = new TextEncoder();

/** Runs `zstd ARGS` with `input` on stdin; returns stdout (throws on failure). */
const zstdCli = (args: string[], input: Uint8Array) => runTool("zstd", ["-q", ...args], { stdin: input });
const cliCompress = (b: Uint8Array) => zstdCli(["-c", "--no-check"], b);
const cliDecompress = (b: Uint8Array) => zstdCli(["-d", "-c"], b);

function id(alg: HashAlgorithm, fill: number): ObjectId {
  return new ObjectId(alg, new Uint8Array(alg === "sha256" ? 32 : 64).fill(fill));
}

function sample(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = (i % 700) < 250 ? 0x30 + (i % 10) : x >>> 24;
  }
  return out;
}

function u64(v: bigint | number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}
function i64(v: bigint | number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigInt64(0, BigInt(v), true);
  return b;
}
const inlineRec = (data: Uint8Array) => concatBytes([i64(-data.length), data]);
const extRec = (index: number) => i64(index);

/** Little-endian u64 at `off`. */
function rd(b: Uint8Array, off: number): number {
  return Number(new DataView(b.buffer, b.byteOffset).getBigUint64(off, true));
}

/** The (start, end) ranges a writer-produced file declares, read by hand from fixed offsets. */
function ranges(f: Uint8Array) {
  const info = rd(f, 16);
  return {
    info: [info, rd(f, 24)],
    streamRefs: [rd(f, info), rd(f, info + 8)],
    objectRefs: [rd(f, info + 16), rd(f, info + 24)],
    stream: [rd(f, info + 32), rd(f, info + 40)],
    namedRefs: [rd(f, info + 48), rd(f, info + 56)],
    contentType: new DataView(f.buffer, f.byteOffset).getBigUint64(info + 64, true),
    streamSize: rd(f, info + 72),
  };
}

/** A splitstream assembled by hand (sections given compressed), in the writer's section order. */
function handBuild(o: {
  alg?: HashAlgorithm;
  streamRefs?: ObjectId[];
  objectRefs?: ObjectId[];
  named: Uint8Array;
  stream: Uint8Array;
  contentType?: bigint;
  streamSize?: number;
  legacy?: boolean;
}): Uint8Array {
  const alg = o.alg ?? "sha256";
  const sr = concatBytes((o.streamRefs ?? []).map((x) => x.bytes));
  const or = concatBytes((o.objectRefs ?? []).map((x) => x.bytes));
  const a = 112, b = a + sr.length, c = b + or.length, d = c + o.named.length, e = d + o.stream.length;
  const header = o.legacy
    ? concatBytes([
      u64(32),
      u64(112),
      Uint8Array.of(0, 0),
      enc.encode("SplitStream"),
      Uint8Array.of(0, alg === "sha256" ? 1 : 2, 12),
    ])
    : concatBytes([
      enc.encode("SplitStream"),
      Uint8Array.of(0, 0, 0, alg === "sha256" ? 1 : 2, 12),
      u64(32),
      u64(112),
    ]);
  assertEquals(header.length, 32);
  const info = concatBytes([
    u64(a),
    u64(b),
    u64(b),
    u64(c),
    u64(d),
    u64(e),
    u64(c),
    u64(d),
    u64(o.contentType ?? 0n),
    u64(o.streamSize ?? 0),
  ]);
  return concatBytes([header, info, sr, or, o.named, o.stream]);
}

async function allChunks(r: SplitStreamReader): Promise<SplitStreamChunk[]> {
  const out: SplitStreamChunk[] = [];
  for await (const c of r.chunks()) out.push(c);
  return out;
}

/** Reassembles with objects from a map (served in 3 MiB pieces to exercise re-slicing). */
async function cat(r: SplitStreamReader, objects: Map<string, Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (
    const p of reassemble(r, async function* (oid) {
      const d = objects.get(oid.hex())!;
      for (let o = 0; o < d.length; o += 3 << 20) yield d.subarray(o, o + (3 << 20));
    })
  ) {
    assert(p.length <= 1 << 20, `piece of ${p.length} bytes`);
    parts.push(p);
  }
  return concatBytes(parts);
}

Deno.test("splitstream: content types are the u64 LE of their ASCII names (docs/splitstream.md)", () => {
  assertEquals(CONTENT_TYPE.OCI_LAYER, 0x726579616c69636fn);
  assertEquals(CONTENT_TYPE.OCI_CONFIG, 0x67666e6f6369636fn);
  assertEquals(CONTENT_TYPE.OCI_MANIFEST, 0x66696e616d69636fn);
  assertEquals(CONTENT_TYPE.OCI_BLOB, 0x626f6c625f69636fn);
  assertEquals(contentTypeName(CONTENT_TYPE.OCI_BLOB), "oci_blob");
  assertEquals(contentTypeName(7n), "0x0000000000000007");
  assertEquals(contentTypeFromAscii("ocilayer"), CONTENT_TYPE.OCI_LAYER);
});

Deno.test("splitstream: byte layout of a writer-made file matches docs/splitstream.md section by section", async () => {
  const A = id("sha256", 0xaa),
    B = id("sha256", 0xbb),
    C = id("sha256", 0xcc),
    L1 = id("sha256", 0x11),
    L2 = id("sha256", 0x22);
  const w = new SplitStreamWriter("sha256", CONTENT_TYPE.OCI_CONFIG);
  w.writeInline(enc.encode("head"));
  w.writeInline(enc.encode("er!")); // coalesced with the previous write
  w.writeInline(new Uint8Array(0)); // nothing
  w.writeExternal(A, 100);
  w.writeExternal(B, 200);
  w.writeExternal(A, 100); // same index again
  w.writeInline(enc.encode("mid"));
  w.writeExternal(C, 300);
  w.writeInline(enc.encode("tail"));
  w.addNamedRef("zz-last", L2);
  w.addNamedRef("aa-first", L1);
  w.addNamedRef("mm-again", L2); // same digest: one stream ref
  const f = await w.finish();

  // Header (bytes 0..32).
  assertEquals(toHex(f.subarray(0, 11)), toHex(enc.encode("SplitStream")));
  assertEquals([...f.subarray(11, 16)], [0, 0, 0, 1, 12]); // version, flags, algorithm sha256, lg_blocksize
  const r = ranges(f);
  assertEquals(r.info, [32, 112]);
  // stream_refs (2 × 32, in order of addNamedRef), object_refs (3 × 32, first appearance).
  assertEquals(r.streamRefs, [112, 176]);
  assertEquals(r.objectRefs, [176, 272]);
  assertEquals(r.namedRefs[0], 272);
  assertEquals(r.stream[0], r.namedRefs[1]); // stream right after the named refs
  assertEquals(r.stream[1], f.length);
  assertEquals(r.contentType, 0x67666e6f6369636fn);
  assertEquals(r.streamSize, 7 + 100 + 200 + 100 + 3 + 300 + 4);
  assertEquals(toHex(f.subarray(112, 176)), toHex(concatBytes([L2.bytes, L1.bytes])));
  assertEquals(toHex(f.subarray(176, 272)), toHex(concatBytes([A.bytes, B.bytes, C.bytes])));

  // Named refs: one zstd frame; sorted by name; indexes into stream_refs.
  const named = f.subarray(r.namedRefs[0], r.namedRefs[1]);
  assertEquals(listZstdFrames(named).length, 1);
  assertEquals(
    new TextDecoder().decode(await cliDecompress(named)),
    "1:aa-first\0" + "0:mm-again\0" + "0:zz-last\0",
  );

  // Stream: one standard zstd frame of the records.
  const stream = f.subarray(r.stream[0], r.stream[1]);
  assertEquals(listZstdFrames(stream).length, 1);
  const expected = concatBytes([
    inlineRec(enc.encode("header!")),
    extRec(0),
    extRec(1),
    extRec(0),
    inlineRec(enc.encode("mid")),
    extRec(2),
    inlineRec(enc.encode("tail")),
  ]);
  assertEquals(toHex(await cliDecompress(stream)), toHex(expected));
});

Deno.test("splitstream: empty stream and empty named-ref table are zstd frames of nothing", async () => {
  const f = await new SplitStreamWriter("sha512", CONTENT_TYPE.OCI_LAYER).finish();
  const r = ranges(f);
  assertEquals(f[14], 2); // sha512
  assertEquals(r.streamRefs, [112, 112]);
  assertEquals(r.objectRefs, [112, 112]);
  const emptyFrame = await cliCompress(new Uint8Array(0)); // what libzstd writes for no input
  assertEquals(toHex(f.subarray(r.namedRefs[0], r.namedRefs[1])), toHex(emptyFrame));
  assertEquals(toHex(f.subarray(r.stream[0], r.stream[1])), toHex(emptyFrame));
  assertEquals(f.length, 112 + 2 * emptyFrame.length);
  const rd = await SplitStreamReader.fromBytes(f, { alg: "sha512", contentType: CONTENT_TYPE.OCI_LAYER });
  assertEquals(rd.streamSize, 0);
  assertEquals((await allChunks(rd)).length, 0);
  assertEquals(rd.namedRefs.size, 0);
});

Deno.test("splitstream: named refs sort by UTF-8 bytes, not UTF-16", async () => {
  const w = new SplitStreamWriter("sha256", CONTENT_TYPE.OCI_CONFIG);
  // U+E000 (EE 80 80) sorts before U+1F600 (F0 9F 98 80) in UTF-8; UTF-16 says the opposite.
  w.addNamedRef("\u{1F600}", id("sha256", 1));
  w.addNamedRef("\u{E000}", id("sha256", 2));
  w.addNamedRef("config:sha256:x", id("sha256", 3));
  const f = await w.finish();
  const r = ranges(f);
  const table = await cliDecompress(f.subarray(r.namedRefs[0], r.namedRefs[1]));
  assertEquals(new TextDecoder().decode(table), "2:config:sha256:x\0" + "1:\u{E000}\0" + "0:\u{1F600}\0");
  const rd = await SplitStreamReader.fromBytes(f);
  assertEquals(rd.namedRefs.get("config:sha256:x")?.hex(), id("sha256", 3).hex()); // split at the first ':'
  assertEquals(rd.namedRefs.get("\u{1F600}")?.hex(), id("sha256", 1).hex());
  assertEquals(rd.streamRefs.map((x) => x.bytes[0]), [1, 2, 3]);
});

Deno.test("splitstream: round trips (inline, external, mixed, repeated objects, large inline runs)", async () => {
  for (const alg of ["sha256", "sha512"] as const) {
    const objects = new Map<string, Uint8Array>();
    const obj = (fill: number, size: number) => {
      const oid = id(alg, fill);
      objects.set(oid.hex(), sample(size, fill));
      return oid;
    };
    const big = obj(1, 5 << 20), small = obj(2, 65), mid = obj(3, 70_000);
    type Op = ["i", Uint8Array] | ["x", ObjectId];
    const cases: Record<string, Op[]> = {
      inlineOnly: [["i", sample(1000, 1)], ["i", sample(10, 2)]],
      externalOnly: [["x", big], ["x", small]],
      mixed: [["i", sample(512, 3)], ["x", mid], ["i", sample(300, 4)], ["x", small], ["i", sample(1024, 5)]],
      repeated: [["x", small], ["i", sample(512, 6)], ["x", small], ["x", small], ["x", big], ["x", small]],
      // Runs of every size class the writer buffers differently, separated by objects.
      runSizes: [
        ...Array.from({ length: 3 }, (_, i) => ["i", sample(30_000, 200 + i)] as Op),
        ["x", small],
        ...Array.from({ length: 400 }, (_, i) => ["i", sample(100, 300 + i)] as Op),
        ["x", mid],
        ["i", sample(70_000, 7)],
        ["i", sample(10, 8)],
        ["x", small],
        ["i", sample(20_000, 9)],
      ],
      // 24 MB of inline data in many writes: one record, handed out in ≤ 1 MiB pieces.
      largeInline: Array.from({ length: 96 }, (_, i) => ["i", sample(256 * 1024, 100 + i)] as Op),
    };
    for (const [name, ops] of Object.entries(cases)) {
      const w = new SplitStreamWriter(alg, CONTENT_TYPE.OCI_LAYER);
      const expected: Uint8Array[] = [];
      for (const [k, v] of ops) {
        if (k === "i") {
          w.writeInline(v);
          expected.push(v);
        } else {
          w.writeExternal(v, objects.get(v.hex())!.length);
          expected.push(objects.get(v.hex())!);
        }
        await w.drain();
      }
      const f = await w.finish();
      const rd = await SplitStreamReader.fromBytes(f, { alg, contentType: CONTENT_TYPE.OCI_LAYER });
      const want = concatBytes(expected);
      assertEquals(rd.streamSize, want.length, name);
      assert(equalBytes(await cat(rd, objects), want), `${alg} ${name}: reassembled bytes differ`);
      // Object refs: each once, first-appearance order.
      const firstSeen = [...new Set(ops.filter((o) => o[0] === "x").map((o) => (o[1] as ObjectId).hex()))];
      assertEquals(rd.objectRefs.map((x) => x.hex()), firstSeen, name);
      // Records: consecutive inline writes are one record (chunks() may split it into ≤ 1 MiB pieces).
      const chunks = await allChunks(rd);
      for (const c of chunks) if (c.kind === "inline") assert(c.data.length > 0 && c.data.length <= 1 << 20);
      const kinds = chunks.map((c) => c.kind === "inline" ? "i" : "x").join("").replace(/i+/g, "i");
      assertEquals(kinds, ops.map((o) => o[0]).join("").replace(/i+/g, "i"), name);
    }
  }
});

Deno.test("splitstream: the stream section is standard zstd (CLI round trip) and multi-frame input is read", async () => {
  const data = sample(3 << 20, 9);
  const A = id("sha256", 0xaa);
  const w = new SplitStreamWriter("sha256", CONTENT_TYPE.OCI_LAYER);
  w.writeInline(data.subarray(0, 1 << 20));
  w.writeInline(data.subarray(1 << 20));
  w.writeExternal(A, 10);
  const f = await w.finish();
  const r = ranges(f);
  const plain = await cliDecompress(f.subarray(r.stream[0], r.stream[1]));
  assertEquals(toHex(plain.subarray(0, 8)), toHex(i64(-data.length)));
  assert(equalBytes(plain.subarray(8, 8 + data.length), data));
  assertEquals(toHex(plain.subarray(8 + data.length)), toHex(extRec(0)));

  // The same records as three CLI frames (split mid-record) plus a skippable frame.
  const cut1 = 5, cut2 = 2_000_000;
  const skip = concatBytes([
    Uint8Array.of(0x50, 0x2a, 0x4d, 0x18),
    u64(3).subarray(0, 4),
    Uint8Array.of(7, 7, 7),
  ]);
  const stream = concatBytes([
    await cliCompress(plain.subarray(0, cut1)),
    skip,
    await cliCompress(plain.subarray(cut1, cut2)),
    await zstdCli(["-c", "-1"], plain.subarray(cut2)),
  ]);
  const named = await cliCompress(new Uint8Array(0));
  const hb = handBuild({
    objectRefs: [A],
    named,
    stream,
    contentType: CONTENT_TYPE.OCI_LAYER,
    streamSize: plain.length,
  });
  const rd = await SplitStreamReader.fromBytes(hb);
  const objects = new Map([[A.hex(), sample(10, 1)]]);
  assert(equalBytes(await cat(rd, objects), concatBytes([data, sample(10, 1)])));
});

Deno.test("splitstream: a hand-built legacy-header file (bootc <= 1.15) is read", async () => {
  const A = id("sha256", 0x42), S = id("sha256", 0x43);
  const stream = await cliCompress(concatBytes([inlineRec(enc.encode("legacy!")), extRec(0)]));
  const named = await cliCompress(enc.encode("0:config\0"));
  const f = handBuild({
    streamRefs: [S],
    objectRefs: [A],
    named,
    stream,
    contentType: CONTENT_TYPE.OCI_MANIFEST,
    streamSize: 17,
    legacy: true,
  });
  assertEquals(new TextDecoder().decode(f.subarray(18, 29)), "SplitStream");
  const rd = await SplitStreamReader.fromBytes(f, { alg: "sha256", contentType: CONTENT_TYPE.OCI_MANIFEST });
  assert(rd.legacyHeader);
  assertEquals(rd.streamSize, 17);
  assertEquals(rd.namedRefs.get("config")?.hex(), S.hex());
  const chunks = await allChunks(rd);
  assertEquals(chunks.length, 2);
  assertEquals(chunks[0].kind === "inline" && new TextDecoder().decode(chunks[0].data), "legacy!");
  assertEquals(chunks[1].kind === "external" && chunks[1].id.hex(), A.hex());
  // The same file with the current header reads the same, and is not flagged legacy.
  const cur = await SplitStreamReader.fromBytes(
    handBuild({ streamRefs: [S], objectRefs: [A], named, stream }),
  );
  assertEquals(cur.legacyHeader, false);
});

Deno.test("splitstream: corrupt headers and sections are rejected with clear errors", async () => {
  const A = id("sha256", 0xaa);
  const named = await cliCompress(enc.encode("0:x\0"));
  const stream = await cliCompress(concatBytes([inlineRec(enc.encode("abc")), extRec(0)]));
  const good = handBuild({
    streamRefs: [A],
    objectRefs: [A],
    named,
    stream,
    contentType: CONTENT_TYPE.OCI_CONFIG,
  });
  await SplitStreamReader.fromBytes(good); // sanity
  const infoAt = 32;
  const reject = async (f: Uint8Array, re: RegExp, opts = {}) => {
    const e = await assertRejects(() => SplitStreamReader.fromBytes(f, opts), FormatError);
    assert(re.test(describeError(e)), `${describeError(e)} !~ ${re}`);
  };
  const mut = (fn: (b: Uint8Array, v: DataView) => void) => {
    const b = good.slice();
    fn(b, new DataView(b.buffer));
    return b;
  };
  await reject(good.subarray(0, 20), /too short for its header: 20 bytes/);
  await reject(mut((b) => b[0] = 0x73), /bad magic/);
  await reject(mut((b) => b[11] = 1), /unsupported splitstream version 1/);
  await reject(mut((b) => b[14] = 3), /unknown fs-verity algorithm id 3/);
  await reject(good, /uses sha256 object ids, expected sha512/, { alg: "sha512" });
  await reject(mut((b) => b[15] = 16), /block size 2\^16/);
  await reject(good, /content type is ociconfg, expected ocilayer/, { contentType: CONTENT_TYPE.OCI_LAYER });
  await reject(
    mut((_, v) => v.setBigUint64(24, 5000n, true)),
    /info range 32\.\.5000 is past the end of the file/,
  );
  await reject(
    mut((_, v) => v.setBigUint64(24, 100n, true)),
    /info section 32\.\.100 is 68 bytes \(need 80\)/,
  );
  await reject(mut((_, v) => v.setBigUint64(16, 120n, true)), /info range 120\.\.112 ends before it starts/);
  await reject(
    mut((_, v) => v.setBigUint64(infoAt + 40, BigInt(good.length + 1), true)),
    /stream range \d+\.\.\d+ is past the end of the file/,
  );
  await reject(
    mut((_, v) => v.setBigUint64(infoAt + 8, 100n, true)),
    /stream_refs range 112\.\.100 ends before/,
  );
  await reject(
    mut((_, v) => v.setBigUint64(infoAt + 8, 140n, true)),
    /stream_refs section 112\.\.140 is 28 bytes, not a multiple/,
  );
  await reject(
    mut((_, v) => v.setBigUint64(infoAt + 24, 2n ** 63n, true)),
    /object_refs range .* past the end/,
  );

  // Named refs: index out of range, missing colon, bad UTF-8, missing terminator, bad zstd.
  const withNamed = async (table: Uint8Array) =>
    handBuild({ streamRefs: [A], objectRefs: [A], named: await cliCompress(table), stream });
  await reject(await withNamed(enc.encode("1:x\0")), /named ref "x": index 1 out of range \(1 stream refs\)/);
  await reject(await withNamed(enc.encode("0x\0")), /has no ':'/);
  await reject(await withNamed(enc.encode("z:x\0")), /non-numeric index "z"/);
  await reject(await withNamed(Uint8Array.of(0x30, 0x3a, 0xff, 0)), /not valid UTF-8/);
  await reject(await withNamed(enc.encode("0:x\0" + "0:y")), /trailing 3 bytes without a NUL/);
  await reject(
    handBuild({ streamRefs: [A], named: named.subarray(0, named.length - 2), stream }),
    /named_refs section .*truncated zstd stream/,
  );
});

Deno.test("splitstream: corrupt chunk streams fail in chunks() with the offset", async () => {
  const A = id("sha256", 0xaa);
  const named = await cliCompress(new Uint8Array(0));
  const read = async (records: Uint8Array, objectRefs = [A]) => {
    const stream = await cliCompress(records);
    return allChunks(await SplitStreamReader.fromBytes(handBuild({ objectRefs, named, stream })));
  };
  const fails = async (p: Promise<unknown>, re: RegExp) => {
    const e = await assertRejects(() => p, FormatError);
    assert(re.test(describeError(e)), `${describeError(e)} !~ ${re}`);
  };
  assertEquals((await read(concatBytes([inlineRec(enc.encode("ok")), extRec(0)]))).length, 2);
  await fails(
    read(concatBytes([inlineRec(enc.encode("abc")), extRec(1)])),
    /external reference index 1 out of range \(1 object refs\) at stream offset 11/,
  );
  await fails(read(extRec(0), []), /index 0 out of range \(0 object refs\) at stream offset 0/);
  await fails(
    read(concatBytes([inlineRec(enc.encode("abc")), Uint8Array.of(1, 2, 3)])),
    /partial record header \(3 of 8 bytes at stream offset 11\)/,
  );
  await fails(
    read(concatBytes([i64(-10), enc.encode("abc")])),
    /ends inside the inline chunk at stream offset 0 \(7 bytes missing\)/,
  );
  // A stream section cut short: truncated zstd.
  const stream = await cliCompress(concatBytes([inlineRec(sample(5000, 1)), extRec(0)]));
  const cut = handBuild({ objectRefs: [A], named, stream: stream.subarray(0, stream.length - 5) });
  await fails(allChunks(await SplitStreamReader.fromBytes(cut)), /stream section: truncated zstd stream/);
  // Garbage that is not zstd at all.
  const junk = handBuild({ objectRefs: [A], named, stream: enc.encode("not zstd data") });
  await fails(allChunks(await SplitStreamReader.fromBytes(junk)), /not a zstd frame at offset 0/);
});

Deno.test("splitstream: writer contract (algorithm mismatch, NUL in names, finished writer)", async () => {
  const w = new SplitStreamWriter("sha256", CONTENT_TYPE.OCI_CONFIG);
  let threw = false;
  try {
    w.writeExternal(id("sha512", 1), 1);
  } catch (e) {
    threw = e instanceof FormatError;
  }
  assert(threw, "sha512 id in a sha256 stream must be refused");
  threw = false;
  try {
    w.addNamedRef("a\0b", id("sha256", 1));
  } catch (e) {
    threw = e instanceof FormatError;
  }
  assert(threw, "NUL in a name must be refused");
  // Same name twice: the last id wins; both digests stay in stream_refs (spec: each once, in order).
  w.addNamedRef("n", id("sha256", 1));
  w.addNamedRef("n", id("sha256", 2));
  const rd = await SplitStreamReader.fromBytes(await w.finish());
  assertEquals(rd.namedRefs.get("n")?.bytes[0], 2);
  assertEquals(rd.streamRefs.map((x) => x.bytes[0]), [1, 2]);
  await assertRejects(() => w.finish(), /already finished/);
});

Deno.test({
  name:
    "splitstream: writer output = a file assembled by hand with libzstd-streamed sections (whole-file bytes)",
  ignore: !hasLibzstd,
  fn: async () => {
    const A = id("sha512", 0xa1), B = id("sha512", 0xb2), L = id("sha512", 0x33);
    // Small sections: larger ones compress differently across libzstd versions.
    const big = sample(400, 5);
    const w = new SplitStreamWriter("sha512", CONTENT_TYPE.OCI_LAYER);
    w.writeInline(enc.encode("x".repeat(512)));
    w.writeExternal(A, 1000);
    w.writeInline(big.subarray(0, 100));
    w.writeInline(big.subarray(100));
    w.writeExternal(B, 2000);
    w.writeExternal(A, 1000);
    w.addNamedRef("layer", L);
    w.addNamedRef("config", A);
    const ours = await w.finish();
    const records = concatBytes([
      inlineRec(enc.encode("x".repeat(512))),
      extRec(0),
      inlineRec(big),
      extRec(1),
      extRec(0),
    ]);
    const expected = handBuild({
      alg: "sha512",
      streamRefs: [L, A],
      objectRefs: [A, B],
      named: libzstdStreamCompress([enc.encode("1:config\0" + "0:layer\0")]),
      stream: libzstdStreamCompress([records]),
      contentType: CONTENT_TYPE.OCI_LAYER,
      streamSize: 512 + 1000 + big.length + 2000 + 1000,
    });
    assertEquals(toHex(ours), toHex(expected));
    // No chunks at all: both sections are libzstd's frame of nothing.
    const empty = await new SplitStreamWriter("sha256", CONTENT_TYPE.OCI_BLOB).finish();
    const z = libzstdStreamCompress([]);
    assertEquals(toHex(empty), toHex(handBuild({ named: z, stream: z, contentType: CONTENT_TYPE.OCI_BLOB })));
  },
});
