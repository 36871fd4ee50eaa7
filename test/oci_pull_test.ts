// End-to-end tests of `cfsctl oci …` over the local transports, through the CLI as users run it.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli } from "./helpers/cli.ts";
import { tarMember } from "./helpers/tar_fixtures.ts";
import { concatBytes } from "../lib/util/bytes.ts";
import { LIVE_MAX_ENTRIES } from "../lib/oci/image_tree.ts";
import {
  addImage,
  type Compression,
  sha256,
  tarDirectory,
  writeArtifactLayout,
} from "./helpers/oci_builder.ts";

async function sh(cmd: string, args: string[], cwd?: string): Promise<string> {
  const o = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (o.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  return new TextDecoder().decode(o.stdout);
}

async function cfs(repo: string, args: string[], expectCode = 0) {
  const r = await runCli(["--repo", repo, ...args]);
  if (r.code !== expectCode) {
    throw new Error(
      `cfsctl ${args.join(" ")} exited ${r.code} (wanted ${expectCode}):\n${r.stderr}${r.stdout}`,
    );
  }
  return r;
}

async function newRepo(dir: string, ...initArgs: string[]): Promise<string> {
  const repo = `${dir}/repo`;
  await cfs(repo, ["init", "--insecure", ...initArgs]);
  return repo;
}

/** Every file under objects/ (relative paths), to see what a command stored. */
async function objectSet(repo: string): Promise<Set<string>> {
  const out = new Set<string>();
  const top = await Array.fromAsync(Deno.readDir(`${repo}/objects`)).catch(() => []);
  for (const d of top) {
    if (!d.isDirectory) continue;
    for await (const f of Deno.readDir(`${repo}/objects/${d.name}`)) out.add(`${d.name}/${f.name}`);
  }
  return out;
}

async function streamSet(repo: string): Promise<Set<string>> {
  const out = new Set<string>();
  try {
    for await (const e of Deno.readDir(`${repo}/streams`)) if (e.name !== "refs") out.add(e.name);
  } catch { /* none */ }
  return out;
}

/** The layer of composefs-rs' integration test ("OCI layout"). */
async function pinnedLayer(dir: string): Promise<Uint8Array> {
  const src = `${dir}/pinned-src`;
  await Deno.mkdir(`${src}/usr`, { recursive: true });
  await Deno.writeTextFile(`${src}/hello.txt`, "hello from test layer\n");
  await Deno.link(`${src}/hello.txt`, `${src}/hello-link.txt`);
  await Deno.chmod(`${src}/usr`, 0o755);
  await Deno.chmod(`${src}/hello.txt`, 0o644);
  const t = new Date(1234567890 * 1000);
  for (const p of ["usr", "hello.txt"]) await Deno.utime(`${src}/${p}`, t, t);
  const o = await new Deno.Command("tar", {
    args: [
      "-c",
      "-f",
      "-",
      "--format=gnu",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "usr",
      "hello.txt",
      "hello-link.txt",
    ],
    cwd: src,
    stdout: "piped",
  }).output();
  return o.stdout;
}

Deno.test("oci pull: pinned composefs-rs image ids for the OCI-layout fixture (SHA-512, V2 and V1)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tar = await pinnedLayer(dir);
    await addImage(`${dir}/layout`, { tag: "v1", layers: [{ tar }] });
    const repo2 = await newRepo(`${dir}/r2`);
    await cfs(repo2, ["oci", "pull", `oci:${dir}/layout:v1`, "img"]);
    const v2 = (await cfs(repo2, ["oci", "compute-id", "img"])).stdout.trim();
    assertEquals(
      v2,
      "f7684c21050615c02cec250e0c7d4118fb0ff6340af5039e06f2f372a7614fff25dfd38cf7f28ad67d8b86e86371b7deafa9ae4bf543630322aee6196417de92",
    );
    // The linked image is the same id, and it exists in images/.
    const inspect = JSON.parse((await cfs(repo2, ["oci", "inspect", "img"])).stdout);
    assertEquals(inspect.composefs_erofs, v2);
    await Deno.lstat(`${repo2}/images/${v2}`);

    const repo1 = await newRepo(`${dir}/r1`, "--erofs-version", "1");
    await cfs(repo1, ["oci", "pull", `oci:${dir}/layout:v1`, "img"]);
    const v1 = (await cfs(repo1, ["oci", "compute-id", "img"])).stdout.trim();
    assertEquals(
      v1,
      "d06f1f6a73f62ed48e05ce9442ff045cdf2a9f5ba1ec623795de3d6177a253d91076459795d94f55d8c3d71dab458bb3fc0071255a50c0a4896d86ffdc870b9a",
    );
    // compute-id by config digest re-verifies the layers and agrees.
    const cfg = JSON.parse((await cfs(repo1, ["oci", "inspect", "img", "--manifest"])).stdout).config.digest;
    assertEquals((await cfs(repo1, ["oci", "compute-id", `@${cfg}`])).stdout.trim(), v1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A two-layer image exercising whiteouts, opaque dirs, type changes, hard links across layers. */
async function richLayers(dir: string): Promise<Uint8Array[]> {
  const a = `${dir}/la`;
  const mk = async (p: string, text: string, mode = 0o644) => {
    await Deno.mkdir(p.slice(0, p.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(p, text);
    await Deno.chmod(p, mode);
  };
  await mk(
    `${a}/usr/bin/tool`,
    "#!/bin/sh\necho tool version one, a file long enough to be stored as an object\n",
    0o755,
  );
  await mk(`${a}/etc/config`, "config of layer a\n");
  await mk(`${a}/etc/gone`, "removed by a whiteout in layer b\n");
  await mk(`${a}/opaque/old1`, "hidden by the opaque marker\n");
  await mk(`${a}/opaque/sub/old2`, "hidden too\n");
  await mk(`${a}/becomes-dir`, "a file that layer b replaces with a directory\n");
  await Deno.mkdir(`${a}/becomes-file/x`, { recursive: true });
  await Deno.symlink("usr/bin/tool", `${a}/link-to-tool`);
  await Deno.mkdir(`${a}/run/lock`, { recursive: true });
  await mk(`${a}/run/lock/pid`, "1\n");
  const b = `${dir}/lb`;
  await mk(`${b}/etc/.wh.gone`, "");
  await mk(`${b}/opaque/.wh..wh..opq`, "");
  await mk(
    `${b}/opaque/new`,
    "the only entry left in /opaque after layer b, also long enough to be external\n",
  );
  await mk(`${b}/becomes-dir/inside`, "now a directory\n");
  await mk(`${b}/becomes-file`, "now a file\n");
  await mk(`${b}/etc/config`, "config of layer b, replaces layer a's version of this file entirely\n");
  await Deno.mkdir(`${b}/usr/bin`, { recursive: true });
  await Deno.link(`${b}/etc/config`, `${b}/usr/bin/config-hardlink`);
  return [
    await tarDirectory(a, { rootOwner: true }),
    await tarDirectory(b, { rootOwner: true }),
  ];
}

Deno.test("oci pull: gzip, zstd and uncompressed layers give one image id; a re-pull stores nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tars = await richLayers(dir);
    const ids = new Set<string>();
    const repo = await newRepo(dir);
    for (const c of ["none", "gzip", "zstd"] as Compression[]) {
      await addImage(`${dir}/layout-${c}`, {
        tag: "t",
        layers: tars.map((tar) => ({ tar, compression: c })),
      });
      const r = await cfs(repo, ["oci", "pull", `oci:${dir}/layout-${c}:t`, `img-${c}`]);
      assertMatch(
        r.stdout,
        /^manifest sha256:[0-9a-f]{64}\nconfig {3}sha256:[0-9a-f]{64}\nverity {3}[0-9a-f]{128}\ntagged {3}img-/,
      );
      ids.add((await cfs(repo, ["oci", "compute-id", `img-${c}`])).stdout.trim());
    }
    assertEquals(ids.size, 1);
    const before = await objectSet(repo);
    const streamsBefore = await streamSet(repo);
    const again = await cfs(repo, ["oci", "pull", `oci:${dir}/layout-zstd:t`, "img-zstd"]);
    assertMatch(again.stdout, /objects {2}0 new/);
    assertEquals(await objectSet(repo), before);
    assertEquals(await streamSet(repo), streamsBefore);
    // The printed verity names the manifest stream that is kept.
    const verity = /verity {3}([0-9a-f]+)/.exec(again.stdout)![1];
    const target = await Deno.readLink(
      `${repo}/streams/oci-manifest-${
        JSON.parse((await cfs(repo, ["oci", "images", "--json"])).stdout).images.find((i: any) =>
          i.name === "img-zstd"
        ).manifest_digest
      }`,
    );
    assertEquals(target.replace(/.*objects\//, "").replace("/", ""), verity);
    const fsck = await cfs(repo, ["oci", "fsck"]);
    assertMatch(fsck.stdout, /oci images: 3\/3 ok/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci pull: whiteouts, opaque directories, type changes and hard links flatten per the OCI spec", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tars = await richLayers(dir);
    await addImage(`${dir}/layout`, { tag: "t", layers: tars.map((tar) => ({ tar, compression: "gzip" })) });
    const repo = await newRepo(dir);
    await cfs(repo, ["oci", "pull", `oci:${dir}/layout:t`, "img"]);
    const dump = (await cfs(repo, ["oci", "dump", "img"])).stdout;
    const paths = dump.trimEnd().split("\n").map((l) => l.split(" ")[0]);
    assert(!paths.includes("/etc/gone"), "whiteout removed /etc/gone");
    assert(
      !paths.includes("/opaque/old1") && !paths.includes("/opaque/sub"),
      "opaque dir hides lower entries",
    );
    assert(paths.includes("/opaque/new"), "same-layer entry survives the opaque marker");
    assert(paths.includes("/becomes-dir/inside"), "file replaced by a directory");
    assert(!paths.includes("/becomes-file/x"), "directory replaced by a file");
    assert(!paths.includes("/run/lock"), "/run emptied");
    const line = (p: string) => dump.split("\n").find((l) => l.startsWith(p + " "))!;
    assertMatch(line("/becomes-file"), / 100644 /);
    // hard link across names inside one layer: one full line and one @ line
    const hl = [line("/etc/config"), line("/usr/bin/config-hardlink")];
    assert(hl.some((l) => / @120000 /.test(l)) && hl.some((l) => / 100644 2 /.test(l)), hl.join("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci pull: the lowest layer, flattened while it is split, gives the image its streams give", async () => {
  // docs/oci.md#flatten: the lowest layer's tree is built from the splitter's entries, the others
  // from their streams; `oci compute-id` builds every layer from its stream. Enough files that the
  // store goes through its write worker (ids arriving later), files straddling decoder chunks,
  // > 1 MiB files, hard links, symlinks, inline and empty files.
  const dir = await Deno.makeTempDir();
  try {
    const [a, b] = await richLayers(dir);
    const big = `${dir}/big`;
    await Deno.mkdir(`${big}/usr/lib/many`, { recursive: true });
    let x = 7;
    for (let i = 0; i < 700; i++) {
      const n = [0, 10, 64, 65, 100, 4096, 70_000][i % 7] + (i % 13);
      const data = new Uint8Array(n).map(() => (x = (x * 1103515245 + 12345) & 0xff));
      await Deno.writeFile(`${big}/usr/lib/many/f${i}`, data);
    }
    const huge = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
    await Deno.writeFile(`${big}/usr/lib/huge`, huge);
    await Deno.link(`${big}/usr/lib/huge`, `${big}/usr/lib/huge-link`);
    await Deno.symlink("huge", `${big}/usr/lib/huge-sym`);
    const lowest = await tarDirectory(big, { rootOwner: true });
    for (const c of ["gzip", "zstd"] as Compression[]) {
      await addImage(`${dir}/layout-${c}`, {
        tag: "t",
        layers: [lowest, a, b].map((tar) => ({ tar, compression: c })),
      });
      const repo = await newRepo(`${dir}/r-${c}`);
      await cfs(repo, ["oci", "pull", `oci:${dir}/layout-${c}:t`, "img"]);
      const linked = JSON.parse((await cfs(repo, ["oci", "inspect", "img"])).stdout).composefs_erofs;
      assertEquals((await cfs(repo, ["oci", "compute-id", "img"])).stdout.trim(), linked);
      const dump = (await cfs(repo, ["oci", "dump", "img"])).stdout;
      assert(dump.includes("/usr/lib/many/f699 "), "the lowest layer's files are in the image");
      assert(!dump.includes("/etc/gone "), "upper layers still apply over the live-flattened one");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci pull: a lowest layer over the live-flatten cap is read back from its stream, same image", async () => {
  // docs/oci.md#flatten: past LIVE_MAX_ENTRIES entries the tree built during the import is dropped (memory)
  // and the layer is flattened from its stored stream like the others; the image must not change.
  const dir = await Deno.makeTempDir();
  try {
    const [a, b] = await richLayers(dir);
    const enc = new TextEncoder();
    const members: Uint8Array[] = [tarMember({ name: "usr/", type: "5", mode: 0o755 })];
    const dirs = 40;
    for (let d = 0; d < dirs; d++) members.push(tarMember({ name: `usr/d${d}/`, type: "5", mode: 0o755 }));
    const files = LIVE_MAX_ENTRIES + 500;
    for (let i = 0; i < files; i++) {
      // Empty, inline (≤ 64 bytes) and object-backed contents, distinct per file.
      const body = i % 3 === 0 ? "" : `file ${i} `.repeat(i % 3 === 1 ? 2 : 12);
      members.push(tarMember({ name: `usr/d${i % dirs}/f${i}`, mode: 0o644 }, enc.encode(body)));
    }
    members.push(new Uint8Array(1024));
    const lowest = concatBytes(members);
    await addImage(`${dir}/layout`, {
      tag: "t",
      layers: [lowest, a, b].map((tar) => ({ tar, compression: "gzip" })),
    });
    const repo = await newRepo(`${dir}/r`);
    await cfs(repo, ["oci", "pull", `oci:${dir}/layout:t`, "img"]);
    const linked = JSON.parse((await cfs(repo, ["oci", "inspect", "img"])).stdout).composefs_erofs;
    assertEquals((await cfs(repo, ["oci", "compute-id", "img"])).stdout.trim(), linked);
    const dump = (await cfs(repo, ["oci", "dump", "img"])).stdout;
    const last = files - 1;
    assert(dump.includes(`/usr/d${last % dirs}/f${last} `), "the lowest layer's last file is in the image");
    assert(!dump.includes("/etc/gone "), "upper layers still apply");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci layer: every stored layer reassembles to its diff_id; --json and --dumpfile describe it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tars = await richLayers(dir);
    const img = await addImage(`${dir}/layout`, {
      tag: "t",
      layers: tars.map((tar) => ({ tar, compression: "zstd" })),
    });
    const repo = await newRepo(dir);
    await cfs(repo, ["oci", "pull", `oci:${dir}/layout:t`]);
    for (let i = 0; i < tars.length; i++) {
      const diffId = img.diffIds[i];
      const raw = await runCli(["--repo", repo, "oci", "layer", diffId]);
      assertEquals(raw.code, 0);
      assertEquals(sha256(raw.stdoutBytes), diffId);
      const j = JSON.parse((await cfs(repo, ["oci", "layer", diffId, "--json"])).stdout);
      assertEquals(j.diffId, diffId);
      assertEquals(j.size, tars[i].length);
      assertEquals(j.splitstream.inlineSize + j.splitstream.externalSize, tars[i].length);
      const d = (await cfs(repo, ["oci", "layer", diffId, "--dumpfile"])).stdout;
      // one dumpfile line per tar entry
      await Deno.writeFile(`${dir}/layer.tar`, tars[i]);
      const listed = (await sh("tar", ["-t", "-f", `${dir}/layer.tar`])).trimEnd().split("\n");
      assertEquals(d.trimEnd().split("\n").length, listed.length, d);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci pull: tampered blobs and lying configs are rejected and leave nothing visible", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tars = await richLayers(dir);
    const repo = await newRepo(dir);
    const cases: [string, Parameters<typeof addImage>[1], RegExp][] = [
      ["flipped", {
        tag: "t",
        layers: [{
          tar: tars[0],
          compression: "gzip",
          mutateBlob: (b) => b.map((x, i) => (i === 100 ? x ^ 1 : x)),
        }],
      }, /digest mismatch|invalid|corrupt|gzip|incorrect/i],
      ["truncated", {
        tag: "t",
        layers: [{ tar: tars[0], compression: "zstd", mutateBlob: (b) => b.subarray(0, b.length - 20) }],
      }, /truncated|digest|mismatch|unexpected end/i],
      [
        "lying-diffid",
        { tag: "t", layers: [{ tar: tars[0] }], diffIds: [sha256(tars[1])] },
        /diff_id|mismatch/i,
      ],
    ];
    for (const [name, spec, re] of cases) {
      const layout = `${dir}/layout-${name}`;
      await addImage(layout, spec);
      const before = await objectSet(repo);
      const streams = await streamSet(repo);
      const r = await runCli(["--repo", repo, "oci", "pull", `oci:${layout}:t`, name]);
      assert(r.code !== 0, `${name}: pull must fail`);
      assertMatch(r.stderr, /^error: /m);
      assertMatch(r.stderr, re);
      assertEquals(await streamSet(repo), streams, `${name}: no stream became visible`);
      const imgs = JSON.parse((await cfs(repo, ["oci", "images", "--json"])).stdout).images;
      assertEquals(imgs.length, 0);
      // objects that were completed may stay as garbage; gc must remove all of them.
      await cfs(repo, ["gc"]);
      assertEquals(await objectSet(repo), before);
    }
    const fsck = await cfs(repo, ["fsck"]);
    assertMatch(fsck.stdout, /status: ok/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci untag + gc removes exactly the image's unshared objects", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tars = await richLayers(dir);
    const repo = await newRepo(dir);
    await addImage(`${dir}/l1`, { tag: "t", layers: [{ tar: tars[0] }] });
    await addImage(`${dir}/l2`, { tag: "t", layers: [{ tar: tars[0] }, { tar: tars[1] }] });
    await cfs(repo, ["oci", "pull", `oci:${dir}/l1:t`, "one"]);
    const afterOne = await objectSet(repo);
    await cfs(repo, ["oci", "pull", `oci:${dir}/l2:t`, "two"]);
    const dry = await cfs(repo, ["gc", "--dry-run"]);
    assertMatch(dry.stdout, /Objects: 0 removed/);
    await cfs(repo, ["oci", "untag", "two"]);
    await cfs(repo, ["gc"]);
    assertEquals(await objectSet(repo), afterOne);
    assertMatch((await cfs(repo, ["oci", "fsck"])).stdout, /oci images: 1\/1 ok/);
    // the remaining image still mounts-level complete: compute-id works
    await cfs(repo, ["oci", "compute-id", "one"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci pull: oci-archive, docker-archive and dir transports give the layout's image id", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tars = await richLayers(dir);
    await addImage(`${dir}/layout`, { tag: "t", layers: tars.map((tar) => ({ tar, compression: "gzip" })) });
    const repo = await newRepo(dir);
    await cfs(repo, ["oci", "pull", `oci:${dir}/layout:t`, "ref"]);
    const want = (await cfs(repo, ["oci", "compute-id", "ref"])).stdout.trim();
    await sh("skopeo", ["copy", "-q", `oci:${dir}/layout:t`, `oci-archive:${dir}/img.oci.tar:t`]);
    await sh("skopeo", [
      "copy",
      "-q",
      `oci:${dir}/layout:t`,
      `docker-archive:${dir}/img.docker.tar:example/img:1`,
    ]);
    await sh("skopeo", ["copy", "-q", `oci:${dir}/layout:t`, `dir:${dir}/img.dir`]);
    for (
      const src of [
        `oci-archive:${dir}/img.oci.tar:t`,
        `docker-archive:${dir}/img.docker.tar`,
        `dir:${dir}/img.dir`,
      ]
    ) {
      const r2 = await newRepo(`${dir}/${src.split(":")[0]}`);
      await cfs(r2, ["oci", "pull", src, "x"]);
      assertEquals((await cfs(r2, ["oci", "compute-id", "x"])).stdout.trim(), want, src);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci pull: Docker schema 2 media types (skopeo --format v2s2) give the OCI image's id", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tars = await richLayers(dir);
    await addImage(`${dir}/layout`, { tag: "t", layers: tars.map((tar) => ({ tar, compression: "gzip" })) });
    const repo = await newRepo(dir);
    await cfs(repo, ["oci", "pull", `oci:${dir}/layout:t`, "oci"]);
    await sh("skopeo", ["copy", "-q", "--format", "v2s2", `oci:${dir}/layout:t`, `dir:${dir}/v2s2`]);
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/v2s2/manifest.json`));
    assertEquals(manifest.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
    await cfs(repo, ["oci", "pull", `dir:${dir}/v2s2`, "docker"]);
    assertEquals(
      (await cfs(repo, ["oci", "compute-id", "docker"])).stdout,
      (await cfs(repo, ["oci", "compute-id", "oci"])).stdout,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci pull: a zstd:chunked-style layer (several frames plus skippable frames) imports", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tars = await richLayers(dir);
    const tar = tars[0];
    const zstd = async (b: Uint8Array) => {
      const p = new Deno.Command("zstd", { args: ["-q", "-c"], stdin: "piped", stdout: "piped" }).spawn();
      const out = p.output();
      const w = p.stdin.getWriter();
      await w.write(b);
      await w.close();
      return (await out).stdout;
    };
    const cut = 3000;
    const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
    const parts = [await zstd(tar.subarray(0, cut)), skippable, await zstd(tar.subarray(cut)), skippable];
    const blob = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      blob.set(p, o);
      o += p.length;
    }
    await addImage(`${dir}/layout`, {
      tag: "t",
      layers: [{ tar, compression: "zstd", mutateBlob: () => blob }],
    });
    await addImage(`${dir}/plain`, { tag: "t", layers: [{ tar }] });
    const repo = await newRepo(dir);
    await cfs(repo, ["oci", "pull", `oci:${dir}/layout:t`, "chunked"]);
    await cfs(repo, ["oci", "pull", `oci:${dir}/plain:t`, "plain"]);
    assertEquals(
      (await cfs(repo, ["oci", "compute-id", "chunked"])).stdout,
      (await cfs(repo, ["oci", "compute-id", "plain"])).stdout,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oci pull: an OCI artifact is stored as raw blobs, tagged, listed as 'artifact', and passes fsck", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const layout = `${dir}/layout`;
    const payload = new TextEncoder().encode("signature or SBOM payload, not a tar at all\n".repeat(10));
    const { layer } = await writeArtifactLayout(layout, payload, {
      artifactType: "application/vnd.example.sbom",
    });
    const repo = await newRepo(dir);
    await cfs(repo, ["oci", "pull", `oci:${layout}:sbom`, "sbom"]);
    const images = JSON.parse((await cfs(repo, ["oci", "images", "--json"])).stdout).images;
    assertEquals(images.length, 1);
    assertEquals(images[0].is_container, false);
    assertMatch((await cfs(repo, ["oci", "images"])).stdout, /artifact/);
    const raw = await runCli(["--repo", repo, "oci", "layer", layer.digest]);
    assertEquals(raw.code, 0, raw.stderr);
    assertEquals(raw.stdoutBytes, payload);
    assertMatch((await cfs(repo, ["oci", "fsck"])).stdout, /oci images: 1\/1 ok/);
    const r = await runCli(["--repo", repo, "oci", "compute-id", "sbom"]);
    assertEquals(r.code, 2);
    assertMatch(r.stderr, /artifact/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
