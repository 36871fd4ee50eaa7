// The object write thread (lib/objects/write_worker.ts, lib/linux/tmpfile_batch_thread.ts): objects
// land complete under their names, and objects already on disk are counted as present and left as they
// are (same inode, same bytes).
import { assert, assertEquals } from "./helpers/assert.ts";
import { tempDir } from "./helpers/cli.ts";
import { ObjectWriteWorker } from "../lib/objects/write_worker.ts";

function objectBytes(i: number): Uint8Array {
  const b = new Uint8Array(500 + (i % 700)).fill(i & 0xff);
  new DataView(b.buffer).setUint32(0, i);
  return b;
}

function rel(i: number): string {
  const hex = (i * 2654435761 >>> 0).toString(16).padStart(8, "0") + i.toString(16).padStart(8, "0");
  return `${hex.slice(0, 2)}/${hex.slice(2)}`;
}

async function storeAll(dir: string, ids: number[]): Promise<number> {
  const w = new ObjectWriteWorker(dir);
  try {
    for (const i of ids) {
      const data = objectBytes(i);
      while (!w.tryAdd(rel(i), data)) await w.whenFree();
    }
    await w.settle();
    return w.present;
  } finally {
    await w.terminate();
  }
}

Deno.test("write thread: new objects stored whole; copies already there counted present and left alone", async () => {
  await using t = await tempDir();
  const dir = `${t.path}/objects`;
  await Deno.mkdir(dir);
  const first = Array.from({ length: 3000 }, (_, i) => i);
  assertEquals(await storeAll(dir, first), 0);
  const inodes = new Map(first.map((i) => [i, Deno.statSync(`${dir}/${rel(i)}`).ino]));
  // 2,500 new objects first (three batches), then 2,000 of the stored ones mixed with 500 more new ones.
  const second = [
    ...Array.from({ length: 2500 }, (_, i) => 10_000 + i),
    ...Array.from({ length: 2500 }, (_, i) => (i % 5 === 4 ? 20_000 + i : i)),
  ];
  const present = await storeAll(dir, second);
  assertEquals(present, 2000);
  for (const i of new Set([...first, ...second])) {
    const p = `${dir}/${rel(i)}`;
    assertEquals(Deno.readFileSync(p), objectBytes(i), p);
    if (inodes.has(i)) assertEquals(Deno.statSync(p).ino, inodes.get(i), `${p} replaced`);
  }
  let files = 0;
  for (const d of Deno.readDirSync(dir)) for (const _ of Deno.readDirSync(`${dir}/${d.name}`)) files++;
  assert(files === 3000 + 2500 + 500, `${files} files under objects/`);
});
