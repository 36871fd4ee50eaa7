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
import { END, paxMember, tarMember } from "./helpers/tar_fixtures.ts";
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
    tarMember({ name: "etc/", type: "5", mode: 0o755 }),
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

/** Pulls `oci:DIR:t` (or another reference) into a fresh repository; expects a clean failure. */
async function pullFails(tmp: string, ref: string, re: RegExp, limitSeconds = 20) {
  const repo = `${tmp}/repo-${crypto.randomUUID().slice(0, 8)}`;
  await newRepo(repo);
  const r = await runCliMeasured(["--repo", repo, "oci", "pull", ref, "x"], limitSeconds);
  assert(r.code !== 0 && r.code !== 137, `exit ${r.code}: ${r.stderr}`);
  assertMatch(r.stderr, re);
  assert(r.maxRssKiB < RSS_LIMIT_KIB, `peak RSS ${r.maxRssKiB} KiB`);
  // Nothing was registered, and the repository still lists (no half-stored image).
  assertEquals((await streams(repo)).filter((s) => !s.startsWith("oci-layer-")), []);
  const list = await runCli(["--repo", repo, "oci", "images", "--json"]);
  assertEquals(list.code, 0, list.stderr);
  assertEquals(JSON.parse(list.stdout).length ?? JSON.parse(list.stdout).images?.length, 0);
  return r;
}

async function mkfifo(path: string): Promise<void> {
  const o = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert(o.success, "mkfifo failed");
}

Deno.test("FIFOs and devices where layout files belong are refused at once, naming the file", async () => {
  await using tmp = await tempDir();
  const parts = ["index.json", "manifest", "config", "layer"] as const;
  for (const part of parts) {
    const lay = await buildLayout(`${tmp.path}/fifo-${part}`, [plainLayer(smallTar())]);
    const path = part === "index.json" ? `${lay.dir}/index.json` : lay.blobPath(
      part === "manifest"
        ? lay.manifestDigest
        : part === "config"
        ? lay.configDigest
        : lay.manifest.layers[0].digest,
    );
    await Deno.remove(path);
    await mkfifo(path);
    const r = await pullFails(tmp.path, `oci:${lay.dir}:t`, /is a FIFO, not a regular file/);
    assert(r.stderr.includes(path.slice(lay.dir.length + 1)), r.stderr);
  }
  for (const part of ["index.json", "manifest", "config", "layer"] as const) {
    const lay = await buildLayout(`${tmp.path}/zero-${part}`, [plainLayer(smallTar())]);
    const path = part === "index.json" ? `${lay.dir}/index.json` : lay.blobPath(
      part === "manifest"
        ? lay.manifestDigest
        : part === "config"
        ? lay.configDigest
        : lay.manifest.layers[0].digest,
    );
    await Deno.remove(path);
    await Deno.symlink("/dev/zero", path);
    await pullFails(tmp.path, `oci:${lay.dir}:t`, /is a character device, not a regular file/);
  }
});

Deno.test("a layout file that links to a big regular file is limited by the bytes read", async () => {
  await using tmp = await tempDir();
  const lay = await buildLayout(`${tmp.path}/big`, [plainLayer(smallTar())]);
  const big = `${tmp.path}/big-file`;
  const f = await Deno.open(big, { write: true, create: true });
  await f.truncate(64 << 20); // sparse: 64 MiB of zeros
  f.close();
  await Deno.remove(`${lay.dir}/index.json`);
  await Deno.symlink(big, `${lay.dir}/index.json`);
  await pullFails(tmp.path, `oci:${lay.dir}:t`, /index\.json is larger than 8388608 bytes/);
});

