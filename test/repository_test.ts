// Repository: meta.json bytes and policy, objects (checked against the C `fsverity` tool), streams and
// images with their symlink targets, gc reachability, fsck detecting real corruptions, concurrent
// writers in separate processes, a writer killed mid-object, old-format upgrade.
import { assert, assertEquals, assertMatch, assertRejects, isRoot } from "./helpers/assert.ts";
import { DENO, tempDir } from "./helpers/cli.ts";
import { Repository } from "../lib/repository/repository.ts";
import { relativeTarget } from "../lib/repository/symlinks.ts";
import { SplitStreamWriter } from "../lib/splitstream/mod.ts";
import { CONTENT_TYPE } from "../lib/oci/content_types.ts";
import type { HashAlgorithm, ObjectId } from "../lib/fsverity/object_id.ts";
import { newDirectory, newLeaf, newStat } from "../lib/tree/tree.ts";
import { writeErofs } from "../lib/erofs/writer.ts";
import { NotFoundError, PermissionError, RepositoryError } from "../lib/errors.ts";

const enc = new TextEncoder();
const LIB = new URL("../lib/", import.meta.url).pathname;

/** The default meta.json of docs/repository.md (written there on one line), pretty-printed as the file holds it. */
const SPEC_META_DEFAULT =
  `{"version": 1, "algorithm": "fsverity-sha512-12", "features": {"compatible": [], "read-only-compatible": [], "incompatible": []}, "erofs_formats": {"default": 2}}`;
function pretty(json: string): string {
  return JSON.stringify(JSON.parse(json), null, 2) + "\n";
}

/** Digest by Debian's C `fsverity digest`. */
async function cDigest(path: string, alg: HashAlgorithm): Promise<string> {
  const o = await new Deno.Command("fsverity", { args: ["digest", `--hash-alg=${alg}`, path] }).output();
  assert(o.success, new TextDecoder().decode(o.stderr));
  return new TextDecoder().decode(o.stdout).split(" ")[0].split(":")[1];
}

function bytesOf(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

async function newRepo(dir: string, alg: HashAlgorithm = "sha512"): Promise<Repository> {
  await Repository.init(`${dir}/repo`, { insecure: true, algorithm: `fsverity-${alg}-12` });
  return await Repository.open(`${dir}/repo`);
}

async function storeStreamed(repo: Repository, data: Uint8Array): Promise<ObjectId> {
  const w = repo.createObjectWriter();
  for (let o = 0; o < data.length; o += 7000) await w.write(data.subarray(o, o + 7000));
  return (await w.finish()).id;
}

/** A layer-like stream: inline header bytes then external objects. */
async function layerStream(repo: Repository, objects: Uint8Array[], named: [string, ObjectId][] = []) {
  const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_LAYER);
  const ids: ObjectId[] = [];
  for (const data of objects) {
    w.writeInline(enc.encode("header"));
    const id = await storeStreamed(repo, data);
    ids.push(id);
    w.writeExternal(id, data.length);
  }
  for (const [k, v] of named) w.addNamedRef(k, v);
  return { w, ids };
}

/** A V2 EROFS image whose one file is the external object `id`. */
function imageWith(id: ObjectId, size: number): Uint8Array {
  const root = newDirectory(newStat({ mode: 0o755 }));
  root.entries.set("f", newLeaf(newStat({ mode: 0o644 }), { type: "external", id, size }));
  return writeErofs(root, { version: 2 });
}

async function listObjects(repoPath: string): Promise<string[]> {
  const out: string[] = [];
  for await (const d of Deno.readDir(`${repoPath}/objects`)) {
    if (!d.isDirectory) {
      out.push(d.name);
      continue;
    }
    for await (const f of Deno.readDir(`${repoPath}/objects/${d.name}`)) out.push(`${d.name}/${f.name}`);
  }
  return out.sort();
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}

// ---- meta.json and init ----------------------------------------------------------------------------

Deno.test("init --insecure writes exactly the spec's default meta.json, repo dir 0700, parents created", async () => {
  await using t = await tempDir();
  const path = `${t.path}/a/b/repo`;
  const r = await Repository.init(path, { insecure: true });
  assert(r.created);
  assertEquals(await Deno.readTextFile(`${path}/meta.json`), pretty(SPEC_META_DEFAULT));
  assertEquals((await Deno.stat(path)).mode! & 0o777, 0o700);
});

