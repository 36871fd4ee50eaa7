// Splitting tar layers into splitstreams (§3.7) and reading them back (§3.8): byte-identical
// reassembly (sha256 = diff_id, checked with sha256sum), the inline/external rule, diff_id
// verification, cleanup on failure, and the whole path from gzip/zstd blobs into a real repository.
import { FormatError, IntegrityError } from "../lib/errors.ts";
import type { ObjectId } from "../lib/fsverity/object_id.ts";
import { decompressLayer } from "../lib/oci/media_types.ts";
import {
  INLINE_CONTENT_MAX,
  splitTarLayer,
  tarEntriesFromSplitstream,
  verifyLayerDiffId,
} from "../lib/oci/layer_split.ts";
import { Repository } from "../lib/repository/repository.ts";
import { SplitStreamReader } from "../lib/splitstream/reader.ts";
import {
  reassembleStream as reassembleSplitstream,
  reassembleStream as reassembleTar,
} from "../lib/splitstream/reassemble.ts";
import { CONTENT_TYPE } from "../lib/oci/content_types.ts";
import { concatBytes } from "../lib/util/bytes.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { MemoryStore } from "./helpers/memory_store.ts";
import { END, gnuTar, makeSourceTree, readAll, run, sha256Hex, tarMember } from "./helpers/tar_fixtures.ts";

const enc = new TextEncoder();

function streamOf(data: Uint8Array, chunk = 65536): ReadableStream<Uint8Array> {
  let o = 0;
  return new ReadableStream({
    pull(ctl) {
      if (o >= data.length) return ctl.close();
      ctl.enqueue(data.slice(o, o + chunk));
      o += chunk;
    },
  });
}

async function collect(s: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of s) parts.push(c);
  return concatBytes(parts);
}

/** sha256 as the sha256sum tool computes it (independent of node:crypto). */
async function sha256sum(data: Uint8Array): Promise<string> {
  const out = new TextDecoder().decode(await run("sha256sum", ["-b", "-"], { stdin: data }));
  return "sha256:" + out.split(" ")[0];
}

/**
 * Splits `tar` into a MemoryStore and checks everything that must hold for any tar: diff_id,
 * reassembly, one external chunk per regular file > 64 bytes holding exactly that file's content,
 * and entries read back = entries read directly.
 */
async function roundTrip(tar: Uint8Array, what: string, chunk = 65536) {
  const store = new MemoryStore("sha256");
  const diffId = await sha256sum(tar);
  const res = await splitTarLayer(streamOf(tar, chunk), store, { expectedDiffId: diffId });
  assertEquals(res.diffId, diffId, what);
  assertEquals(res.size, tar.length, what);
  const reader = await SplitStreamReader.fromBytes(res.splitstream, {
    alg: "sha256",
    contentType: CONTENT_TYPE.OCI_LAYER,
  });
  assertEquals(reader.streamSize, tar.length, `${what}: stream size`);
  const back = await collect(reassembleTar(reader, (id) => store.open(id)));
  assertEquals(sha256Hex(back), sha256Hex(tar), `${what}: reassembled bytes`);
  await verifyLayerDiffId(reader, (id) => store.open(id), diffId);
  const otherShape = (async function* () {
    for await (const c of reader.chunks()) yield c;
  })();
  const back2 = await collect(reassembleSplitstream(otherShape, (id) => store.open(id)));
  assertEquals(sha256Hex(back2), sha256Hex(tar), `${what}: reassembled from a chunk generator`);

  const direct = (await readAll(tar)).entries;
  const split = [];
  for await (const e of tarEntriesFromSplitstream(reader)) split.push(e);
  assertEquals(split.length, direct.length, `${what}: entry count`);
  let external = 0;
  for (let i = 0; i < split.length; i++) {
    const { content: c, ...meta } = split[i];
    const d = direct[i];
    assertEquals(meta, d.entry, `${what}: entry ${i}`);
    if (d.entry.kind !== "file") {
      assertEquals(c, undefined);
      continue;
    }
    if (d.entry.size > INLINE_CONTENT_MAX) {
      external++;
      assert(c?.type === "external", `${what}: ${d.entry.path} should be external`);
      assertEquals(c.size, d.entry.size);
      assertEquals(
        sha256Hex(store.objects.get(c.id.hex())!),
        sha256Hex(d.content),
        `${what}: ${d.entry.path}`,
      );
    } else {
      assert(c?.type === "inline", `${what}: ${d.entry.path} should be inline`);
      assertEquals(sha256Hex(c.data), sha256Hex(d.content));
    }
  }
  assertEquals(res.objects, external, `${what}: objects`);
  assertEquals(reader.objectRefs.length, new Set(reader.objectRefs.map((r) => r.hex())).size);
  assertEquals(res.externalSize + res.inlineSize, tar.length);
  return { res, store, reader };
}

