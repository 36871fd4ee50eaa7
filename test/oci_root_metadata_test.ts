// Root metadata of images flattened from OCI layers (docs/image-root-metadata.md): with /usr the root
// takes /usr's (composefs-rs transform_for_oci; the pinned ids of oci_pull_test.ts prove it is
// unchanged); without /usr the root keeps the layers' own root entry, else 0755 0:0 mtime 0, and /run is
// emptied either way. A pull that fails while building the tree keeps its stored layers.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { addImage } from "./helpers/oci_builder.ts";
import { END, tarMember } from "./helpers/tar_fixtures.ts";
import { concatBytes } from "../lib/util/bytes.ts";
import { Flattener } from "../lib/oci/flatten.ts";
import type { TarEntry } from "../lib/oci/tar/entry.ts";

const enc = new TextEncoder();

async function cfs(repo: string, args: string[], expectCode = 0) {
  const r = await runCli(["--repo", repo, ...args]);
  assertEquals(r.code, expectCode, `cfsctl ${args.join(" ")}:\n${r.stderr}${r.stdout}`);
  return r;
}

/** A scratch-style layer: an app directory, a /run with content, no /usr; `root` adds a `./` entry. */
function scratchLayer(root?: { mode: number; mtime: number }): Uint8Array {
  const parts: Uint8Array[] = [];
  if (root) parts.push(tarMember({ name: "./", type: "5", mode: root.mode, mtime: root.mtime }));
  parts.push(
    tarMember({ name: "./app/", type: "5", mode: 0o755, mtime: 1600000000 }),
    tarMember({ name: "./app/hello", mode: 0o755, mtime: 1600000001 }, enc.encode("#!/bin/true\n")),
    tarMember({ name: "./run/", type: "5", mode: 0o755, mtime: 1600000002 }),
    tarMember({ name: "./run/stale.pid", mtime: 1600000003 }, enc.encode("1\n")),
    END,
  );
  return concatBytes(parts);
}

function rootLine(dump: string): string {
  return dump.split("\n").find((l) => l.startsWith("/ "))!;
}

Deno.test("oci pull: an image without /usr pulls; root = 0755 0:0 mtime 0 (pinned ids), /run emptied", async () => {
  await using tmp = await tempDir();
  await addImage(`${tmp.path}/layout`, { tag: "t", layers: [{ tar: scratchLayer(), compression: "gzip" }] });
  const repo = `${tmp.path}/repo`;
  await cfs(repo, ["init", "--insecure"]);
  await cfs(repo, ["oci", "pull", `oci:${tmp.path}/layout:t`, "scratch"]);
  const dump = (await cfs(repo, ["oci", "dump", "scratch"])).stdout;
  assertMatch(rootLine(dump), /^\/ 0 40755 4 0 0 0 0\.0 - - -$/);
  const paths = dump.trimEnd().split("\n").map((l) => l.split(" ")[0]);
  assertEquals(paths, ["/", "/app", "/app/hello", "/run"]);
  // /run keeps its own mode and owner, emptied, with the root's mtime.
  assertMatch(dump.split("\n").find((l) => l.startsWith("/run "))!, /^\/run 0 40755 2 0 0 0 0\.0 /);
  // Deterministic: the id is pinned (no reference exists: composefs-rs 0.7.0 refuses such images).
  assertEquals(
    (await cfs(repo, ["oci", "compute-id", "scratch"])).stdout.trim(),
    "5e57786d6c54fd39614d9351cb01a7a7326444c5aa66fbc231d5bab36afb0beedc84251fe170c928663ff0874830a87c3924f1ef9d13febebbe4b697dd4467ed",
  );
  const repo1 = `${tmp.path}/repo1`;
  await cfs(repo1, ["init", "--insecure", "--erofs-version", "1"]);
  await cfs(repo1, ["oci", "pull", `oci:${tmp.path}/layout:t`, "scratch"]);
  assertEquals(
    (await cfs(repo1, ["oci", "compute-id", "scratch"])).stdout.trim(),
    "48bc31fcf0c64963a3256a80847ee611b00672cbf28f05573c5519be7b707fb8069609679dc9adc7eb1fec45326988ac01d8a0decd7788b8de293bb5c661bbbc",
  );
  assertMatch((await cfs(repo, ["oci", "fsck"])).stdout, /oci images: 1\/1 ok/);
});