Deno.test("init sha256 and V1 variants: algorithm string, v1_erofs feature, default 1", async () => {
  await using t = await tempDir();
  await Repository.init(`${t.path}/r256`, { insecure: true, algorithm: "fsverity-sha256-12" });
  const m256 = JSON.parse(await Deno.readTextFile(`${t.path}/r256/meta.json`));
  assertEquals(m256.algorithm, "fsverity-sha256-12");
  await Repository.init(`${t.path}/r1`, { insecure: true, erofsVersion: 1 });
  const text = await Deno.readTextFile(`${t.path}/r1/meta.json`);
  assertEquals(JSON.parse(text).features["read-only-compatible"], ["v1_erofs"]);
  assertEquals(JSON.parse(text).erofs_formats, { default: 1 });
  using repo = await Repository.open(`${t.path}/r1`);
  assertEquals(repo.erofsVersions(), [1]);
});

Deno.test("re-init: identical is idempotent, different config is an error, --reset-metadata starts over", async () => {
  await using t = await tempDir();
  const path = `${t.path}/repo`;
  await Repository.init(path, { insecure: true });
  const before = await Deno.readFile(`${path}/meta.json`);
  assertEquals((await Repository.init(path, { insecure: true })).created, false);
  assertEquals(await Deno.readFile(`${path}/meta.json`), before);
  await assertRejects(
    () => Repository.init(path, { insecure: true, algorithm: "fsverity-sha256-12" }),
    /already initialized with fsverity-sha512-12/,
  );
  await assertRejects(
    () => Repository.init(path, { insecure: true, erofsVersion: 1 }),
    /already initialized/,
  );
  // Give it content, then reset with another algorithm: objects/ stays, the rest goes.
  {
    using repo = await Repository.open(path);
    await repo.writeImage(enc.encode("not really an image"), "img");
  }
  const objectsBefore = await listObjects(path);
  const r = await Repository.init(path, {
    insecure: true,
    algorithm: "fsverity-sha256-12",
    resetMetadata: true,
  });
  assert(r.created);
  assertEquals(JSON.parse(await Deno.readTextFile(`${path}/meta.json`)).algorithm, "fsverity-sha256-12");
  assert(!(await exists(`${path}/images`)));
  assertEquals(await listObjects(path), objectsBefore);
});

Deno.test("secure init: fails with a hint at --insecure where the filesystem lacks fs-verity", async () => {
  await using t = await tempDir();
  try {
    await Repository.init(`${t.path}/repo`);
  } catch (e) {
    assertMatch((e as Error).message, /does not support fs-verity.*--insecure/);
    assert(!(await exists(`${t.path}/repo/meta.json`)), "no meta.json after a failed secure init");
    return;
  }
  // A verity-capable filesystem: meta.json must then carry verity (measured by the C tool).
  const o = await new Deno.Command("fsverity", { args: ["measure", `${t.path}/repo/meta.json`] }).output();
  assert(o.success, "meta.json of a secure repository has fs-verity");
});

Deno.test("open: version, algorithm, features and --hash checks with the reference messages", async () => {
  await using t = await tempDir();
  const path = `${t.path}/repo`;
  await Repository.init(path, { insecure: true });
  await assertRejects(
    () => Repository.open(path, { hash: "sha256" }),
    /repository is configured for fsverity-sha512-12 \(from meta\.json\) but --hash sha256 was specified/,
  );
  (await Repository.open(path, { hash: "sha512" })).close();
  const write = (o: unknown) => Deno.writeTextFile(`${path}/meta.json`, JSON.stringify(o));
  const base = JSON.parse(pretty(SPEC_META_DEFAULT));
  await write({ ...base, version: 2 });
  await assertRejects(() => Repository.open(path), /unsupported repository format version 2/);
  await write({ ...base, algorithm: "fsverity-sha512-13" });
  await assertRejects(() => Repository.open(path), /failed to parse meta.json/);
  await write({ ...base, features: { ...base.features, incompatible: ["from-the-future"] } });
  await assertRejects(() => Repository.open(path), /unknown incompatible features: \["from-the-future"\]/);
  await write({ ...base, features: { ...base.features, "read-only-compatible": ["ro-thing"] } });
  using repo = await Repository.open(path);
  assertEquals(repo.readOnlyReasons, ["ro-thing"]);
  await Deno.writeTextFile(`${path}/meta.json`, "{not json");
  await assertRejects(() => Repository.open(path), /failed to parse meta\.json/);
});