Deno.test("JSON errors name the file and never echo its content", async () => {
  await using tmp = await tempDir();
  const secret = `${tmp.path}/shadow`;
  await Deno.writeTextFile(secret, "root:$6$SECRET-HASH-DO-NOT-PRINT:19000:0:99999:7:::\n");
  const lay = await buildLayout(`${tmp.path}/leak`, [plainLayer(smallTar())]);
  await Deno.remove(`${lay.dir}/index.json`);
  await Deno.symlink(secret, `${lay.dir}/index.json`);
  const r = await pullFails(tmp.path, `oci:${lay.dir}:t`, /index\.json: invalid JSON \(\d+ bytes/);
  assert(!r.stderr.includes("SECRET") && !r.stderr.includes("root:"), r.stderr);
  // The same for a manifest whose digest matches but whose content is not JSON.
  const bad = enc.encode("root:SECRET-HASH");
  const lay2 = await buildLayout(`${tmp.path}/leak2`, [plainLayer(smallTar())], {
    index: (_i, desc) => {
      desc.digest = digestOf(bad);
      desc.size = bad.length;
    },
  });
  await Deno.writeFile(lay2.blobPath(digestOf(bad)), bad);
  const r2 = await pullFails(tmp.path, `oci:${lay2.dir}:t`, /manifest sha256:[0-9a-f]{64}: invalid JSON/);
  assert(!r2.stderr.includes("SECRET"), r2.stderr);
});

/** Makes an oci-archive (tar of the layout directory, symlinks kept as symlinks) with GNU tar. */
async function archive(dir: string, out: string): Promise<void> {
  const o = await new Deno.Command("tar", { args: ["-cf", out, "-C", dir, "."], stderr: "piped" }).output();
  assert(o.success, new TextDecoder().decode(o.stderr));
}

Deno.test("oci-archive: symlink members are resolved inside the archive and held to the size limit", async () => {
  await using tmp = await tempDir();
  // A symlinked manifest blob (relative to its directory, as `ln -s` writes it) is followed.
  const lay = await buildLayout(`${tmp.path}/ok`, [plainLayer(smallTar())]);
  const mpath = lay.blobPath(lay.manifestDigest);
  await Deno.rename(mpath, `${lay.dir}/manifest.real`);
  await Deno.symlink("../../manifest.real", mpath);
  await archive(lay.dir, `${tmp.path}/ok.tar`);
  const repo = `${tmp.path}/repo-ok`;
  await newRepo(repo);
  const ok = await runCliMeasured(["--repo", repo, "oci", "pull", `oci-archive:${tmp.path}/ok.tar:t`, "ok"]);
  assertEquals(ok.code, 0, ok.stderr);
  assertMatch(await images(repo), /ok/);

  // index.json as a 0-byte symlink member to a 64 MiB member: refused by the target's size.
  const lay2 = await buildLayout(`${tmp.path}/big`, [plainLayer(smallTar())]);
  await Deno.writeFile(`${lay2.dir}/huge`, new Uint8Array(64 << 20));
  await Deno.remove(`${lay2.dir}/index.json`);
  await Deno.symlink("huge", `${lay2.dir}/index.json`);
  await archive(lay2.dir, `${tmp.path}/big.tar`);
  await pullFails(
    tmp.path,
    `oci-archive:${tmp.path}/big.tar:t`,
    /member index\.json is too large \(67108864 bytes/,
  );

  // A link that climbs out of the archive leads nowhere (nothing outside the archive is read).
  const lay3 = await buildLayout(`${tmp.path}/out`, [plainLayer(smallTar())]);
  await Deno.remove(`${lay3.dir}/index.json`);
  await Deno.symlink("../../../../../../etc/passwd", `${lay3.dir}/index.json`);
  await archive(lay3.dir, `${tmp.path}/out.tar`);
  await pullFails(tmp.path, `oci-archive:${tmp.path}/out.tar:t`, /no member "index\.json"/);
});

Deno.test("descriptor sizes: negative, absurd, non-numeric and wrong sizes are refused", async () => {
  await using tmp = await tempDir();
  const cases: [string, Parameters<typeof buildLayout>[2], RegExp][] = [
    ["manifest -1", { index: (_i, d) => (d.size = -1) }, /manifest sha256:[0-9a-f]+: invalid size -1/],
    ["manifest +1", { index: (_i, d) => (d.size += 1) }, /bytes, but its descriptor declares/],
    ["manifest string", { index: (_i, d) => (d.size = "12") }, /invalid size "12"/],
    ["manifest missing", { index: (_i, d) => delete d.size }, /invalid size \(missing\)/],
    ["config -1", { manifest: (m) => (m.config.size = -1) }, /config sha256:[0-9a-f]+: invalid size -1/],
    ["config wrong", { manifest: (m) => (m.config.size -= 1) }, /config.*(larger than|declares)/],
    [
      "layer 2^50",
      { manifest: (m) => (m.layers[0].size = 2 ** 50) },
      /layer 0 sha256:[0-9a-f]+: size \d+ exceeds the limit/,
    ],
    [
      "layer 1.5",
      { manifest: (m) => (m.layers[0].size = 1.5) },
      /layer 0 sha256:[0-9a-f]+: invalid size 1.5/,
    ],
    ["layer -1", { manifest: (m) => (m.layers[0].size = -1) }, /layer 0 sha256:[0-9a-f]+: invalid size -1/],
  ];
  for (const [name, edit, re] of cases) {
    const lay = await buildLayout(`${tmp.path}/${name.replaceAll(" ", "_")}`, [plainLayer(smallTar())], edit);
    await pullFails(tmp.path, `oci:${lay.dir}:t`, re);
  }
});

Deno.test("sha512 manifest digests are refused at pull time; the repository keeps listing", async () => {
  await using tmp = await tempDir();
  const lay = await buildLayout(`${tmp.path}/s512`, [plainLayer(smallTar())], { manifestAlg: "sha512" });
  assertMatch(lay.index.manifests[0].digest, /^sha512:[0-9a-f]{128}$/);
  await pullFails(tmp.path, `oci:${lay.dir}:t`, /manifest digest sha512:[0-9a-f]{128}: only sha256 digests/);
  const lay2 = await buildLayout(`${tmp.path}/d512`, [plainLayer(smallTar())], {
    config: (c) => (c.rootfs.diff_ids = [digestOf(smallTar(), "sha512")]),
  });
  await pullFails(tmp.path, `oci:${lay2.dir}:t`, /diff_id sha512:[0-9a-f]{128}: only sha256 digests/);
});

Deno.test("uid above 32 bits and NUL in a link target: the pull fails naming the entry, nothing is tagged", async () => {
  await using tmp = await tempDir();
  const uid = concatBytes([
    usrDir(),
    paxMember([["uid", String(2 ** 40)]]),
    tarMember({ name: "usr/bin/su" }, enc.encode("x")),
    END,
  ]);
  const lay = await buildLayout(`${tmp.path}/uid`, [plainLayer(uid)]);
  await pullFails(
    tmp.path,
    `oci:${lay.dir}:t`,
    /"\/usr\/bin\/su": uid 1099511627776 does not fit in 32 bits/,
  );
  const nul = concatBytes([
    usrDir(),
    paxMember([["linkpath", "/etc\0/shadow"]]),
    tarMember({ name: "usr/l", type: "2" }),
    END,
  ]);
  const lay2 = await buildLayout(`${tmp.path}/nul`, [plainLayer(nul)]);
  await pullFails(tmp.path, `oci:${lay2.dir}:t`, /link target "\/etc\\u0000\/shadow" contains a NUL byte/);
});
