// Hostile tar layers against the streaming tar reader and the layer splitter (issue 11, items 1-4):
// PAX global headers that used to cost memory and quadratic time, data after the end-of-archive
// blocks, uid/gid beyond what EROFS holds, NUL bytes in names and link targets.
import { FormatError } from "../lib/errors.ts";
import { MAX_GLOBAL_PAX_TOTAL } from "../lib/oci/tar/reader.ts";
import { splitTarLayer } from "../lib/oci/layer_split.ts";
import { concatBytes } from "../lib/util/bytes.ts";
import { zstdDecompressAll } from "../lib/compress/zstd.ts";
import { CONTENT_TYPE } from "../lib/oci/content_types.ts";
import { SplitStreamReader } from "../lib/splitstream/reader.ts";
import { MAX_INLINE_RECORD, SplitStreamWriter } from "../lib/splitstream/writer.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { MemoryStore } from "./helpers/memory_store.ts";
import { END, paxMember, readAll, sha256Hex, tarMember } from "./helpers/tar_fixtures.ts";

const enc = new TextEncoder();

async function readBytes(tar: Uint8Array, chunk = 65536) {
  return await readAll(tar, chunk);
}

Deno.test("PAX global headers: one before each of 10,000 entries is read in linear time", async () => {
  const parts: Uint8Array[] = [];
  const n = 10_000;
  for (let i = 0; i < n; i++) {
    // A new value for the same keys each time: the state stays one value per key.
    parts.push(paxMember([["uid", String(i)], [`SCHILY.xattr.user.k${i % 4}`, "v" + i]], "g"));
    parts.push(tarMember({ name: `f${i}` }));
  }
  parts.push(END);
  const tar = concatBytes(parts);
  const t0 = performance.now();
  const { entries, raw } = await readBytes(tar);
  const ms = performance.now() - t0;
  assertEquals(entries.length, n);
  assertEquals(sha256Hex(raw), sha256Hex(tar));
  // Later globals replace earlier ones for the same key.
  const last = entries[n - 1].entry;
  assertEquals(last.uid, n - 1);
  assertEquals(last.xattrs.size, 4);
  assertEquals(new TextDecoder().decode(last.xattrs.get("user.k3")), "v" + (n - 1));
  // Before the fix every entry re-applied every global record seen so far: about 11 s here.
  assert(ms < 4000, `reading took ${ms.toFixed(0)} ms`);
});

Deno.test("PAX global headers: more than 4 MiB in total is refused, naming the limit", async () => {
  const big = "c".repeat(1024 * 1024 - 64);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 5; i++) {
    parts.push(paxMember([["comment", big]], "g"));
    parts.push(tarMember({ name: `f${i}` }));
  }
  parts.push(END);
  const tar = concatBytes(parts);
  assert(tar.length > MAX_GLOBAL_PAX_TOTAL);
  const e = await assertRejects(() => readBytes(tar), /PAX global headers total more than 4194304 bytes/);
  assert(e instanceof FormatError);
});

Deno.test("PAX global headers: many distinct keys are refused", async () => {
  const recs: [string, string][] = [];
  for (let i = 0; i < 300; i++) recs.push([`SCHILY.xattr.user.x${i}`, "1"]);
  const tar = concatBytes([paxMember(recs, "g"), tarMember({ name: "f" }), END]);
  await assertRejects(() => readBytes(tar), /more than 256 distinct keys/);
  // Keys without meaning for the tree are not kept, so they do not count.
  const ignored: [string, string][] = [];
  for (let i = 0; i < 300; i++) ignored.push([`VENDOR.k${i}`, "1"]);
  const ok = concatBytes([paxMember(ignored, "g"), tarMember({ name: "f" }), END]);
  assertEquals((await readBytes(ok)).entries.length, 1);
});

Deno.test("uid/gid above 32 bits are refused with the entry's path (PAX and base-256)", async () => {
  for (
    const [key, value, shown] of [
      ["uid", String(2 ** 40), "uid 1099511627776"],
      ["uid", String(2 ** 32 + 5), "uid 4294967301"],
      ["gid", String(2 ** 32), "gid 4294967296"],
    ]
  ) {
    const tar = concatBytes([
      paxMember([[key, value]]),
      tarMember({ name: "etc/shadow" }, enc.encode("x")),
      END,
    ]);
    const e = await assertRejects(() => readBytes(tar), /does not fit in 32 bits/);
    assert(e instanceof FormatError);
    assert(e.message.includes(`"/etc/shadow": ${shown}`), e.message);
  }
  // The largest 32-bit id is kept exactly.
  const max = concatBytes([
    paxMember([["uid", "4294967295"], ["gid", "4294967294"]]),
    tarMember({ name: "a" }),
    END,
  ]);
  const { entries } = await readBytes(max);
  assertEquals([entries[0].entry.uid, entries[0].entry.gid], [4294967295, 4294967294]);
  // A base-256 uid field of 2^33 in the header itself.
  const h = tarMember({ name: "b" });
  const field = new Uint8Array(8);
  field[0] = 0x80;
  field[3] = 0x02; // 2^33 = 0x02_0000_0000, big-endian in the 7 remaining bytes
  h.set(field, 108);
  fixChecksum(h);
  await assertRejects(
    () => readBytes(concatBytes([h, END])),
    /"\/b": uid 8589934592 does not fit in 32 bits/,
  );
});