Deno.test("open: missing repository / meta.json, --require-verity on an insecure repo, --erofs-version", async () => {
  await using t = await tempDir();
  await assertRejects(() => Repository.open(`${t.path}/nope`), NotFoundError);
  await Deno.mkdir(`${t.path}/empty`);
  await assertRejects(() => Repository.open(`${t.path}/empty`), /must be initialized with `cfsctl init`/);
  await Repository.init(`${t.path}/repo`, { insecure: true });
  const e = await assertRejects(
    () => Repository.open(`${t.path}/repo`, { requireVerity: true }),
    RepositoryError,
  );
  assertMatch(e.message, /not initialized with fs-verity/);
  using repo = await Repository.open(`${t.path}/repo`, { erofsVersion: 0 });
  assert(repo.insecure);
  assertEquals(repo.erofsVersions(), [0]);
});

Deno.test("old-format repository: algorithm inferred from object names, meta.json written; --no-upgrade refuses", async () => {
  await using t = await tempDir();
  {
    using repo = await newRepo(t.path, "sha256");
    await repo.ensureObject(enc.encode("hello world"));
  }
  await Deno.remove(`${t.path}/repo/meta.json`);
  await assertRejects(
    () => Repository.open(`${t.path}/repo`, { noUpgrade: true }),
    /meta\.json not found in .*must be initialized with `cfsctl init`/,
  );
  await assertRejects(
    () => Repository.open(`${t.path}/repo`, { hash: "sha512" }),
    /--hash sha512 was specified/,
  );
  using repo = await Repository.open(`${t.path}/repo`);
  assertEquals(repo.alg, "sha256");
  const meta = JSON.parse(await Deno.readTextFile(`${t.path}/repo/meta.json`));
  assertEquals(meta.algorithm, "fsverity-sha256-12");
  assertEquals(meta.erofs_formats, { default: 2 });
});

// ---- objects ---------------------------------------------------------------------------------------

Deno.test("objects: ids are fs-verity digests (spec vector and C fsverity), stored under XX/rest, deduplicated", async () => {
  await using t = await tempDir();
  for (const alg of ["sha256", "sha512"] as const) {
    using repo = await newRepo(`${t.path}/${alg}`.replace(/$/, ""), alg);
    const hw = await repo.ensureObject(enc.encode("hello world"));
    if (alg === "sha256") {
      assertEquals(hw.hex(), "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64");
    }
    const big = bytesOf(1, 3 * 1024 * 1024 + 17);
    const w = repo.createObjectWriter();
    for (let o = 0; o < big.length; o += 65531) await w.write(big.subarray(o, o + 65531));
    const r = await w.finish();
    assertEquals(r.size, big.length);
    assertEquals(r.alreadyPresent, false);
    const path = repo.objectPath(r.id);
    assertEquals(path, `${t.path}/${alg}/repo/objects/${r.id.hex().slice(0, 2)}/${r.id.hex().slice(2)}`);
    assertEquals(await cDigest(path, alg), r.id.hex());
    assertEquals(await Deno.readFile(path), big);
    // Same bytes again, both ways: same id, reported as present.
    assertEquals((await repo.ensureObject(big)).hex(), r.id.hex());
    const w2 = repo.createObjectWriter();
    await w2.write(big);
    assertEquals((await w2.finish()).alreadyPresent, true);
    // Abort leaves nothing.
    const before = await listObjects(repo.path);
    const w3 = repo.createObjectWriter();
    await w3.write(bytesOf(2, 100000));
    await w3.abort();
    assertEquals(await listObjects(repo.path), before);
    assertEquals(await repo.readObject(hw), enc.encode("hello world"));
    assert(await repo.hasObject(hw));
  }
});

