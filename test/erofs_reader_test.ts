// Composefs EROFS reader (docs/erofs.md): round trips through the writer on seeded random trees (checked
// by Debian's fsck.erofs too), strict rejection of crafted images, fsck_metadata invariants, and a
// mutation campaign on valid images that must only ever produce a FormatError or a valid tree.
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { parseDumpfileSync } from "../lib/dumpfile/parse.ts";
import { dumpfileBytes } from "../lib/dumpfile/write.ts";
import { FormatError } from "../lib/errors.ts";
import { ObjectId } from "../lib/fsverity/object_id.ts";
import { type Directory, newDirectory, newLeaf, newStat } from "../lib/tree/tree.ts";
import {
  CFS_HDR,
  DIRENT,
  INODE_COMPACT,
  INODE_EXTENDED,
  SB,
  SUPERBLOCK_OFFSET,
} from "../lib/erofs/format.ts";
import { writeErofs } from "../lib/erofs/writer.ts";
import {
  collectObjects,
  fsckMetadata,
  objectsOfTree,
  readErofs,
  readErofsHeader,
  readErofsWithHeader,
} from "../lib/erofs/reader.ts";
import { ErofsImage, type RawDirent, type RawInode } from "../lib/erofs/read_image.ts";
import { bstrToBytes, equalBytes, utf8ToBstr } from "../lib/util/bytes.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { randomTree, Rng } from "./helpers/random_tree.ts";
import { flattenTree } from "./helpers/tree_compare.ts";

const VERSIONS = [0, 1, 2] as const;

function roundTrip(tree: Directory, version: 0 | 1 | 2): { image: Uint8Array; back: Directory } {
  const image = writeErofs(tree, { version });
  return { image, back: readErofs(image) };
}

function assertSameTree(back: Directory, tree: Directory, version: 0 | 1 | 2, what: string): void {
  // V2 inodes store whole seconds; epoch 1 keeps nanoseconds (compact inodes share build_time,
  // which the writer only uses when it equals the inode's mtime).
  const o = { dropNsec: version === 2 };
  assertEquals(flattenTree(back, o), flattenTree(tree, o), what);
}

// ---------------------------------------------------------------------------------------------
// Helpers to find and patch structures inside a valid image

interface Located {
  inode: RawInode;
  /** The dirent naming it in its parent (undefined for the root). */
  dirent?: RawDirent;
}

/** Finds an inode by path with the reader's own primitives (a fresh ErofsImage per call). */
function locate(image: Uint8Array, path: string): Located {
  const img = new ErofsImage(image);
  let inode = img.inode(img.header.rootNid);
  let dirent: RawDirent | undefined;
  for (const part of path.split("/").filter((p) => p)) {
    dirent = img.dirents(inode).find((e) => e.name === part);
    if (!dirent) throw new Error(`test: ${path} not found`);
    inode = img.inode(dirent.nid);
  }
  return { inode, dirent };
}

function patched(image: Uint8Array, edit: (b: Uint8Array, v: DataView) => void): Uint8Array {
  const b = image.slice();
  edit(b, new DataView(b.buffer));
  return b;
}

function nlinkOffset(inode: RawInode): number {
  return inode.offset + (inode.extended ? INODE_EXTENDED.nlink : INODE_COMPACT.nlink);
}
function sizeOffset(inode: RawInode): number {
  return inode.offset + (inode.extended ? INODE_EXTENDED.size : INODE_COMPACT.size);
}

function expectFormatError(fn: () => unknown, re: RegExp): void {
  const e = assertThrows(fn, FormatError);
  assert(re.test(e.message), `expected ${re}, got: ${e.message}`);
}