Deno.test("oci pull: without /usr the root keeps the layers' own root entry (the last layer's wins)", async () => {
  await using tmp = await tempDir();
  const top = concatBytes([tarMember({ name: "./", type: "5", mode: 0o750, mtime: 1700000000 }), END]);
  await addImage(`${tmp.path}/layout`, {
    tag: "t",
    layers: [{ tar: scratchLayer({ mode: 0o700, mtime: 1500000000 }) }, { tar: top }],
  });
  const repo = `${tmp.path}/repo`;
  await cfs(repo, ["init", "--insecure"]);
  await cfs(repo, ["oci", "pull", `oci:${tmp.path}/layout:t`, "withroot"]);
  const dump = (await cfs(repo, ["oci", "dump", "withroot"])).stdout;
  assertMatch(rootLine(dump), /^\/ 0 40750 4 0 0 0 1700000000\.0 - - -$/);
  assertMatch(dump.split("\n").find((l) => l.startsWith("/run "))!, / 1700000000\.0 /);
});

Deno.test("oci pull failing at the tree (/usr a file) keeps the stored layers: the retry downloads nothing", async () => {
  await using tmp = await tempDir();
  const tar = concatBytes([tarMember({ name: "usr", mtime: 5 }, enc.encode("not a dir")), END]);
  const built = await addImage(`${tmp.path}/layout`, { tag: "t", layers: [{ tar }] });
  const repo = `${tmp.path}/repo`;
  await cfs(repo, ["init", "--insecure"]);
  const first = await cfs(repo, ["oci", "pull", `oci:${tmp.path}/layout:t`, "bad"], 1);
  assertMatch(first.stderr, /\/usr is not a directory/);
  // The layer blob is gone from the source: the retry can only succeed as far as before from the store.
  await Deno.remove(`${tmp.path}/layout/blobs/sha256/${built.layerDigests[0].slice(7)}`);
  const retry = await cfs(repo, ["oci", "pull", `oci:${tmp.path}/layout:t`, "bad"], 1);
  assertMatch(retry.stderr, /\/usr is not a directory/);
  assert(!/blob|layer .* not found|No such file/i.test(retry.stderr), retry.stderr);
});

function entry(path: string, kind: TarEntry["kind"], mode: number, mtimeSec: number): TarEntry {
  const t: TarEntry = {
    path,
    kind,
    typeflag: "5",
    mode,
    uid: 7,
    gid: 8,
    mtimeSec,
    mtimeNsec: 5,
    size: 0,
    linkTarget: "",
    rdev: 0,
    devMajor: 0,
    devMinor: 0,
    xattrs: new Map(),
  };
  return t;
}

Deno.test("Flattener: with /usr the root takes /usr's metadata even over a root entry", () => {
  const f = new Flattener();
  f.beginLayer();
  f.apply(entry("/", "dir", 0o40700, 99));
  f.apply(entry("/usr", "dir", 0o40711, 1234));
  const root = f.finish();
  assertEquals([root.stat.mode, root.stat.uid, root.stat.gid, root.stat.mtimeSec], [0o711, 7, 8, 1234]);
  const g = new Flattener();
  g.beginLayer();
  g.apply(entry("/app", "dir", 0o40711, 1234));
  const r2 = g.finish();
  assertEquals([r2.stat.mode, r2.stat.uid, r2.stat.gid, r2.stat.mtimeSec, r2.stat.xattrs.size], [
    0o755,
    0,
    0,
    0,
    0,
  ]);
});