Deno.test("objects from borrowed buffers: stored synchronously once the repo is known insecure, checked by C fsverity", async () => {
  await using t = await tempDir();
  using repo = await newRepo(t.path, "sha512");
  const buf = new Uint8Array(200_000);
  const stored: { id: ObjectId; data: Uint8Array }[] = [];
  let direct = 0;
  for (let i = 0; i < 40; i++) {
    const n = [1, 65, 4095, 4096, 4097, 100_000, 200_000][i % 7];
    const data = bytesOf(100 + i, n);
    buf.set(data);
    const r = repo.ensureObjectBorrowed(buf.subarray(0, n));
    buf.fill(0xee); // the caller reuses its buffer at once
    const id = r instanceof Promise ? await r : (direct++, r);
    assertEquals(id.hex(), (await repo.ensureObject(data)).hex());
    stored.push({ id, data });
  }
  // The first object finds out that the filesystem has no fs-verity; later ones go the sync way.
  assert(direct >= 38, `${direct} stored synchronously`);
  for (const { id, data } of stored.slice(0, 7)) {
    assertEquals(await Deno.readFile(repo.objectPath(id)), data);
    assertEquals(await cDigest(repo.objectPath(id), "sha512"), id.hex());
  }
  // Present objects are not rewritten: same inode.
  const ino = (await Deno.stat(repo.objectPath(stored[5].id))).ino;
  assertEquals(repo.ensureObjectBorrowed(stored[5].data), stored[5].id);
  assertEquals((await Deno.stat(repo.objectPath(stored[5].id))).ino, ino);
  assertEquals((await repo.fsck()).errors, []);
});

Deno.test("objects from borrowed buffers, many: written by the worker thread, all there after settle()", async () => {
  await using t = await tempDir();
  using repo = await newRepo(t.path, "sha256");
  const buf = new Uint8Array(70_000);
  const want = new Map<string, Uint8Array>();
  for (let i = 0; i < 3000; i++) {
    const data = bytesOf(7000 + i, 65 + (i * 7919) % 69_000);
    buf.set(data);
    const r = repo.ensureObjectBorrowed(buf.subarray(0, data.length));
    buf.fill(0x5a, 0, data.length); // reused at once
    want.set((r instanceof Promise ? await r : r).hex(), data);
  }
  await repo.settle();
  assertEquals((await listObjects(repo.path)).length, want.size);
  let i = 0;
  for (const [hex, data] of want) {
    const path = `${repo.path}/objects/${hex.slice(0, 2)}/${hex.slice(2)}`;
    assertEquals(await Deno.readFile(path), data);
    if (i++ % 500 === 0) assertEquals(await cDigest(path, "sha256"), hex);
  }
  assertEquals((await repo.fsck()).errors, []);
});

Deno.test("objects without O_TMPFILE: named temporaries renamed into place, nothing left behind", async () => {
  await using t = await tempDir();
  (await newRepo(t.path, "sha256")).close();
  using repo = await Repository.open(`${t.path}/repo`, { noTmpfile: true });
  const hw = await repo.ensureObject(enc.encode("hello world"));
  assertEquals(hw.hex(), "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64");
  const big = bytesOf(5, 1_000_003);
  const r = await storeStreamed(repo, big);
  assertEquals(await cDigest(repo.objectPath(r), "sha256"), r.hex());
  assertEquals(await storeStreamed(repo, big), r);
  const w = repo.createObjectWriter();
  await w.write(bytesOf(6, 5000));
  await w.abort();
  assertEquals(await listObjects(repo.path), [hw.objectPath(), r.objectPath()].sort());
  assertEquals((await repo.fsck()).errors, []);
});

Deno.test("objects: empty object has the kernel's empty-file digest", async () => {
  await using t = await tempDir();
  using repo = await newRepo(t.path, "sha256");
  const w = repo.createObjectWriter();
  const r = await w.finish();
  assertEquals(r.id.hex(), "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95");
  assertEquals(await cDigest(repo.objectPath(r.id), "sha256"), r.id.hex());
});

Deno.test({
  name: "writes to a repository on a read-only filesystem fail with PermissionError",
  ignore: !isRoot,
  fn: async () => {
    await using t = await tempDir();
    const mnt = `${t.path}/mnt`;
    await Deno.mkdir(mnt);
    const mount = (...a: string[]) => new Deno.Command("mount", { args: a }).outputSync();
    assert(mount("-t", "tmpfs", "tmpfs", mnt).success);
    try {
      await Repository.init(`${mnt}/repo`, { insecure: true });
      assert(mount("-o", "remount,ro", mnt).success);
      using repo = await Repository.open(`${mnt}/repo`);
      await assertRejects(() => repo.ensureObject(enc.encode("x")), PermissionError);
      await assertRejects(() => repo.gc(), PermissionError);
      assertEquals((await repo.fsck()).ok, true); // reading still works
    } finally {
      new Deno.Command("umount", { args: [mnt] }).outputSync();
    }
  },
});

