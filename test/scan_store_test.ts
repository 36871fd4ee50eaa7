// scanDirectory with object stores that write in the background: every object the returned tree
// refers to is on disk when scanDirectory returns (the scan waits for the store's settle()), with a
// real repository (its writes move to a worker thread after a few hundred objects) and with the
// flat digest store of mkcomposefs.
import { assert, assertEquals } from "./helpers/assert.ts";
import { tempDir } from "./helpers/cli.ts";
import { scanDirectory } from "../lib/tree/scan.ts";
import { FlatDigestStore } from "../lib/objects/digest_store.ts";
import { Repository } from "../lib/repository/repository.ts";
import type { Directory, Leaf } from "../lib/tree/tree.ts";
import type { ObjectStore } from "../lib/objects/store.ts";
import { fsverityDigest } from "../lib/fsverity/hasher.ts";
import type { ObjectId } from "../lib/fsverity/object_id.ts";

/** 1200 files of 65..3000 bytes (distinct contents) in 12 directories. */
async function smallFiles(dir: string): Promise<void> {
  for (let d = 0; d < 12; d++) {
    await Deno.mkdir(`${dir}/d${d}`, { recursive: true });
    for (let f = 0; f < 100; f++) {
      const n = 65 + ((d * 100 + f) * 37) % 2936;
      const data = new Uint8Array(n).map((_, i) => (i * 13 + d * 7 + f) & 0xff);
      data[0] = d;
      data[1] = f;
      await Deno.writeFile(`${dir}/d${d}/f${f}`, data);
    }
  }
}

function externals(root: Directory): { id: ObjectId; size: number }[] {
  const out: { id: ObjectId; size: number }[] = [];
  const walk = (d: Directory) => {
    for (const n of d.entries.values()) {
      if (n.kind === "dir") walk(n);
      else if ((n as Leaf).content.type === "external") out.push(n.content as { id: ObjectId; size: number });
    }
  };
  walk(root);
  return out;
}

async function checkStored(root: Directory, objectPath: (id: ObjectId) => string): Promise<void> {
  const ext = externals(root);
  assertEquals(ext.length, 1200);
  for (const { id, size } of ext) {
    // Read right away, in this process: the object must be complete now.
    const data = await Deno.readFile(objectPath(id));
    assertEquals(data.length, size);
    assertEquals(fsverityDigest(data, "sha256").hex(), id.hex());
  }
}

Deno.test("scan into a repository: every object is on disk when the scan returns", async () => {
  await using d = await tempDir();
  await smallFiles(`${d.path}/src`);
  await Repository.init(`${d.path}/repo`, { algorithm: "fsverity-sha256-12", insecure: true });
  using repo = await Repository.open(`${d.path}/repo`);
  const root = await scanDirectory(`${d.path}/src`, { alg: "sha256", store: repo });
  await checkStored(root, (id) => `${d.path}/repo/objects/${id.objectPath()}`);
});

Deno.test("scan into a store: the write thread keeps taking objects though the walk never yields", async () => {
  // The walk reads page-cached files synchronously and never turns the event loop; the write thread
  // must still get its batch buffers back (shared state, not reply messages). Its 4 × 1 MiB would
  // otherwise carry at most 1024 of these 4 KiB files, and this thread would store all the rest.
  await using d = await tempDir();
  const files = 6000;
  for (let dir = 0; dir < 10; dir++) {
    await Deno.mkdir(`${d.path}/src/d${dir}`, { recursive: true });
    for (let f = 0; f < files / 10; f++) {
      const data = new Uint8Array(4096).fill(f & 0xff);
      new DataView(data.buffer).setUint32(0, dir * 100_000 + f);
      await Deno.writeFile(`${d.path}/src/d${dir}/f${f}`, data);
    }
  }
  const store = new FlatDigestStore(`${d.path}/store`, "sha256");
  try {
    const root = await scanDirectory(`${d.path}/src`, { alg: "sha256", store });
    const { written, threaded } = store.counts();
    assertEquals(written, files);
    assert(threaded > 1024, `the write thread stored ${threaded} of ${files} objects`);
    assertEquals(externals(root).length, files);
    for (const { id } of externals(root).slice(-50)) {
      assertEquals(fsverityDigest(await Deno.readFile(store.pathOf(id)), "sha256").hex(), id.hex());
    }
  } finally {
    store.close();
  }
});

Deno.test("scan into the flat digest store: every object is on disk when the scan returns", async () => {
  await using d = await tempDir();
  await smallFiles(`${d.path}/src`);
  const store = new FlatDigestStore(`${d.path}/store`, "sha256");
  try {
    const root = await scanDirectory(`${d.path}/src`, { alg: "sha256", store });
    await checkStored(root, (id) => store.pathOf(id));
  } finally {
    store.close();
  }
});

Deno.test("scan waits for settle() after the last object it hands out", async () => {
  await using d = await tempDir();
  await smallFiles(`${d.path}/src`);
  const events: string[] = [];
  const store: ObjectStore = {
    alg: "sha256",
    ensureObject: (data) => Promise.resolve(fsverityDigest(data, "sha256")),
    ensureObjectBorrowed: (data) => {
      events.push("object");
      return fsverityDigest(data, "sha256");
    },
    settle: async () => {
      await new Promise((r) => setTimeout(r, 10));
      events.push("settled");
    },
    createObjectWriter: () => {
      throw new Error("no large files here");
    },
  };
  await scanDirectory(`${d.path}/src`, { alg: "sha256", store });
  assertEquals(events.length, 1201);
  assert(events.lastIndexOf("object") < events.indexOf("settled"), "settle() after the last object");
});
