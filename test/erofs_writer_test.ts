// EROFS writer: pinned composefs-rs 0.7.0 image digests (docs/erofs.md#pinned), C mkcomposefs test vectors
// (byte-identical images), and fsck.erofs acceptance.
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { assertEquals, assertThrows } from "./helpers/assert.ts";
import { dumpfileBytes } from "../lib/dumpfile/write.ts";
import { FormatError } from "../lib/errors.ts";
import { parseDumpfileSync } from "../lib/dumpfile/parse.ts";
import { writeErofs } from "../lib/erofs/writer.ts";
import { fsverityDigest } from "../lib/fsverity/hasher.ts";
import { ObjectId } from "../lib/fsverity/object_id.ts";
import {
  type Directory,
  type Inode,
  type LeafContent,
  newDirectory,
  newLeaf,
  newStat,
} from "../lib/tree/tree.ts";
import { bstrToBytes } from "../lib/util/bytes.ts";

function emptyRoot(): Directory {
  return newDirectory(newStat({ mode: 0o755 }));
}

function simpleRoot(): Directory {
  const root = emptyRoot();
  const add = (name: string, content: LeafContent) => root.entries.set(name, newLeaf(newStat(), content));
  add("fifo", { type: "fifo" });
  add("regular-inline", { type: "inline", data: bstrToBytes("hihi") });
  add("regular-external", {
    type: "external",
    id: new ObjectId("sha256", new Uint8Array(32).fill(0x5a)),
    size: 1234,
  });
  add("chrdev", { type: "chardev", rdev: 123 });
  add("blkdev", { type: "blockdev", rdev: 123 });
  add("socket", { type: "socket" });
  add("symlink", { type: "symlink", target: "/target" });
  return root;
}

/** special_v1.dump of composefs-rs, built by hand (composefs-rs 0.7.0 test data, docs/erofs.md#pinned). */
function specialV1Root(): Directory {
  const t = 1633950376;
  const x = (...kv: string[]) => {
    const m = new Map<string, Uint8Array>();
    for (let i = 0; i < kv.length; i += 2) m.set(kv[i], bstrToBytes(kv[i + 1]));
    return m;
  };
  const root = newDirectory(
    newStat({ mode: 0o555, mtimeSec: t, xattrs: x("trusted.foo1", "bar-1", "user.foo2", "bar-2") }),
  );
  const add = (name: string, mode: number, content: LeafContent, xattrs: Map<string, Uint8Array>) =>
    root.entries.set(name, newLeaf(newStat({ mode, mtimeSec: t, xattrs }), content) as Inode);
  add("blockdev", 0o777, { type: "blockdev", rdev: 107690 }, x("trusted.bar", "bar-2"));
  add("chardev", 0o777, { type: "chardev", rdev: 10769 }, x("trusted.foo", "bar-2"));
  add(
    "escaped-xattr",
    0o777,
    { type: "inline", data: new Uint8Array(0) },
    x("trusted.overlay.redirect", "/foo\n", "user.overlay.redirect", "/foo\n", "user.foo", "bar-2"),
  );
  add("fifo", 0o777, { type: "fifo" }, x("trusted.bar", "bar-2"));
  add("inline", 0o777, { type: "inline", data: bstrToBytes("FOOBAR\nINAFILE\n") }, x("user.foo", "bar-2"));
  add("whiteout", 0o777, { type: "chardev", rdev: 0 }, x("trusted.foo", "bar-2"));
  return root;
}

function verity(img: Uint8Array): string {
  return fsverityDigest(img, "sha256").hex();
}

const pinned: [string, () => Directory, 0 | 1 | 2, string, number][] = [
  ["empty", emptyRoot, 2, "086b702a519b57d6ef5aea6f8b3f2be24355cd1fb835cd80fb4e3d388b24d5a5", 4096],
  ["simple", simpleRoot, 2, "a8fcd41f8b313bede69f462f2af0a38d64b99a6333f5df884ea9ab4037fac722", 4096],
  ["empty", emptyRoot, 0, "8f589e8f57ecb88823736b0d857ddca1e1068a23e264fad164b28f7038eb3682", 16384],
  ["simple", simpleRoot, 0, "9f3f5620ee0c54708516467d0d58741e7963047c7106b245d94c298259d0fa01", 16384],
  ["special_v1", specialV1Root, 1, "b1c78c25db8638be5b9b483472d32ee9624d8d32ded626a91cd536116e8df97c", 16384],
  // Spec §10.3 "prototype-derived extras" (an independent implementation of the spec, not upstream).
  ["empty", emptyRoot, 1, "14a26c957c84f6eb774b91205476adc13196c7c33b9dd97d08d43725ecb90b63", 16384],
  ["simple", simpleRoot, 1, "ad6db6427568a1e4fdc772cbab7b6063f5eb4b33cb62982a740ba9213e5962b5", 16384],
  // V0 with a user whiteout is promoted to composefs_version 1: same bytes as V1.
  ["special_v1", specialV1Root, 0, "b1c78c25db8638be5b9b483472d32ee9624d8d32ded626a91cd536116e8df97c", 16384],
];

for (const [name, make, version, digest, size] of pinned) {
  Deno.test(`erofs writer: pinned composefs-rs digest ${name} V${version}`, () => {
    const img = writeErofs(make(), { version });
    assertEquals(img.length, size);
    assertEquals(verity(img), digest);
  });
}

Deno.test("erofs writer: special_v1 V2 (spec prototype value)", () => {
  const img = writeErofs(specialV1Root(), { version: 2 });
  assertEquals(verity(img), "1fdf4ddd0a17123449feb902b32594f30fa121b81735c4540db0d556c9af8c8c");
});

// ---- C mkcomposefs 1.0.8 test vectors: sha256 of our image = ASSET.sha256