// ---- streams, images, symlinks ------------------------------------------------------------------

Deno.test("relative symlink targets follow docs/repository.md", () => {
  assertEquals(relativeTarget("images/abcd", "objects/ab/cd"), "../objects/ab/cd");
  assertEquals(relativeTarget("images/refs/foo", "images/abcd"), "../abcd");
  assertEquals(relativeTarget("images/refs/a/b", "images/abcd"), "../../abcd");
  assertEquals(
    relativeTarget("streams/refs/oci/tag", "streams/oci-manifest-sha256:00"),
    "../../oci-manifest-sha256:00",
  );
  assertEquals(relativeTarget("streams/refs/oci-referrers/s/a", "streams/m"), "../../../m");
});

Deno.test("streams and images: links, refs, has/open/cat, image digest check", async () => {
  await using t = await tempDir();
  using repo = await newRepo(t.path);
  const data = [bytesOf(3, 5000), bytesOf(4, 100)];
  const { w, ids } = await layerStream(repo, data);
  const sid = await repo.writeStream("oci-layer-sha256:aa", w, "my/layer");
  const root = repo.path;
  assertEquals(await Deno.readLink(`${root}/streams/oci-layer-sha256:aa`), `../objects/${sid.objectPath()}`);
  assertEquals(await Deno.readLink(`${root}/streams/refs/my/layer`), "../../oci-layer-sha256:aa");
  assertEquals((await repo.hasStream("oci-layer-sha256:aa"))?.hex(), sid.hex());
  assertEquals(await repo.hasStream("nope"), null);
  for (const name of ["oci-layer-sha256:aa", "refs/my/layer"]) {
    const reader = await repo.openStream(name, undefined, CONTENT_TYPE.OCI_LAYER);
    assertEquals(reader.objectRefs.map((i) => i.hex()), ids.map((i) => i.hex()));
  }
  const viaVerity = await repo.openStream("oci-layer-sha256:aa", sid);
  assertEquals(viaVerity.streamSize, 6 + 5000 + 6 + 100);

  const img = imageWith(ids[0], 5000);
  const iid = await repo.writeImage(img, "sys/os");
  assertEquals(await Deno.readLink(`${root}/images/${iid.hex()}`), `../objects/${iid.objectPath()}`);
  assertEquals(await Deno.readLink(`${root}/images/refs/sys/os`), `../../${iid.hex()}`);
  const opened = await repo.openImage(iid.hex());
  assertEquals(opened.id.hex(), iid.hex());
  assertEquals(opened.overlayVerity, false); // insecure repo, no kernel verity here
  assertEquals((await repo.openImage("refs/sys/os")).id.hex(), iid.hex());
  await assertRejects(() => repo.openImage("refs/none"), NotFoundError);
  // A tampered image no longer matches its name.
  const p = repo.objectPath(iid);
  const bad = await Deno.readFile(p);
  bad[bad.length - 1] ^= 1;
  await Deno.writeFile(p, bad);
  await assertRejects(() => repo.openImage(iid.hex()), /fs-verity digest is/);
  assertEquals((await repo.listImages()).map((e) => e.name), [iid.hex(), "refs/sys/os"]);
});

// ---- gc --------------------------------------------------------------------------------------------