Deno.test("uid above 32 bits: the layer import fails before a stream exists", async () => {
  const store = new MemoryStore("sha256");
  const tar = concatBytes([
    paxMember([["uid", String(2 ** 40)]]),
    tarMember({ name: "f" }, new Uint8Array(100)),
    END,
  ]);
  await assertRejects(() => splitTarLayer(ReadableStream.from([tar]), store), /"\/f": uid 1099511627776/);
});

Deno.test("NUL bytes in PAX path, linkpath and xattr names are refused", async () => {
  const cases: [Uint8Array, RegExp][] = [
    [
      concatBytes([paxMember([["linkpath", "/etc\0/shadow"]]), tarMember({ name: "l", type: "2" }), END]),
      /tar entry "l": link target "\/etc\\u0000\/shadow" contains a NUL byte/,
    ],
    [
      concatBytes([paxMember([["linkpath", "x\0y"]]), tarMember({ name: "h", type: "1" }), END]),
      /link target "x\\u0000y" contains a NUL byte/,
    ],
    [
      concatBytes([paxMember([["path", "a\0b"]]), tarMember({ name: "p" }), END]),
      /tar entry path "a\\u0000b" contains a NUL byte/,
    ],
    [
      concatBytes([paxMember([["SCHILY.xattr.user.a\0b", "v"]]), tarMember({ name: "x" }), END]),
      /xattr name "user.a\\u0000b" contains a NUL byte/,
    ],
  ];
  for (const [tar, re] of cases) {
    const e = await assertRejects(() => readBytes(tar), re);
    assert(e instanceof FormatError);
    assert((e as FormatError).context.some((c) => /^tar header at offset \d+$/.test(c)), String(e));
  }
});

function fixChecksum(h: Uint8Array): void {
  for (let i = 148; i < 156; i++) h[i] = 0x20;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += h[i];
  const s = sum.toString(8).padStart(6, "0") + "\0 ";
  for (let i = 0; i < 8; i++) h[148 + i] = s.charCodeAt(i);
}

Deno.test("splitstream writer: a long inline run is cut at tar block boundaries, independent of write sizes", async () => {
  const total = 2 * MAX_INLINE_RECORD + 12345;
  const data = new Uint8Array(total);
  for (let i = 0; i < total; i += 997) data[i] = i & 0xff;
  const files: Uint8Array[] = [];
  const store = new MemoryStore("sha256");
  const obj = await store.ensureObject(new Uint8Array(100).fill(1));
  for (const chunk of [1 << 20, 65536 + 3, 7 * 1024 * 1024 + 11]) {
    const w = new SplitStreamWriter("sha256", CONTENT_TYPE.OCI_LAYER);
    w.writeExternal(obj, 100); // the inline run starts at stream offset 100, off a 512 boundary
    for (let o = 0; o < total; o += chunk) w.writeInline(data.subarray(o, Math.min(total, o + chunk)));
    files.push(await w.finish());
  }
  assertEquals(sha256Hex(files[1]), sha256Hex(files[0]));
  assertEquals(sha256Hex(files[2]), sha256Hex(files[0]));
  // Read back: the same bytes, in records whose boundaries fall on multiples of 512.
  const r = await SplitStreamReader.fromBytes(files[0]);
  const out: Uint8Array[] = [];
  for await (const c of r.chunks()) if (c.kind === "inline") out.push(c.data.slice());
  assertEquals(sha256Hex(concatBytes(out)), sha256Hex(data));
  const records = inlineRecordLengths(files[0]);
  assertEquals(records.length, 3);
  assertEquals(records[0], MAX_INLINE_RECORD + 412);
  assertEquals(records[1], MAX_INLINE_RECORD);
  assertEquals(records.reduce((a, b) => a + b, 0), total);
});

/** Lengths of the inline records of a splitstream file (decodes its chunk stream directly). */
function inlineRecordLengths(file: Uint8Array): number[] {
  const v = new DataView(file.buffer, file.byteOffset);
  // info block at 32: the stream range is at info + 32 (start, end as u64).
  const start = Number(v.getBigUint64(32 + 32, true));
  const end = Number(v.getBigUint64(32 + 40, true));
  const stream = zstdDecompressAll(file.subarray(start, end));
  const sv = new DataView(stream.buffer, stream.byteOffset);
  const lens: number[] = [];
  for (let p = 0; p < stream.length;) {
    const n = Number(sv.getBigInt64(p, true));
    p += 8;
    if (n < 0) {
      lens.push(-n);
      p += -n;
    }
  }
  return lens;
}