function leafTree(entries: Record<string, Parameters<typeof newLeaf>[1]>): Directory {
  const root = newDirectory(newStat({ mode: 0o755, mtimeSec: 100 }));
  for (const [name, content] of Object.entries(entries)) {
    root.entries.set(name, newLeaf(newStat({ mode: 0o644, mtimeSec: 100 }), content));
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// Round trips

Deno.test("round trip: pinned spec trees (empty, simple) in all formats", () => {
  const simple = () => {
    const root = newDirectory(newStat({ mode: 0o755 }));
    const s = () => newStat({ mode: 0 });
    root.entries.set("fifo", newLeaf(s(), { type: "fifo" }));
    root.entries.set("regular-inline", newLeaf(s(), { type: "inline", data: bstrToBytes("hihi") }));
    root.entries.set(
      "regular-external",
      newLeaf(s(), {
        type: "external",
        id: new ObjectId("sha256", new Uint8Array(32).fill(0x5a)),
        size: 1234,
      }),
    );
    root.entries.set("chrdev", newLeaf(s(), { type: "chardev", rdev: 123 }));
    root.entries.set("blkdev", newLeaf(s(), { type: "blockdev", rdev: 123 }));
    root.entries.set("socket", newLeaf(s(), { type: "socket" }));
    root.entries.set("symlink", newLeaf(s(), { type: "symlink", target: "/target" }));
    return root;
  };
  for (const v of VERSIONS) {
    for (
      const [name, tree] of [["empty", newDirectory(newStat({ mode: 0o755 }))], ["simple", simple()]] as const
    ) {
      const { image, back } = roundTrip(tree, v);
      assertSameTree(back, tree, v, `${name} V${v}`);
      fsckMetadata(image);
      assertEquals(readErofsHeader(image).composefsVersion, v);
    }
  }
});

Deno.test("round trip: seeded random trees, all formats, fsck_metadata clean", () => {
  for (const v of VERSIONS) {
    for (let seed = 1; seed <= 12; seed++) {
      const tree = randomTree(seed * 7919 + v, { entries: seed % 4 === 0 ? 900 : 250, maxDepth: 8 });
      const { image, back } = roundTrip(tree, v);
      assertSameTree(back, tree, v, `seed ${seed} V${v}`);
      fsckMetadata(image);
      const { header } = readErofsWithHeader(image);
      assertEquals(header.epoch, v === 2 ? 2 : 1);
    }
  }
});

Deno.test("round trip: sha512 external files; metacopy algorithm is enforced when asked", () => {
  const tree = randomTree(4242, { entries: 150, alg: "sha512" });
  for (const v of VERSIONS) {
    const { image, back } = roundTrip(tree, v);
    assertSameTree(back, tree, v, `sha512 V${v}`);
    readErofs(image, { alg: "sha512" });
    expectFormatError(() => readErofs(image, { alg: "sha256" }), /sha512 digest where sha256 is expected/);
  }
});

Deno.test("round trip: hard links are one Leaf object, across directories", () => {
  const root = newDirectory(newStat({ mode: 0o755 }));
  const a = newDirectory(newStat({ mode: 0o755 }));
  const b = newDirectory(newStat({ mode: 0o755 }));
  root.entries.set("a", a);
  root.entries.set("b", b);
  const leaf = newLeaf(newStat({ mode: 0o644, xattrs: new Map([["user.k", bstrToBytes("v")]]) }), {
    type: "inline",
    data: bstrToBytes("shared"),
  });
  a.entries.set("x", leaf);
  b.entries.set("y", leaf);
  root.entries.set("z", leaf);
  for (const v of VERSIONS) {
    const back = readErofs(writeErofs(root, { version: v }));
    const x = (back.entries.get("a") as Directory).entries.get("x");
    const y = (back.entries.get("b") as Directory).entries.get("y");
    assert(x !== undefined && x === y && x === back.entries.get("z"), `V${v}: hard links must share a Leaf`);
  }
});

Deno.test("round trip: directories spilling over many blocks, names up to 255 bytes, non-UTF-8", () => {
  const root = newDirectory(newStat({ mode: 0o755 }));
  const big = newDirectory(newStat({ mode: 0o755 }));
  root.entries.set("big", big);
  for (let i = 0; i < 300; i++) {
    const name = String.fromCharCode(0x80 + (i % 120)) + i.toString().padStart(3, "0") + "n".repeat(i % 252);
    big.entries.set(name, newLeaf(newStat({ mode: 0o600 }), { type: "fifo" }));
  }
  for (const v of VERSIONS) {
    const { image, back } = roundTrip(root, v);
    assertSameTree(back, root, v, `V${v}`);
    const { inode } = locate(image, "big");
    assert(inode.size > 4 * 4096, `directory should span many blocks (size ${inode.size})`);
  }
});

Deno.test("round trip: symlinks of every length near block boundaries", () => {
  for (const v of VERSIONS) {
    const root = newDirectory(newStat({ mode: 0o755 }));
    for (let len = 900; len <= 1024; len += 3) {
      root.entries.set(
        `l${len}`,
        newLeaf(newStat({ mode: 0o777 }), { type: "symlink", target: "t".repeat(len) }),
      );
    }
    root.entries.set("max", newLeaf(newStat({ mode: 0o777 }), { type: "symlink", target: "m".repeat(4095) }));
    const { image, back } = roundTrip(root, v);
    assertSameTree(back, root, v, `V${v}`);
    fsckMetadata(image);
  }
});

Deno.test("round trip: compact inodes take the superblock build_time (negative, nanoseconds)", () => {
  const root = newDirectory(newStat({ mode: 0o755, mtimeSec: -5, mtimeNsec: 7 }));
  root.entries.set("f", newLeaf(newStat({ mode: 0o644, mtimeSec: -5, mtimeNsec: 7 }), { type: "fifo" }));
  root.entries.set(
    "g",
    newLeaf(newStat({ mode: 0o644, mtimeSec: 3, mtimeNsec: 999_999_999 }), { type: "fifo" }),
  );
  for (const v of [0, 1] as const) {
    const image = writeErofs(root, { version: v });
    assert(!locate(image, "f").inode.extended, "f should be a compact inode");
    assertEquals(readErofsHeader(image).buildTimeSec, -5);
    assertSameTree(readErofs(image), root, v, `V${v}`);
  }
});

Deno.test("user whiteouts: V1 escapes and restores them; stub table skipped; hex-named user files kept", () => {
  const root = newDirectory(newStat({ mode: 0o755 }));
  const sub = newDirectory(newStat({ mode: 0o755 }));
  root.entries.set("sub", sub);
  sub.entries.set("gone", newLeaf(newStat({ mode: 0o644 }), { type: "chardev", rdev: 0 }));
  root.entries.set("ab", newLeaf(newStat({ mode: 0o644 }), { type: "inline", data: bstrToBytes("x") }));
  root.entries.set("whiteout", newLeaf(newStat({ mode: 0o644 }), { type: "chardev", rdev: 0 }));
  for (const v of VERSIONS) {
    const { image, back } = roundTrip(root, v);
    assertSameTree(back, root, v, `V${v}`);
    fsckMetadata(image);
    if (v !== 2) assertEquals(locate(image, "sub/gone").inode.type, 0o100000, "escaped to a regular file");
  }
});

Deno.test("overlay xattrs: user trusted.overlay.* and user.overlay.* round-trip; only the writer's markers are dropped", () => {
  const x = (pairs: [string, string][]) => new Map(pairs.map(([k, v]) => [k, bstrToBytes(v)]));
  const root = newDirectory(newStat({ mode: 0o755 }));
  root.entries.set(
    "f",
    newLeaf(
      newStat({
        mode: 0o644,
        xattrs: x([["trusted.overlay.redirect", "/foo\n"], ["trusted.overlay.foo", "1"]]),
      }),
      {
        type: "inline",
        data: new Uint8Array(0),
      },
    ),
  );
  const keep = newLeaf(newStat({ mode: 0o644, xattrs: x([["user.overlay.opaque", "y"], ["user.a", "b"]]) }), {
    type: "fifo",
  });
  root.entries.set("g", keep);
  for (const v of VERSIONS) {
    const back = readErofs(writeErofs(root, { version: v }));
    const f = back.entries.get("f")!;
    assertEquals([...f.stat.xattrs.keys()].sort(), ["trusted.overlay.foo", "trusted.overlay.redirect"]);
    assertEquals(
      [...back.entries.get("g")!.stat.xattrs.keys()].sort(),
      ["user.a", "user.overlay.opaque"],
      "user.overlay.opaque is the writer's only on a directory holding whiteouts (issue 11.12)",
    );
    assertEquals([...back.stat.xattrs.keys()], [], "root's trusted.overlay.opaque is dropped");
  }
});

Deno.test("fsck.erofs (erofs-utils) accepts written images", async () => {
  const which = new Deno.Command("sh", { args: ["-c", "command -v fsck.erofs"], stdout: "null" })
    .outputSync();
  if (which.code !== 0) throw new Error("fsck.erofs is not installed (Debian erofs-utils)");
  const dir = await Deno.makeTempDir({ prefix: "erofs-reader-" });
  try {
    for (const v of VERSIONS) {
      for (const seed of [3, 11, 19]) {
        const image = writeErofs(randomTree(seed * 31 + v, { entries: 400 }), { version: v });
        const path = `${dir}/s${seed}-v${v}.img`;
        await Deno.writeFile(path, image);
        const out = await new Deno.Command("fsck.erofs", { args: [path], stdout: "piped", stderr: "piped" })
          .output();
        assertEquals(out.code, 0, `fsck.erofs V${v} seed ${seed}: ${new TextDecoder().decode(out.stderr)}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Images of the C mkcomposefs test vectors (our writer is byte-identical to C on them: checked here
// by the sha256 the C project pins, so these are real C images)

const VECTORS = new URL("../../shared/vectors/composefs-c/", import.meta.url);
const vectorNames = [...Deno.readDirSync(VECTORS)].map((e) => e.name)
  .filter((n) => n.endsWith(".sha256")).map((n) => n.slice(0, -".sha256".length)).sort();

// The 64k-entry CentOS tree takes ~15 s here (parse, write, read, compare): only with CFS_SLOW_TESTS=1.
const slow = Deno.env.get("CFS_SLOW_TESTS") === "1";
for (const name of vectorNames) {
  Deno.test({
    name: `C vector ${name}: the C image reads back as the dumpfile`,
    ignore: name.startsWith("cs9-x86_64-developer") && !slow,
  }, async () => {
    const raw = await Deno.readFile(new URL(name, VECTORS));
    const text = name.endsWith(".gz") ? gunzipSync(raw) : raw;
    let version: 0 | 1 = 0, maxVersion: 0 | 1 = 1;
    try {
      version = maxVersion = Number((await Deno.readTextFile(new URL(name + ".version", VECTORS))).trim()) as
        | 0
        | 1;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const tree = parseDumpfileSync(text);
    const image = writeErofs(tree, { version, maxVersion });
    const pinned = (await Deno.readTextFile(new URL(name + ".sha256", VECTORS))).trim().split(/\s+/)[0];
    assertEquals(createHash("sha256").update(image).digest("hex"), pinned, "image is the C image");
    const back = readErofs(image);
    assertEquals(flattenTree(back), flattenTree(tree));
    // Same through the dumpfile writer (hard links by first path: the image keeps no canonical path).
    const stripCanonical = (d: Directory) => {
      for (const n of d.entries.values()) n.kind === "dir" ? stripCanonical(n) : delete n.canonicalPath;
    };
    stripCanonical(tree);
    assert(
      equalBytes(dumpfileBytes(back), dumpfileBytes(tree)),
      "dumpfile of the image = the input dumpfile",
    );
    collectObjects(image, "sha256"); // includes fsck_metadata
  });
}

// ---------------------------------------------------------------------------------------------
// collectObjects

Deno.test("collectObjects: metacopy digests and object-path redirects, unique and sorted", () => {
  const id = (n: number) => new ObjectId("sha256", new Uint8Array(32).fill(n));
  const root = newDirectory(newStat({ mode: 0o755 }));
  const sub = newDirectory(newStat({ mode: 0o755 }));
  root.entries.set("sub", sub);
  root.entries.set("a", newLeaf(newStat(), { type: "external", id: id(9), size: 100 }));
  sub.entries.set("b", newLeaf(newStat(), { type: "external", id: id(9), size: 100 }));
  sub.entries.set(
    "c",
    newLeaf(newStat(), { type: "external", id: id(1), size: 100, payload: "not/an/object" }),
  );
  sub.entries.set(
    "d",
    newLeaf(newStat(), { type: "external-noverity", size: 5, payload: id(4).objectPath() }),
  );
  sub.entries.set("e", newLeaf(newStat(), { type: "inline", data: new Uint8Array(10) }));
  for (const v of VERSIONS) {
    const image = writeErofs(root, { version: v });
    const ids = collectObjects(image).map((o) => o.toId());
    assertEquals(ids, [id(1), id(4), id(9)].map((o) => o.toId()));
    assertEquals(objectsOfTree(readErofs(image)).map((o) => o.toId()), ids);
  }
});

// ---------------------------------------------------------------------------------------------
// Strict rejection of crafted images

Deno.test("strict: header and superblock restrictions", () => {
  const image = writeErofs(leafTree({ f: { type: "fifo" } }), { version: 2 });
  const sb = SUPERBLOCK_OFFSET;
  const cases: [string, (v: DataView) => void, RegExp][] = [
    ["composefs magic", (v) => v.setUint32(CFS_HDR.magic, 0x12345678, true), /bad composefs magic/],
    ["header version", (v) => v.setUint32(CFS_HDR.version, 2, true), /header version 2/],
    ["composefs_version", (v) => v.setUint32(CFS_HDR.composefsVersion, 3, true), /composefs_version 3/],
    ["EROFS magic", (v) => v.setUint32(sb + SB.magic, 0, true), /bad EROFS magic/],
    ["blkszbits", (v) => v.setUint8(sb + SB.blkszbits, 13), /blkszbits 13/],
    ["compat", (v) => v.setUint32(sb + SB.featureCompat, 6 | 8, true), /feature_compat/],
    ["incompat", (v) => v.setUint32(sb + SB.featureIncompat, 0x1, true), /feature_incompat/],
    ["compression", (v) => v.setUint16(sb + SB.availableComprAlgs, 1, true), /compression/],
    ["extra devices", (v) => v.setUint16(sb + SB.extraDevices, 1, true), /extra_devices/],
    ["extslots", (v) => v.setUint8(sb + SB.extslots, 1), /extslots/],
    ["packed_nid", (v) => v.setUint32(sb + SB.packedNid + 4, 1, true), /packed_nid/],
    ["meta_blkaddr", (v) => v.setUint32(sb + SB.metaBlkaddr, 1, true), /meta_blkaddr/],
    ["xattr prefixes", (v) => v.setUint8(sb + SB.xattrPrefixCount, 1), /custom xattr prefixes/],
    ["blocks", (v) => v.setUint32(sb + SB.blocks, 1000, true), /truncated/],
  ];
  for (const [what, edit, re] of cases) {
    expectFormatError(() => readErofs(patched(image, (_, v) => edit(v))), re);
    void what;
  }
  // CHUNKED_FILE is the one incompat bit allowed.
  readErofs(patched(image, (_, v) => v.setUint32(sb + SB.featureIncompat, 0x4, true)));
  expectFormatError(() => readErofs(image.subarray(0, 1100)), /too short/);
  // Larger than 1 GiB: refused from the length alone (the untouched buffer is never committed).
  expectFormatError(() => readErofs(new Uint8Array(2 ** 30 + 4096)), /1 GiB/);
});

Deno.test("strict: dot entries, nlink counts, names, order, cycles, file types", () => {
  const root = newDirectory(newStat({ mode: 0o755 }));
  const sub = newDirectory(newStat({ mode: 0o755 }));
  root.entries.set("da", sub);
  sub.entries.set("inner", newDirectory(newStat({ mode: 0o755 })));
  const leaf = newLeaf(newStat({ mode: 0o644 }), { type: "inline", data: bstrToBytes("hello") });
  root.entries.set("fa", leaf);
  root.entries.set("fb", leaf);
  root.entries.set("fc", newLeaf(newStat({ mode: 0o644 }), { type: "fifo" }));
  for (const v of VERSIONS) {
    const image = writeErofs(root, { version: v });
    readErofs(image);
    const da = locate(image, "da");
    const fa = locate(image, "fa");
    const fc = locate(image, "fc");
    const inner = locate(image, "da/inner");
    const daDots = new ErofsImage(image).dirents(da.inode);
    const dot = daDots.find((e) => e.name === ".")!;
    const dotdot = daDots.find((e) => e.name === "..")!;
    const nameAt = (e: RawDirent, dirInode: RawInode) => {
      // The dirent's name offset is relative to its block; find the block start from e.at.
      const block = e.at - (e.at % 4096);
      const inline = dirInode.inlineSize > 0 && e.at >= dirInode.inlineStart ? dirInode.inlineStart : block;
      return inline + new DataView(image.buffer).getUint16(e.at + DIRENT.nameoff, true);
    };
    const rootInode = locate(image, "").inode;
    const cases: [string, Uint8Array, RegExp][] = [
      ["'.' nid", patched(image, (_, w) => w.setUint32(dot.at, dot.nid + 1, true)), /'\.' points to nid/],
      [
        "'..' nid",
        patched(image, (_, w) => w.setUint32(dotdot.at, da.inode.nid, true)),
        /'\.\.' points to nid/,
      ],
      ["dir nlink", patched(image, (_, w) => setNlink(w, da.inode, 4)), /directory nlink 4, expected 3/],
      ["leaf nlink", patched(image, (_, w) => setNlink(w, fa.inode, 3)), /nlink 3 but 2 directory entries/],
      ["fifo nlink", patched(image, (_, w) => setNlink(w, fc.inode, 0)), /nlink 0 but 1 directory entries/],
      [
        "cycle",
        patched(image, (_, w) => w.setUint32(inner.dirent!.at, rootInode.nid, true)),
        /linked more than once/,
      ],
      [
        "second link to a dir",
        patched(image, (_, w) => w.setUint32(inner.dirent!.at, da.inode.nid, true)),
        /linked more than once/,
      ],
      ["file type", patched(image, (_, w) => w.setUint8(fc.dirent!.at + DIRENT.fileType, 1)), /file type 1/],
      ["slash", patched(image, (b) => b[nameAt(fa.dirent!, rootInode) + 1] = 0x2f), /contains '\/'/],
      ["NUL", patched(image, (b) => b[nameAt(fa.dirent!, rootInode) + 1] = 0), /NUL/],
      [
        "duplicate",
        patched(image, (b) => b[nameAt(fc.dirent!, rootInode) + 1] = 0x62),
        /duplicate name "fb"/,
      ],
      ["unsorted", patched(image, (b) => b[nameAt(fa.dirent!, rootInode) + 1] = 0x7a), /not sorted/],
      [
        "'.' as a child name",
        patched(image, (b) => b.set([0x2e, 0x2e], nameAt(fa.dirent!, rootInode))),
        /.+/,
      ],
    ];
    for (const [what, bad, re] of cases) {
      try {
        readErofs(bad);
        throw new Error(`V${v} ${what}: accepted`);
      } catch (e) {
        assert(e instanceof FormatError, `V${v} ${what}: ${e}`);
        assert(re.test(e.message), `V${v} ${what}: ${e.message}`);
      }
    }
  }
});

function setNlink(w: DataView, inode: RawInode, n: number): void {
  if (inode.extended) w.setUint32(nlinkOffset(inode), n, true);
  else w.setUint16(nlinkOffset(inode), n, true);
}
function setSize(w: DataView, inode: RawInode, n: number): void {
  if (inode.extended) w.setUint32(sizeOffset(inode), n, true);
  else w.setUint32(sizeOffset(inode), n, true);
}

Deno.test("strict: sizes, metacopy, whiteout links, depth", () => {
  const id = new ObjectId("sha256", new Uint8Array(32).fill(0xab));
  const tree = leafTree({
    inl: { type: "inline", data: new Uint8Array(100).fill(1) },
    ext: { type: "external", id, size: 1000 },
    lnk: { type: "symlink", target: "abc" },
    wo: { type: "chardev", rdev: 0 },
  });
  // Enough entries that the image is larger than the sizes patched in below.
  for (let i = 0; i < 300; i++) tree.entries.set(`pad${i}`, newLeaf(newStat(), { type: "fifo" }));
  for (const v of VERSIONS) {
    const image = writeErofs(tree, { version: v });
    readErofs(image);
    const inl = locate(image, "inl").inode;
    const lnk = locate(image, "lnk").inode;
    const wo = locate(image, "wo").inode;
    const digestAt = image.findIndex((_, i) =>
      image[i] === 0xab && image.subarray(i, i + 32).every((b) => b === 0xab)
    );
    assert(digestAt > 4, "metacopy digest found");
    expectFormatError(
      () => readErofs(patched(image, (_, w) => setSize(w, inl, 8192 + 100))),
      /8292 bytes \(max 5000\)/,
    );
    expectFormatError(
      () => readErofs(patched(image, (_, w) => setSize(w, lnk, 8192 + 3))),
      /target of 8195 bytes/,
    );
    expectFormatError(() => readErofs(patched(image, (_, w) => setSize(w, lnk, 0))), /target of 0 bytes/);
    expectFormatError(
      () => readErofs(patched(image, (_, w) => setSize(w, inl, 2 ** 31))),
      /exceeds the image size/,
    );
    expectFormatError(
      () => readErofs(patched(image, (b) => b[digestAt - 4] = 1)),
      /malformed .*metacopy.*version 1/,
    );
    expectFormatError(() => readErofs(patched(image, (b) => b[digestAt - 1] = 9)), /metacopy.*algorithm 9/);
    expectFormatError(() => readErofs(patched(image, (b) => b[digestAt - 3] = 68)), /metacopy.*length/);
    expectFormatError(() => readErofs(patched(image, (_, w) => setNlink(w, wo, 2))), /hard-linked whiteout/);
  }
  // Depth: 2047 levels below the root are fine, 2048 are not.
  for (const [depth, ok] of [[2047, true], [2048, false]] as const) {
    const root = newDirectory(newStat({ mode: 0o755 }));
    let d = root;
    for (let i = 0; i < depth; i++) {
      const sub = newDirectory(newStat({ mode: 0o755 }));
      d.entries.set("d", sub);
      d = sub;
    }
    const image = writeErofs(root, { version: 2 });
    if (ok) readErofs(image);
    else expectFormatError(() => readErofs(image), /nested deeper than 2048/);
  }
});

// ---------------------------------------------------------------------------------------------
// fsck_metadata

Deno.test("fsck_metadata: epoch invariants, V1 symlink block rule, bloom filter", () => {
  // Epoch 1 root must hold all 256 stub slots: rename "ff" to "fg" (still sorted, no longer a slot).
  const v1 = writeErofs(leafTree({ zz: { type: "fifo" } }), { version: 1 });
  const ff = locate(v1, "ff");
  const renamed = patched(v1, (b) => {
    const block = ff.dirent!.at - (ff.dirent!.at % 4096);
    const rootInode = locate(v1, "").inode;
    const base = rootInode.inlineSize > 0 && ff.dirent!.at >= rootInode.inlineStart
      ? rootInode.inlineStart
      : block;
    b[base + new DataView(v1.buffer).getUint16(ff.dirent!.at + DIRENT.nameoff, true) + 1] = 0x67;
  });
  readErofs(renamed);
  expectFormatError(() => fsckMetadata(renamed), /255 of the 256/);

  // V2 must not hold escaped whiteouts: a user xattr trusted.overlay.whiteout is stored escaped.
  const esc = leafTree({});
  esc.entries.set(
    "f",
    newLeaf(newStat({ xattrs: new Map([["trusted.overlay.whiteout", new Uint8Array(0)]]) }), {
      type: "inline",
      data: new Uint8Array(0),
    }),
  );
  const v2esc = writeErofs(esc, { version: 2 });
  assertEquals(readErofs(v2esc).entries.get("f")?.kind, "leaf");
  expectFormatError(() => fsckMetadata(v2esc), /escaped \(V1-style\) whiteout/);

  // Epoch 1 must not hold native whiteouts outside the root: relabel a V2 image as version 1.
  const nat = leafTree({});
  const sub = newDirectory(newStat({ mode: 0o755 }));
  nat.entries.set("sub", sub);
  sub.entries.set("w", newLeaf(newStat({ mode: 0o644 }), { type: "chardev", rdev: 0 }));
  const relabeled = patched(
    writeErofs(nat, { version: 2 }),
    (_, w) => w.setUint32(CFS_HDR.composefsVersion, 1, true),
  );
  readErofs(relabeled);
  expectFormatError(() => fsckMetadata(relabeled), /native whiteout outside the root/);

  // The V1 symlink rule: find a V2 image whose symlink inode + target crosses a block, relabel it.
  let found = false;
  for (let seed = 1; seed < 40 && !found; seed++) {
    const rng = new Rng(seed);
    const root = leafTree({});
    for (let i = 0; i < 30; i++) {
      root.entries.set(
        `s${i}`,
        newLeaf(newStat({ mode: 0o777 }), { type: "symlink", target: "x".repeat(rng.int(300, 1024)) }),
      );
    }
    const image = writeErofs(root, { version: 2 });
    const img = new ErofsImage(image);
    const crossing = img.dirents(img.inode(img.header.rootNid)).some((e) => {
      if (!e.name.startsWith("s")) return false;
      const ino = img.inode(e.nid);
      return (ino.offset % 4096) + ino.headerSize + ino.xattrSize + (ino.size % 4096) > 4096;
    });
    if (!crossing) continue;
    found = true;
    fsckMetadata(image);
    const asV1 = patched(image, (_, w) => w.setUint32(CFS_HDR.composefsVersion, 1, true));
    expectFormatError(() => fsckMetadata(asV1), /symlink .* cross a block boundary|256 whiteout stub slots/);
  }
  assert(found, "no V2 image with a block-crossing symlink inode found");

  // Bloom filter: a filter claiming every xattr absent hides them from the kernel.
  const withX = leafTree({});
  withX.entries.set(
    "f",
    newLeaf(newStat({ xattrs: new Map([["user.a", bstrToBytes("1")]]) }), { type: "fifo" }),
  );
  for (const v of VERSIONS) {
    const image = writeErofs(withX, { version: v });
    const f = locate(image, "f").inode;
    fsckMetadata(image);
    const hidden = patched(image, (_, w) => w.setUint32(f.xattrStart, 0xffffffff, true));
    readErofs(hidden);
    expectFormatError(() => fsckMetadata(hidden), /bloom filter/);
  }
});

// ---------------------------------------------------------------------------------------------
// Mutation campaign

/** Offsets worth hitting in a valid image: header, superblock, inodes, xattr bodies, dirents. */
function interestingOffsets(image: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < 32; i++) out.push(i);
  for (let i = SUPERBLOCK_OFFSET; i < SUPERBLOCK_OFFSET + 128; i++) out.push(i);
  const img = new ErofsImage(image);
  const seen = new Set<number>();
  const stack = [img.header.rootNid];
  while (stack.length) {
    const nid = stack.pop()!;
    if (seen.has(nid)) continue;
    seen.add(nid);
    const ino = img.inode(nid);
    for (let i = 0; i < ino.headerSize; i++) out.push(ino.offset + i);
    for (let i = 0; i < Math.min(ino.xattrSize, 64); i++) out.push(ino.xattrStart + i);
    if (ino.xattrSize > 0) {
      // Shared xattr entries this inode refers to (headers and the first name bytes).
      const w = new DataView(image.buffer);
      for (let r = 0; r < image[ino.xattrStart + 4] && r * 4 + 16 <= ino.xattrSize; r++) {
        const at = img.header.xattrBlkaddr * 4096 + w.getUint32(ino.xattrStart + 12 + r * 4, true) * 4;
        for (let i = 0; i < 8 && at + i < image.length; i++) out.push(at + i);
      }
    }
    if (ino.type === 0o040000) {
      for (const e of img.dirents(ino)) {
        for (let i = 0; i < 12; i++) out.push(e.at + i);
        if (e.name !== "." && e.name !== "..") stack.push(e.nid);
      }
    }
  }
  return out;
}

/** Reads a (possibly corrupt) image every way the repository does; only FormatError may escape. */
function readAllWays(image: Uint8Array): Directory | undefined {
  let tree: Directory | undefined;
  try {
    tree = readErofs(image);
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
  }
  try {
    collectObjects(image);
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
  }
  return tree;
}

/** Bytes held by a tree (inline data, symlinks, xattr values counted once per object). */
function treeBytes(root: Directory): number {
  const seen = new Set<object>();
  let n = 0;
  const stack: Directory[] = [root];
  const stat = (s: { xattrs: Map<string, Uint8Array> }) => {
    for (const [k, v] of s.xattrs) {
      n += k.length;
      if (!seen.has(v)) (seen.add(v), n += v.length);
    }
  };
  while (stack.length) {
    const d = stack.pop()!;
    stat(d.stat);
    for (const [name, node] of d.entries) {
      n += name.length;
      if (node.kind === "dir") stack.push(node);
      else if (!seen.has(node)) {
        seen.add(node);
        stat(node.stat);
        if (node.content.type === "inline") n += node.content.data.length;
        if (node.content.type === "symlink") n += node.content.target.length;
      }
    }
  }
  return n;
}

Deno.test("mutations: flipped bytes, extreme fields and truncations give FormatError or a valid tree", () => {
  const started = performance.now();
  let cases = 0, rejected = 0, worst = 0;
  for (const v of VERSIONS) {
    const base = writeErofs(randomTree(900 + v, { entries: 60, maxDepth: 4 }), { version: v });
    const hot = interestingOffsets(base);
    const rng = new Rng(77 + v);
    const N = 1100;
    for (let i = 0; i < N; i++) {
      const m = base.slice();
      const kind = i % 6;
      let image: Uint8Array = m;
      if (kind === 0) {
        for (let k = rng.int(1, 4); k > 0; k--) m[rng.int(0, m.length - 1)] ^= 1 << rng.int(0, 7);
      } else if (kind === 1 || kind === 2) {
        m[rng.pick(hot)] = rng.int(0, 255);
      } else if (kind === 3) {
        // Huge counts and sizes: an extreme 16/32-bit value at an interesting offset.
        const at = rng.pick(hot) & ~1;
        const w = new DataView(m.buffer);
        const val = rng.pick([0, 0xffff, 0xffffffff, 0x7fffffff, 0x80000000, 0x10000, 0xfff, 4096, 4097]);
        if (rng.chance(0.5) && at + 4 <= m.length) w.setUint32(at, val >>> 0, true);
        else w.setUint16(at, val & 0xffff, true);
      } else if (kind === 4) {
        image = m.subarray(0, rng.int(0, m.length - 1));
      } else {
        for (let k = rng.int(2, 12); k > 0; k--) m[rng.pick(hot)] = rng.int(0, 255);
      }
      const t0 = performance.now();
      const tree = readAllWays(image);
      const dt = performance.now() - t0;
      worst = Math.max(worst, dt);
      assert(dt < 2000, `case ${v}/${i} took ${dt.toFixed(0)} ms`);
      cases++;
      if (!tree) rejected++;
      else {
        assert(treeBytes(tree) <= 4 * image.length + 65536, `case ${v}/${i}: tree larger than its image`);
        flattenTree(tree); // a valid tree is traversable
      }
    }
  }
  const total = performance.now() - started;
  console.log(
    `  ${cases} mutated images: ${rejected} rejected with FormatError, ${cases - rejected} read; ` +
      `worst ${worst.toFixed(1)} ms, total ${(total / 1000).toFixed(1)} s`,
  );
});

Deno.test("hostile: many inodes reading one data block are stopped by the budget", () => {
  // 400 fifos turned into 4 KiB regular files that all read the data block of one real file: every
  // read is in bounds, but together they would copy 400 blocks out of a much smaller image.
  const root = leafTree({ big: { type: "inline", data: new Uint8Array(4096).fill(7) } });
  for (let i = 0; i < 400; i++) {
    root.entries.set(
      `f${i.toString().padStart(3, "0")}`,
      newLeaf(newStat({ mode: 0o644 }), { type: "fifo" }),
    );
  }
  for (const v of VERSIONS) {
    const image = writeErofs(root, { version: v });
    const img = new ErofsImage(image);
    const big = locate(image, "big").inode;
    const { start, count } = img.blockRange(big);
    assertEquals(count, 1, `V${v}: the 4 KiB file has one data block`);
    const hostile = patched(image, (_, w) => {
      const rootInode = img.inode(img.header.rootNid);
      for (const e of img.dirents(rootInode)) {
        if (!e.name.startsWith("f")) continue;
        const ino = img.inode(e.nid);
        w.setUint16(ino.offset, ino.extended ? 1 : 0, true); // FLAT_PLAIN
        w.setUint16(ino.offset + 4, 0o100644, true);
        w.setUint32(ino.offset + 8, 4096, true);
        w.setUint32(ino.offset + 16, start, true);
        w.setUint8(e.at + DIRENT.fileType, 1);
      }
    });
    assert(400 * 4096 > hostile.length, "the attack needs more bytes than the image has");
    expectFormatError(() => readErofs(hostile), /same bytes more than once/);
  }
});

Deno.test("names: byte strings survive (UTF-8 and raw bytes)", () => {
  const root = leafTree({});
  root.entries.set(utf8ToBstr("héllo-ü"), newLeaf(newStat(), { type: "fifo" }));
  root.entries.set("\xff\xfe\x01", newLeaf(newStat(), { type: "fifo" }));
  for (const v of VERSIONS) assertSameTree(readErofs(writeErofs(root, { version: v })), root, v, `V${v}`);
});