Deno.test("gc keeps everything reachable from refs and --root, removes the rest; --dry-run deletes nothing", async () => {
  await using t = await tempDir();
  using repo = await newRepo(t.path);
  const root = repo.path;
  // Stream B (unnamed) is reachable only through a named ref of the named stream A.
  const b = await layerStream(repo, [bytesOf(10, 3000)]);
  const bId = await repo.writeStream("stream-b", b.w);
  const a = await layerStream(repo, [bytesOf(11, 4000), bytesOf(12, 5000)], [["child", bId]]);
  await repo.writeStream("stream-a", a.w, "keep-a");
  // Stream C: no ref → garbage unless given as --root.
  const c = await layerStream(repo, [bytesOf(13, 6000)]);
  const cId = await repo.writeStream("stream-c", c.w);
  // Image I1 named (keeps its external object), image I2 unnamed.
  const ext1 = await repo.ensureObject(bytesOf(14, 7000));
  const i1 = await repo.writeImage(imageWith(ext1, 7000), "img1");
  const ext2 = await repo.ensureObject(bytesOf(15, 8000));
  const i2 = await repo.writeImage(imageWith(ext2, 8000));
  const loose = await repo.ensureObject(bytesOf(16, 9000));

  const all = await listObjects(root);
  const dry = await repo.gc({ dryRun: true });
  assertEquals(await listObjects(root), all, "dry run deletes nothing");
  const garbage = [...c.ids, cId, i2, ext2, loose];
  assertEquals(dry.objectsRemoved, garbage.length);
  assertEquals(
    dry.bytesRemoved,
    (await Promise.all(garbage.map((g) => Deno.stat(repo.objectPath(g))))).reduce(
      (s, st) => s + st.size,
      0,
    ),
  );
  assertEquals([dry.imagesPruned, dry.streamsPruned], [1, 1]);

  // --root stream-c keeps C and its object.
  const withRoot = await repo.gc({ roots: ["stream-c"], dryRun: true });
  assertEquals(withRoot.objectsRemoved, 3);

  const res = await repo.gc();
  assertEquals([res.objectsRemoved, res.bytesRemoved, res.imagesPruned, res.streamsPruned], [
    dry.objectsRemoved,
    dry.bytesRemoved,
    1,
    1,
  ]);
  const left = await listObjects(root);
  const keep = [...a.ids, ...b.ids, bId, i1, ext1, (await repo.hasStream("stream-a"))!];
  assertEquals(left, keep.map((i) => i.objectPath()).sort());
  assert(!(await exists(`${root}/streams/stream-c`)));
  assert(!(await exists(`${root}/images/${i2.hex()}`)));
  assert(await exists(`${root}/images/${i1.hex()}`));
  assertEquals((await repo.fsck()).ok, true);
  // Idempotent.
  assertEquals((await repo.gc()).objectsRemoved, 0);
});

// ---- fsck ------------------------------------------------------------------------------------------

/** A repository with a named stream, a named image and its external object. */
async function populated(dir: string) {
  const repo = await newRepo(dir);
  const s = await layerStream(repo, [bytesOf(20, 5000), bytesOf(21, 6000)]);
  const sid = await repo.writeStream("layer", s.w, "layer-ref");
  const ext = await repo.ensureObject(bytesOf(22, 7000));
  const iid = await repo.writeImage(imageWith(ext, 7000), "img");
  return { repo, s, sid, ext, iid };
}

async function expectFsck(repo: Repository, code: RegExp) {
  const r = await repo.fsck();
  assertEquals(r.ok, false);
  assert(r.errors.some((e) => code.test(e)), `expected ${code} in ${JSON.stringify(r.errors)}`);
  return r;
}

Deno.test("fsck: clean repository is ok", async () => {
  await using t = await tempDir();
  const { repo } = await populated(t.path);
  const r = await repo.fsck();
  assertEquals(r.errors, []);
  assertEquals([r.objectsChecked, r.streamsChecked, r.imagesChecked], [5, 1, 1]); // 2 + stream + ext + image
  repo.close();
});

Deno.test("fsck: flipped byte in an object → object-digest-mismatch", async () => {
  await using t = await tempDir();
  const { repo, s } = await populated(t.path);
  const p = repo.objectPath(s.ids[0]);
  const b = await Deno.readFile(p);
  b[100] ^= 0x40;
  await Deno.writeFile(p, b);
  const r = await expectFsck(
    repo,
    new RegExp(`^fsck: object-digest-mismatch: objects/${s.ids[0].objectPath()}: measured [0-9a-f]{128}$`),
  );
  assertEquals(r.objectsCorrupted, 1);
  repo.close();
});

Deno.test("fsck: objects of every size around its read chunks check clean; one byte longer or shorter does not", async () => {
  await using t = await tempDir();
  const repo = await newRepo(t.path, "sha256");
  // fsck reads objects in 256 KiB chunks, stopping at the size fstat gave.
  const sizes = [1, 4096, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 3 * 256 * 1024 + 17, (1 << 20) + 5];
  const ids = [];
  for (const [i, n] of sizes.entries()) ids.push(await storeStreamed(repo, bytesOf(40 + i, n)));
  const clean = await repo.fsck();
  assertEquals(clean.errors, []);
  assertEquals(clean.objectsChecked, sizes.length);
  const longer = repo.objectPath(ids[3]);
  await Deno.writeFile(longer, new Uint8Array([7]), { append: true });
  const shorter = repo.objectPath(ids[6]);
  await Deno.truncate(shorter, sizes[6] - 1);
  const r = await repo.fsck();
  assertEquals(r.objectsCorrupted, 2, JSON.stringify(r.errors));
  for (const id of [ids[3], ids[6]]) {
    assert(r.errors.some((e) => e.startsWith(`fsck: object-digest-mismatch: objects/${id.objectPath()}:`)));
  }
  repo.close();
});