Deno.test("GNU tar (gnu, posix+xattrs, ustar; default 10 KiB records): split and read back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfs-split-" });
  try {
    await makeSourceTree(dir, "full");
    for (const [format, extra] of [["gnu", []], ["posix", ["--xattrs"]]] as const) {
      const tar = await gnuTar(dir, format, [...extra]);
      assertEquals(tar.length % 10240, 0, "GNU tar pads to whole records");
      const { res, reader } = await roundTrip(tar, format);
      // Files > 64 bytes of the tree: f65, hard65 (a hard link: no content), f511, f512, f513,
      // f100k, f1500k, dup1, dup2, the long-named file. dup1/dup2 share one object.
      assertEquals(res.objects, 9, `${format} objects`);
      assertEquals(reader.objectRefs.length, 8, `${format} distinct objects`);
    }
    const ustarDir = await Deno.makeTempDir({ prefix: "cfs-split-u-" });
    try {
      await makeSourceTree(ustarDir, "ustar");
      await roundTrip(await gnuTar(ustarDir, "ustar"), "ustar", 777);
    } finally {
      await Deno.remove(ustarDir, { recursive: true });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Python tarfile and hand-built tars: split and read back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfs-split-py-" });
  try {
    await run("python3", ["-c", PY, dir]);
    for (const name of ["pax", "gnu"]) await roundTrip(await Deno.readFile(`${dir}/${name}.tar`), name, 1000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const a = tarMember({ name: "a" }, new Uint8Array(64).fill(1));
  const b = tarMember({ name: "b" }, new Uint8Array(65).fill(2));
  const zero = new Uint8Array(512);
  await roundTrip(concatBytes([a, zero, b, END, new Uint8Array(3000).fill(7)]), "stray zero + trailing junk");
  await roundTrip(concatBytes([a, b]), "no end blocks");
  await roundTrip(concatBytes([b, zero]), "single end block");
  await roundTrip(new Uint8Array(0), "empty stream");
  await roundTrip(
    concatBytes([tarMember({ name: "d/", type: "5" }, new Uint8Array(100)), END]),
    "dir with data",
  );
});

const PY = String.raw`
import tarfile, io, sys
out = sys.argv[1]
for name, fmt in (("pax", tarfile.PAX_FORMAT), ("gnu", tarfile.GNU_FORMAT)):
    with tarfile.open(f"{out}/{name}.tar", "w", format=fmt) as tf:
        for i, size in enumerate([0, 1, 64, 65, 511, 512, 513, 4096, 70000]):
            ti = tarfile.TarInfo(("d" * 150 + "/") * (i % 2) + f"f{size}-\u00e9")
            ti.size = size
            ti.mtime = 1700000000.25
            ti.pax_headers = {"SCHILY.xattr.user.x": "v" * i}
            tf.addfile(ti, io.BytesIO(bytes([i]) * size))
        ti = tarfile.TarInfo("hl"); ti.type = tarfile.LNKTYPE; ti.linkname = "f65-\u00e9"; tf.addfile(ti)
`;

Deno.test("gzip (multi-member) and zstd (multi-frame + skippable) blobs into a real repository", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfs-split-repo-" });
  try {
    await Deno.mkdir(`${dir}/src`);
    await makeSourceTree(`${dir}/src`, "full");
    const tar = await gnuTar(`${dir}/src`, "posix", ["--xattrs"]);
    const diffId = await sha256sum(tar);
    const half = 7 * 512 + 100;
    const gz = concatBytes([
      await run("gzip", ["-c"], { stdin: tar.subarray(0, half) }),
      await run("gzip", ["-c"], { stdin: tar.subarray(half) }),
    ]);
    const skip = new Uint8Array(12);
    new DataView(skip.buffer).setUint32(0, 0x184d2a5e, true);
    new DataView(skip.buffer).setUint32(4, 4, true);
    const zst = concatBytes([
      await run("zstd", ["-q", "-c"], { stdin: tar.subarray(0, half) }),
      skip,
      await run("zstd", ["-q", "-c", "--no-check"], { stdin: tar.subarray(half) }),
      skip,
    ]);
    await Repository.init(`${dir}/repo`, { algorithm: "fsverity-sha512-12", insecure: true });
    const repo = await Repository.open(`${dir}/repo`);
    try {
      const open = async (id: ObjectId) => (await repo.openObject(id)).readable;
      for (
        const [mt, blob] of [
          ["application/vnd.oci.image.layer.v1.tar+gzip", gz],
          ["application/vnd.oci.image.layer.v1.tar+zstd", zst],
          ["application/vnd.oci.image.layer.v1.tar", tar],
        ] as const
      ) {
        let progress = 0;
        const res = await splitTarLayer(decompressLayer(streamOf(blob, 10000), mt), repo, {
          expectedDiffId: diffId,
          onProgress: (n) => progress = n,
        });
        assertEquals(res.diffId, diffId, mt);
        assertEquals(progress, tar.length, `${mt}: final progress`);
        const reader = await SplitStreamReader.fromBytes(res.splitstream, { alg: "sha512" });
        assertEquals(sha256Hex(await collect(reassembleTar(reader, open))), sha256Hex(tar), mt);
      }
    } finally {
      repo.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wrong expected diff_id → IntegrityError; truncated layer → FormatError, object writer aborted", async () => {
  const big = tarMember({ name: "big" }, new Uint8Array(3 * 1024 * 1024 + 5).fill(9));
  const tar = concatBytes([tarMember({ name: "small" }, new Uint8Array(1000)), big, END]);
  const wrong = "sha256:" + "0".repeat(64);
  const store = new MemoryStore();
  await assertRejects(() => splitTarLayer(streamOf(tar), store, { expectedDiffId: wrong }), IntegrityError);
  // Finished objects may stay behind (garbage for gc); nothing was left half-written.
  assertEquals(store.aborted, 0);
  await assertRejects(
    () => splitTarLayer(streamOf(tar), store, { expectedDiffId: "sha256:abc" }),
    /invalid diff_id/,
  );

  // A sha512 diff_id (allowed by OCI) is checked with sha512, as sha512sum computes it.
  const sha512 = new TextDecoder().decode(await run("sha512sum", ["-b", "-"], { stdin: tar })).split(" ")[0];
  const r512 = await splitTarLayer(streamOf(tar), store, { expectedDiffId: `sha512:${sha512}` });
  assertEquals(r512.diffId, `sha512:${sha512}`);
  const reader = await SplitStreamReader.fromBytes(r512.splitstream);
  await assertRejects(() => verifyLayerDiffId(reader, (id) => store.open(id), wrong), IntegrityError);

  const cut = new MemoryStore();
  const truncated = tar.subarray(0, 2048 + 1024 * 1024);
  const e = await assertRejects(() => splitTarLayer(streamOf(truncated), cut), FormatError);
  assert(/truncated/.test(e.message), e.message);
  assertEquals(cut.aborted, 1, "the big file's writer was aborted");
  assertEquals(cut.objects.size, 1, "only the finished small object exists");

  // A hostile entry stops the split the same way.
  const evil = concatBytes([tarMember({ name: "../x" }, enc.encode("x")), END]);
  await assertRejects(() => splitTarLayer(streamOf(evil), new MemoryStore()), /\.\./);
});

Deno.test("reading back rejects splitstreams that break the inline/external rule", async () => {
  const store = new MemoryStore();
  const id = await store.ensureObject(new Uint8Array(10));
  const hdr = tarMember({ name: "f" }, new Uint8Array(10)).subarray(0, 512);
  const chunks = async function* () {
    yield { kind: "inline" as const, data: hdr };
    yield { kind: "external" as const, id };
    yield { kind: "inline" as const, data: new Uint8Array(502) };
  };
  await assertRejects(async () => {
    for await (const _ of tarEntriesFromSplitstream(chunks()));
  }, /external content for 10-byte file/);
  const bigHdr = tarMember({ name: "g" }, new Uint8Array(100)).subarray(0, 512);
  const inlineBig = async function* () {
    yield { kind: "inline" as const, data: concatBytes([bigHdr, new Uint8Array(512)]) };
  };
  await assertRejects(async () => {
    for await (const _ of tarEntriesFromSplitstream(inlineBig()));
  }, /stored inline/);
  const extHeader = async function* () {
    yield { kind: "external" as const, id };
  };
  await assertRejects(async () => {
    for await (const _ of tarEntriesFromSplitstream(extHeader()));
  }, /headers must be inline/);
});
