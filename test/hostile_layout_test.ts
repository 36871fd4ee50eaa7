// Hostile OCI layouts and archives pulled through the CLI (issue 11, items 2 and 5-8): data after a
// layer's end-of-archive blocks, FIFOs/devices/symlinks where blobs belong, symlink members of
// oci-archive files, JSON errors that must not echo file contents, descriptor sizes, sha512 digests.
// Every pull runs under GNU time: its peak RSS is part of what is asserted.
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import {
  buildLayout,
  digestOf,
  enc,
  type HostileLayer,
  MT,
  newRepo,
  runCliMeasured,
} from "./helpers/hostile_layout.ts";
import { END, tarMember } from "./helpers/tar_fixtures.ts";
import { concatBytes } from "../lib/util/bytes.ts";

const RSS_LIMIT_KIB = 300 * 1024;

function plainLayer(tar: Uint8Array): HostileLayer {
  return { blob: tar, mediaType: MT.tar, diffId: digestOf(tar) };
}

/** The image tree takes the root's metadata from /usr: every test image has one. */
function usrDir(): Uint8Array {
  return tarMember({ name: "usr/", type: "5", mode: 0o755 });
}

function smallTar(): Uint8Array {
  return concatBytes([
    usrDir(),
    tarMember(
      { name: "etc/hello" },
      enc.encode("hello, hostile world: more than sixty-four bytes of content here"),
    ),
    END,
  ]);
}

async function images(repo: string): Promise<string> {
  const r = await runCli(["--repo", repo, "oci", "images"]);
  return r.stdout + r.stderr;
}

async function streams(repo: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(`${repo}/streams`)).catch(() => []))
    .map((e) => e.name).filter((n) => n !== "refs").sort();
}

Deno.test("a layer followed by 1 GiB of zeros is pulled in bounded memory and reassembles", async () => {
  await using tmp = await tempDir();
  const head = concatBytes([usrDir(), tarMember({ name: "f" }, new Uint8Array(100).fill(7)), END]);
  // gzip members concatenate: one member of 1 MiB of zeros, 1024 times.
  const MiB = 1 << 20;
  const zeroMember = gzipSync(new Uint8Array(MiB), { level: 9 });
  const parts = [gzipSync(head)];
  for (let i = 0; i < 1024; i++) parts.push(zeroMember);
  const blob = concatBytes(parts);
  const h = createHash("sha256").update(head);
  const zeros = new Uint8Array(MiB);
  for (let i = 0; i < 1024; i++) h.update(zeros);
  const diffId = "sha256:" + h.digest("hex");
  const lay = await buildLayout(`${tmp.path}/layout`, [{ blob, mediaType: MT.gzip, diffId }]);
  const repo = `${tmp.path}/repo`;
  await newRepo(repo);
  const r = await runCliMeasured(["--repo", repo, "oci", "pull", `oci:${lay.dir}:t`, "big"]);
  assertEquals(r.code, 0, r.stderr);
  // Before: the whole trailer was held in memory (about 1.3 GB of RSS for this input).
  assert(r.maxRssKiB < RSS_LIMIT_KIB, `peak RSS ${r.maxRssKiB} KiB`);
  // The stored layer still reproduces the original stream (its size and digest).
  const info = await runCli(["--repo", repo, "oci", "layer", diffId, "--json"]);
  assertEquals(info.code, 0, info.stderr);
  const j = JSON.parse(info.stdout);
  assertEquals(j.size, head.length + 1024 * MiB);
});

Deno.test("non-zero data after the end-of-archive blocks is limited", async () => {
  await using tmp = await tempDir();
  const junk = new Uint8Array(17 << 20);
  for (let i = 0; i < junk.length; i += 4096) junk[i] = 1;
  const tar = concatBytes([smallTar(), junk]);
  const lay = await buildLayout(`${tmp.path}/layout`, [plainLayer(tar)]);
  const repo = `${tmp.path}/repo`;
  await newRepo(repo);
  const r = await runCliMeasured(["--repo", repo, "oci", "pull", `oci:${lay.dir}:t`, "junk"]);
  assert(r.code !== 0);
  assertMatch(r.stderr, /non-zero data after the end-of-archive blocks/);
  assertEquals(await streams(repo), []);
});