Deno.test("fsck: missing objects → missing-object-ref, image-missing-object", async () => {
  await using t = await tempDir();
  const { repo, s, ext } = await populated(t.path);
  await Deno.remove(repo.objectPath(s.ids[1]));
  await Deno.remove(repo.objectPath(ext));
  const r = await expectFsck(
    repo,
    new RegExp(`^fsck: missing-object-ref: streams/layer: ${s.ids[1].toId()}$`),
  );
  await expectFsck(repo, new RegExp(`^fsck: image-missing-object: images/[0-9a-f]+: ${ext.toId()}$`));
  assertEquals(r.missingObjects, 2);
  repo.close();
});

Deno.test("fsck: broken symlink, non-symlink in streams/, file in refs/ → their codes", async () => {
  await using t = await tempDir();
  const { repo, sid } = await populated(t.path);
  await Deno.remove(repo.objectPath(sid)); // streams/layer now dangles, and so does its ref
  await Deno.writeTextFile(`${repo.path}/streams/plain-file`, "x");
  await Deno.writeTextFile(`${repo.path}/images/refs/stray`, "x");
  const r = await expectFsck(repo, /^fsck: broken-symlink: streams\/layer$/);
  await expectFsck(repo, /^fsck: entry-not-symlink: streams\/plain-file$/);
  await expectFsck(repo, /^fsck: unexpected-file-type: images\/refs\/stray: regular file$/);
  assertEquals(r.brokenLinks, 2); // streams/layer and streams/refs/layer-ref
  repo.close();
});

Deno.test("fsck: bad object name, corrupt stream and image, meta.json problems → their codes", async () => {
  await using t = await tempDir();
  const { repo, sid, iid } = await populated(t.path);
  await Deno.writeTextFile(`${repo.path}/objects/ab/xyz`, "x").catch(async () => {
    await Deno.mkdir(`${repo.path}/objects/ab`);
    await Deno.writeTextFile(`${repo.path}/objects/ab/xyz`, "x");
  });
  await expectFsck(repo, /^fsck: object-invalid-name: objects\/ab\/xyz: /);
  // Break the stream object in place (its links stay): not a splitstream any more.
  await Deno.writeTextFile(repo.objectPath(sid), "garbage");
  await expectFsck(repo, /^fsck: stream-open-failed: streams\/layer: /);
  await Deno.writeTextFile(repo.objectPath(iid), "garbage");
  await expectFsck(repo, new RegExp(`^fsck: image-invalid: images/${iid.hex()}: `));
  // meta.json rewritten under an open repository: wrong algorithm, then unparsable.
  const meta = await Deno.readTextFile(`${repo.path}/meta.json`);
  await Deno.writeTextFile(`${repo.path}/meta.json`, meta.replace("sha512", "sha256"));
  await expectFsck(
    repo,
    /^fsck: metadata-algorithm-mismatch: meta\.json: expected fsverity-sha256-12, repository opened as fsverity-sha512-12$/,
  );
  await Deno.writeTextFile(`${repo.path}/meta.json`, "{");
  const r = await expectFsck(repo, /^fsck: metadata-parse-failed: meta\.json: /);
  assertEquals(r.metadata, "error");
  repo.close();
});

// ---- processes -------------------------------------------------------------------------------------

