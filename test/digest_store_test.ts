// FlatDigestStore (mkcomposefs --digest-store): objects land at DIR/XX/<rest> holding exactly the
// bytes given, their names are the digests `fsverity digest` computes, an object already present is
// not rewritten (by this store or a later one on the same directory), and nothing else is left in
// the directory.
import { assert, assertEquals } from "./helpers/assert.ts";
import { tempDir } from "./helpers/cli.ts";
import { FlatDigestStore } from "../lib/objects/digest_store.ts";
import type { ObjectId } from "../lib/fsverity/object_id.ts";

async function fsverityTool(path: string): Promise<string> {
  const o = await new Deno.Command("fsverity", { args: ["digest", "--compact", path], stdout: "piped" })
    .output();
  assert(o.success, `fsverity digest ${path}`);
  return new TextDecoder().decode(o.stdout).trim();
}

function bytes(n: number, seed: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed * 7 + (i >> 9)) & 0xff);
}

function listStore(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (!e.isDirectory) out.push(e.name);
    else for (const f of Deno.readDirSync(`${dir}/${e.name}`)) out.push(`${e.name}/${f.name}`);
  }
  return out.sort();
}

Deno.test("FlatDigestStore: layout, digests match fsverity, borrowed buffers, no rewrite, no leftovers", async () => {
  await using d = await tempDir();
  const dir = `${d.path}/store`;
  const store = new FlatDigestStore(dir, "sha256");
  const buf = new Uint8Array(300_000);
  const ids: ObjectId[] = [];
  const sizes = [65, 4096, 4097, 100_000, 300_000];
  for (const [k, n] of sizes.entries()) {
    const data = bytes(n, k);
    buf.set(data);
    const r = store.ensureObjectBorrowed(buf.subarray(0, n));
    buf.fill(0xee); // the caller reuses its buffer at once: the object must not change
    const id = r instanceof Promise ? await r : r;
    ids.push(id);
    const path = `${dir}/${id.hex().slice(0, 2)}/${id.hex().slice(2)}`;
    assertEquals(store.pathOf(id), path);
    assertEquals(Deno.readFileSync(path), data, `object of ${n} bytes`);
    assertEquals(await fsverityTool(path), id.hex(), `digest of ${n} bytes`);
  }
  // The streaming writer gives the same name for the same bytes (and keeps the first copy).
  const before = Deno.statSync(store.pathOf(ids[3]));
  const w = store.createObjectWriter();
  const big = bytes(100_000, 3);
  await w.write(big.subarray(0, 50_000));
  await w.write(big.subarray(50_000));
  const res = await w.finish();
  assertEquals(res.id.hex(), ids[3].hex());
  assertEquals(res.alreadyPresent, true);
  // Same bytes again, by this store and by a new one on the same directory: not rewritten.
  const again = await store.ensureObject(bytes(4097, 2));
  assertEquals(again.hex(), ids[2].hex());
  store.close();
  const other = new FlatDigestStore(dir, "sha256");
  const r = other.ensureObjectBorrowed(bytes(100_000, 3));
  assertEquals((r instanceof Promise ? await r : r).hex(), ids[3].hex());
  other.close();
  const after = Deno.statSync(store.pathOf(ids[3]));
  assertEquals([after.ino, after.mtime?.getTime()], [before.ino, before.mtime?.getTime()]);
  // Exactly the objects, nothing else (no temporary files).
  assertEquals(listStore(dir), ids.map((id) => `${id.hex().slice(0, 2)}/${id.hex().slice(2)}`).sort());
});