const VECTORS = new URL("../../shared/vectors/composefs-c/", import.meta.url);

async function readVector(name: string): Promise<Uint8Array> {
  const raw = await Deno.readFile(new URL(name, VECTORS));
  return name.endsWith(".gz") ? gunzipSync(raw) : raw;
}

async function vectorOptions(name: string): Promise<{ version: 0 | 1; maxVersion: 0 | 1 }> {
  try {
    const n = Number((await Deno.readTextFile(new URL(name + ".version", VECTORS))).trim());
    if (n !== 0 && n !== 1) throw new Error(`bad version file for ${name}`);
    return { version: n, maxVersion: n }; // --min-version=N --max-version=N
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { version: 0, maxVersion: 1 }; // C defaults
    throw e;
  }
}

function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

const vectorNames = [...Deno.readDirSync(VECTORS)]
  .map((e) => e.name)
  .filter((n) => n.endsWith(".sha256"))
  .map((n) => n.slice(0, -".sha256".length))
  .sort();

for (const name of vectorNames) {
  Deno.test(`erofs writer: C vector ${name} is byte-identical`, async () => {
    const expected = (await Deno.readTextFile(new URL(name + ".sha256", VECTORS))).trim().split(/\s+/)[0];
    const strict = !["no-newline.dump", "longlink.dump", "honggfuzz-longlink-unterminated.dump"].includes(
      name,
    );
    const root = parseDumpfileSync(await readVector(name), { strict });
    const img = writeErofs(root, await vectorOptions(name));
    assertEquals(sha256Hex(img), expected);
  });
}

// ---- what the writer rejects, and that it leaves the caller's tree alone

function oneLeaf(content: LeafContent): Directory {
  const root = emptyRoot();
  root.entries.set("x", newLeaf(newStat({ mode: 0o644 }), content));
  return root;
}

for (const version of [0, 1, 2] as const) {
  Deno.test(`erofs writer: V${version} rejects what cannot be encoded`, () => {
    const id = new ObjectId("sha256", new Uint8Array(32));
    const cases: [string, Directory][] = [
      ["rdev beyond 32 bits", oneLeaf({ type: "chardev", rdev: 2 ** 32 })],
      ["negative rdev", oneLeaf({ type: "blockdev", rdev: -1 })],
      [
        "external file needing more than 1024 chunks",
        oneLeaf({ type: "external", id, size: 2 ** 53 + 2 ** 44 }),
      ],
      ["inline content over 5000 bytes", oneLeaf({ type: "inline", data: new Uint8Array(5001) })],
      ["empty symlink", oneLeaf({ type: "symlink", target: "" })],
      ["symlink over 4095 bytes", oneLeaf({ type: "symlink", target: "a".repeat(4096) })],
      [
        "xattr value over 65535 bytes",
        (() => {
          const r = emptyRoot();
          r.stat.xattrs.set("user.big", new Uint8Array(65536));
          return r;
        })(),
      ],
    ];
    const wh = newLeaf(newStat(), { type: "chardev", rdev: 0 });
    const hl = emptyRoot();
    hl.entries.set("a", wh);
    hl.entries.set("b", wh);
    cases.push(["hard-linked whiteout", hl]);
    for (const [what, tree] of cases) {
      const e = assertThrows(() => writeErofs(tree, { version }));
      assertEquals(e instanceof FormatError, true, `${what}: ${e}`);
    }
  });
}

Deno.test("erofs writer: the caller's tree is not modified and output is deterministic", () => {
  for (const version of [0, 1, 2] as const) {
    const tree = specialV1Root();
    tree.entries.set("sub", newDirectory(newStat({ mode: 0o700 })));
    (tree.entries.get("sub") as Directory).entries.set(
      "wh",
      newLeaf(newStat(), { type: "chardev", rdev: 0 }),
    );
    const before = dumpfileBytes(tree);
    const a = writeErofs(tree, { version });
    assertEquals(dumpfileBytes(tree), before);
    assertEquals(writeErofs(tree, { version }), a);
  }
});

Deno.test("erofs writer: V0 with maxVersion 0 keeps composefs_version 0 and omits opaque markers", () => {
  const promoted = writeErofs(specialV1Root(), { version: 0 });
  const kept = writeErofs(specialV1Root(), { version: 0, maxVersion: 0 });
  const ver = (img: Uint8Array) => new DataView(img.buffer).getUint32(12, true);
  assertEquals([ver(promoted), ver(kept)], [1, 0]);
  const has = (img: Uint8Array, s: string) => new TextDecoder("latin1").decode(img).includes(s);
  // trusted.overlay.overlay.opaque=x is stored as prefix "trusted." + "overlay.overlay.opaque"
  assertEquals([has(promoted, "overlay.overlay.opaque"), has(kept, "overlay.overlay.opaque")], [true, false]);
  assertEquals([has(promoted, "overlay.overlay.whiteouts"), has(kept, "overlay.overlay.whiteouts")], [
    true,
    true,
  ]);
});

Deno.test("erofs writer: rejects file names a directory cannot hold", () => {
  for (const bad of ["", ".", "..", "a/b", "nul\0", "n".repeat(256)]) {
    for (const version of [0, 2] as const) {
      const root = emptyRoot();
      root.entries.set(bad, newLeaf(newStat(), { type: "fifo" }));
      const e = assertThrows(() => writeErofs(root, { version }));
      assertEquals(e instanceof FormatError, true, `${JSON.stringify(bad)}: ${e}`);
    }
  }
  const root = emptyRoot();
  root.entries.set("n".repeat(255), newLeaf(newStat(), { type: "fifo" }));
  assertEquals(writeErofs(root, { version: 2 }).length, 4096);
});