const CHILD_WRITER = `
import { Repository } from "${LIB}repository/repository.ts";
import { SplitStreamWriter } from "${LIB}splitstream/mod.ts";
import { CONTENT_TYPE } from "${LIB}oci/content_types.ts";
const [path, mode] = Deno.args;
const repo = await Repository.open(path);
function bytesOf(seed, n) {
  const b = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}
if (mode === "many") {
  const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_LAYER);
  const ids = [];
  for (let i = 0; i < 150; i++) {
    const data = bytesOf(i, 20000 + i * 37);
    const ow = repo.createObjectWriter();
    for (let o = 0; o < data.length; o += 4096) await ow.write(data.subarray(o, o + 4096));
    const r = await ow.finish();
    ids.push(r.id.hex());
    w.writeInline(new TextEncoder().encode("h" + i));
    w.writeExternal(r.id, data.length);
    ids.push((await repo.ensureObject(bytesOf(1000 + i, 3000))).hex());
  }
  const sid = await repo.writeStream("shared-stream", w, "shared");
  console.log(JSON.stringify({ ids, sid: sid.hex() }));
} else {
  // Slow endless object: the parent kills us in the middle.
  const ow = repo.createObjectWriter();
  const chunk = bytesOf(7, 1 << 20);
  await ow.write(chunk);
  console.log("started");
  for (;;) {
    await ow.write(chunk);
    await new Promise((r) => setTimeout(r, 5));
  }
}
`;

async function writeChildScript(dir: string): Promise<string> {
  const p = `${dir}/child.js`;
  await Deno.writeTextFile(p, CHILD_WRITER);
  return p;
}

Deno.test("two processes storing the same objects and stream at once agree and leave a clean repository", async () => {
  await using t = await tempDir();
  (await newRepo(t.path)).close();
  const script = await writeChildScript(t.path);
  const run = () =>
    new Deno.Command(DENO, { args: ["run", "-A", script, `${t.path}/repo`, "many"] }).output();
  const [a, b] = await Promise.all([run(), run()]);
  assert(a.success, new TextDecoder().decode(a.stderr));
  assert(b.success, new TextDecoder().decode(b.stderr));
  const ra = JSON.parse(new TextDecoder().decode(a.stdout));
  const rb = JSON.parse(new TextDecoder().decode(b.stdout));
  assertEquals(ra, rb);
  using repo = await Repository.open(`${t.path}/repo`);
  const r = await repo.fsck();
  assertEquals(r.errors, []);
  assertEquals(r.objectsChecked, 300 + 1);
  assertEquals((await repo.hasStream("shared-stream"))?.hex(), ra.sid);
});

Deno.test("a writer killed by SIGKILL mid-object leaves no visible partial object and fsck stays clean", async () => {
  await using t = await tempDir();
  (await newRepo(t.path)).close();
  const script = await writeChildScript(t.path);
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", script, `${t.path}/repo`, "slow"],
    stdout: "piped",
  })
    .spawn();
  const reader = child.stdout.getReader();
  let seen = "";
  while (!seen.includes("started")) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += new TextDecoder().decode(value);
  }
  assert(seen.includes("started"), "child started writing");
  await new Promise((r) => setTimeout(r, 300)); // several more MiB into the object
  child.kill("SIGKILL");
  reader.releaseLock();
  await child.stdout.cancel();
  const st = await child.status;
  assertEquals(st.signal, "SIGKILL");
  assertEquals(await listObjects(`${t.path}/repo`), [], "nothing visible under objects/");
  using repo = await Repository.open(`${t.path}/repo`);
  assertEquals((await repo.fsck()).errors, []);
});

Deno.test("gc waits for the exclusive lock while another process holds the repository open", async () => {
  await using t = await tempDir();
  (await newRepo(t.path)).close();
  const holder = new Deno.Command(DENO, {
    args: [
      "eval",
      `import { Repository } from "${LIB}repository/repository.ts";
       const r = await Repository.open(${JSON.stringify(`${t.path}/repo`)});
       console.log("open"); setInterval(() => r.path, 1000);`,
    ],
    stdout: "piped",
  }).spawn();
  const reader = holder.stdout.getReader();
  await reader.read(); // "open"
  using repo = await Repository.open(`${t.path}/repo`);
  const gcProc = new Deno.Command(DENO, {
    args: [
      "eval",
      `import { Repository } from "${LIB}repository/repository.ts";
       const r = await Repository.open(${
        JSON.stringify(`${t.path}/repo`)
      }); await r.gc(); console.log("done");`,
    ],
    stdout: "piped",
  }).spawn();
  let finished = false;
  const out = gcProc.output().then((o) => {
    finished = true;
    return o;
  });
  await new Promise((r) => setTimeout(r, 1500));
  assert(!finished, "gc must block while other processes hold the shared lock");
  holder.kill("SIGKILL");
  reader.releaseLock();
  await holder.stdout.cancel();
  await holder.status;
  repo.close();
  const o = await out;
  assertEquals(new TextDecoder().decode(o.stdout).trim(), "done");
});
