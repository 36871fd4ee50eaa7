// The one splitstream chunk shape (lib/splitstream/chunk.ts) and the one reassembler: a reader iterates
// its chunks, reassemble() and the tar byte source take a reader or any generator of chunks alike.
import { CONTENT_TYPE } from "../lib/oci/content_types.ts";
import { ByteSource } from "../lib/oci/tar/byte_source.ts";
import {
  reassemble,
  reassembleStream,
  type SplitStreamChunk,
  SplitStreamReader,
  SplitStreamWriter,
} from "../lib/splitstream/mod.ts";
import { concatBytes } from "../lib/util/bytes.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { MemoryStore } from "./helpers/memory_store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function sample() {
  const store = new MemoryStore("sha256");
  const big = enc.encode("object ".repeat(100));
  const id = await store.ensureObject(big);
  const w = new SplitStreamWriter("sha256", CONTENT_TYPE.OCI_LAYER);
  w.writeInline(enc.encode("head|"));
  w.writeExternal(id, big.length);
  w.writeInline(enc.encode("|tail"));
  const reader = await SplitStreamReader.fromBytes(await w.finish());
  const open = async function* (oid: { hex(): string }) {
    yield store.objects.get(oid.hex())!;
  };
  return { store, big, id, reader, open };
}

Deno.test("splitstream chunk: iterating a reader yields what chunks() yields", async () => {
  const { reader, id } = await sample();
  const viaIterator: SplitStreamChunk[] = [];
  for await (const c of reader) viaIterator.push(c);
  const viaChunks: SplitStreamChunk[] = [];
  for await (const c of reader.chunks()) viaChunks.push(c);
  const show = (cs: SplitStreamChunk[]) =>
    cs.map((c) => c.kind === "inline" ? `i:${dec.decode(c.data)}` : `x:${c.id.hex()}`);
  assertEquals(show(viaIterator), show(viaChunks));
  assertEquals(show(viaIterator), ["i:head|", `x:${id.hex()}`, "i:|tail"]);
});

Deno.test("splitstream chunk: one reassembler for a reader and for a generator (empty inline chunks skipped)", async () => {
  const { reader, big, id, open } = await sample();
  const want = concatBytes([enc.encode("head|"), big, enc.encode("|tail")]);
  const parts: Uint8Array[] = [];
  for await (const p of reassemble(reader, open)) parts.push(p);
  assertEquals(dec.decode(concatBytes(parts)), dec.decode(want));
  async function* gen(): AsyncGenerator<SplitStreamChunk> {
    yield { kind: "inline", data: new Uint8Array(0) };
    yield { kind: "inline", data: enc.encode("head|") };
    yield { kind: "external", id };
    yield { kind: "inline", data: enc.encode("|tail") };
  }
  const fromGen: Uint8Array[] = [];
  for await (const p of reassembleStream(gen(), open)) {
    assert(p.length > 0, "no empty pieces");
    fromGen.push(p);
  }
  assertEquals(dec.decode(concatBytes(fromGen)), dec.decode(want));
});

Deno.test("splitstream chunk: the tar byte source reads raw bytes and inline chunks alike, and stops at external ones", async () => {
  const { id } = await sample();
  async function* parts() {
    yield enc.encode("ab");
    yield { kind: "inline" as const, data: enc.encode("cd") };
    yield { kind: "external" as const, id };
    yield enc.encode("ef");
  }
  const src = new ByteSource(parts());
  assertEquals(dec.decode(await src.read(10)), "abcd");
  assert(src.blocked, "blocked at the external chunk");
  assertEquals((await src.takeExternal())?.hex(), id.hex());
  assertEquals(dec.decode(await src.read(10)), "ef");
  assertEquals(src.consumed, 6);
});
