// `--json` of every command that has it (docs/json-output.md): the output parses, has the documented
// snake_case fields, and agrees with the text output and with independent tools (fsverity, sha256).
import { assert, assertEquals, isRoot } from "./helpers/assert.ts";
import { PROJECT_ROOT, runCli, tempDir } from "./helpers/cli.ts";
import { sha256 } from "./helpers/oci_builder.ts";

const DEMO = `oci:${PROJECT_ROOT}examples/demo-image:latest`;

async function cfs(args: string[], opts: Parameters<typeof runCli>[1] = {}) {
  const r = await runCli(args, opts);
  if (r.code !== 0) throw new Error(`cfsctl ${args.join(" ")} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r;
}

/** Runs a command with --json and returns the parsed object (the whole stdout must be one JSON value). */
async function json(args: string[], opts: Parameters<typeof runCli>[1] = {}): Promise<any> {
  const r = await cfs(args, opts);
  return JSON.parse(r.stdout);
}

/** Asserts the exact set of top-level keys (the documented ones, no more, no fewer). */
function assertKeys(o: Record<string, unknown>, keys: string[], what: string, snakeCase = true): void {
  assertEquals(Object.keys(o).sort(), [...keys].sort(), what);
  if (snakeCase) { for (const k of Object.keys(o)) assert(/^[a-z][a-z0-9_]*$/.test(k), `${what}: ${k}`); }
}

async function fsverityDigest(path: string, alg: "sha256" | "sha512"): Promise<string> {
  const o = await new Deno.Command("fsverity", {
    args: ["digest", `--hash-alg=${alg}`, path],
    stdout: "piped",
  })
    .output();
  assert(o.success, "fsverity digest");
  return new TextDecoder().decode(o.stdout).split(" ")[0].split(":")[1];
}

/** A small directory: one file stored as an object (> 64 bytes), one inline, a symlink, /usr. */
async function sampleTree(dir: string): Promise<string> {
  const src = `${dir}/src`;
  await Deno.mkdir(`${src}/etc`, { recursive: true });
  await Deno.mkdir(`${src}/usr`); // create-image copies /usr's metadata to the root
  await Deno.writeTextFile(`${src}/etc/big`, "x".repeat(5000));
  await Deno.writeTextFile(`${src}/etc/small`, "hi\n");
  await Deno.symlink("big", `${src}/etc/link`);
  return src;
}

Deno.test("json: init, oci pull/images/inspect/compute-id/layer/tag/untag/import-layer/fsck, gc, fsck", async () => {
  await using d = await tempDir();
  const repo = `${d.path}/repo`;
  const init = await json(["--repo", repo, "init", "--insecure", "--json"]);
  assertKeys(init, ["path", "created", "algorithm", "verity_required", "erofs_versions"], "init");
  assertEquals(init, {
    path: repo,
    created: true,
    algorithm: "fsverity-sha512-12",
    verity_required: false,
    erofs_versions: [2],
  });
  const meta = JSON.parse(await Deno.readTextFile(`${repo}/meta.json`));
  assertEquals(meta.algorithm, init.algorithm);
  assertEquals((await json(["--repo", repo, "init", "--insecure", "--json"])).created, false);

  const R = ["--repo", repo];
  const pull = await json([...R, "oci", "pull", "--progress", "none", "--json", DEMO, "demo"]);
  assertKeys(pull, [
    "manifest",
    "config",
    "manifest_verity",
    "config_verity",
    "algorithm",
    "tagged",
    "is_container",
    "images",
    "stats",
  ], "oci pull");
  assertKeys(pull.stats, [
    "layers",
    "layers_skipped",
    "objects_new",
    "objects_present",
    "bytes_stored",
    "bytes_inlined",
    "bytes_fetched",
  ], "oci pull stats");
  assertEquals([pull.tagged, pull.is_container, pull.algorithm], ["demo", true, "sha512"]);
  const index = JSON.parse(await Deno.readTextFile(`${PROJECT_ROOT}examples/demo-image/index.json`));
  assertEquals(pull.manifest, index.manifests[0].digest);
  assert(pull.stats.objects_new > 0 && pull.stats.layers > 0);
  // The text output names the same manifest and verity.
  const text = (await cfs([...R, "oci", "pull", "--progress", "none", DEMO, "demo"])).stdout;
  assert(text.includes(`manifest ${pull.manifest}\n`) && text.includes(`verity   ${pull.manifest_verity}\n`));

  const images = await json([...R, "oci", "images", "--json"]);
  assertKeys(images.images[0], [
    "name",
    "manifest_digest",
    "is_container",
    "architecture",
    "os",
    "created",
    "layer_count",
    "referrer_count",
  ], "oci images");
  assertEquals(images.images.map((i: any) => [i.name, i.manifest_digest]), [["demo", pull.manifest]]);

  const inspect = await json([...R, "oci", "inspect", "demo", "--json"]);
  assertEquals(inspect, await json([...R, "oci", "inspect", "demo"]));
  assertKeys(
    inspect,
    ["manifest", "config", "referrers", "composefs_erofs", "composefs_boot_erofs"],
    "inspect",
  );
  assertEquals(sha256(new TextEncoder().encode(inspect.manifest)), pull.manifest);
  assertEquals(inspect.composefs_erofs, Object.values(pull.images)[0]);

  const cid = await json([...R, "oci", "compute-id", "demo", "--json"]);
  assertEquals(cid, { image_id: inspect.composefs_erofs, algorithm: "sha512", erofs_version: 2 });
  assertEquals((await cfs([...R, "oci", "compute-id", "demo"])).stdout, `${cid.image_id}\n`);

  const diffId: string = JSON.parse(inspect.config).rootfs.diff_ids[0];
  const layer = await json([...R, "oci", "layer", diffId, "--json"]);
  // composefs-rs 0.7.0's own field names (camelCase), kept for scripts written against cfsctl
  assertKeys(layer, ["diffId", "verity", "size", "entryCount", "splitstream"], "oci layer", false);
  const tar = (await cfs([...R, "oci", "layer", diffId])).stdoutBytes;
  assertEquals([layer.diffId, layer.size, sha256(tar)], [diffId, tar.length, diffId]);

  const tag = await json([...R, "oci", "tag", pull.manifest, "again", "--json"]);
  assertEquals(tag, { name: "again", manifest_digest: pull.manifest });
  const listed = (await json([...R, "oci", "images", "--json"])).images.map((i: any) => i.name).sort();
  assertEquals(listed, ["again", "demo"]);
  assertEquals(await json([...R, "oci", "untag", "again", "--json"]), { name: "again", removed: true });

  const imp = await json([...R, "oci", "import-layer", diffId, "mylayer", "--json"], { stdin: tar });
  assertEquals(imp, {
    diff_id: diffId,
    stream: `oci-layer-${diffId}`,
    verity: layer.verity,
    algorithm: "sha512",
    ref: "mylayer",
  });

  const ofsck = await json([...R, "oci", "fsck", "--json"]);
  assertKeys(ofsck, ["ok", "images_checked", "images_corrupted", "errors", "repo"], "oci fsck");
  assertEquals([ofsck.ok, ofsck.images_checked, ofsck.errors], [true, 1, []]);

  const fsck = await json([...R, "fsck", "--json"]);
  assertEquals(fsck, ofsck.repo);
  assertKeys(fsck, [
    "ok",
    "has_metadata",
    "objects_checked",
    "objects_corrupted",
    "streams_checked",
    "streams_corrupted",
    "images_checked",
    "images_corrupted",
    "broken_links",
    "missing_objects",
    "errors",
  ], "fsck");

  await cfs([...R, "oci", "untag", "demo"]);
  const gc = await json([...R, "gc", "--dry-run", "--json"]);
  assertKeys(gc, ["result", "dry_run"], "gc");
  assertKeys(gc.result, ["objects_removed", "objects_bytes", "images_pruned", "streams_pruned"], "gc result");
  assert(gc.dry_run && gc.result.objects_removed > 0);
  const done = await json([...R, "gc", "--json"]);
  assertEquals(done.result, gc.result);
  assertEquals((await json([...R, "gc", "--json"])).result.objects_removed, 0);
});

Deno.test("json: create-image, compute-id, image-objects, import-image agree with fsverity digest", async () => {
  await using d = await tempDir();
  const repo = `${d.path}/repo`;
  await cfs(["--repo", repo, "init", "--insecure"]);
  const R = ["--repo", repo];
  const src = await sampleTree(d.path);

  const created = await json([...R, "create-image", src, "sample", "--json"]);
  assertKeys(created, ["image_id", "algorithm", "ref", "images"], "create-image");
  assertEquals(created.images, [{ erofs_version: 2, image_id: created.image_id }]);
  assertEquals(created.ref, "sample");
  // The image file in the repository really has that fs-verity digest.
  assertEquals(await fsverityDigest(`${repo}/images/${created.image_id}`, "sha512"), created.image_id);
  assertEquals(await json([...R, "compute-id", src, "--json"]), {
    image_id: created.image_id,
    algorithm: "sha512",
    erofs_version: 2,
  });

  const objs = await json([...R, "image-objects", "refs/sample", "--json"]);
  assertEquals(objs, { algorithm: "sha512", objects: [await fsverityDigest(`${src}/etc/big`, "sha512")] });
  const objText = (await cfs([...R, "image-objects", "refs/sample"])).stdout;
  assertEquals(objText, objs.objects.map((h: string) => `sha512:${h}\n`).join(""));

  const img = await Deno.readFile(`${repo}/images/${created.image_id}`);
  const imported = await json([...R, "import-image", "copy", "--json"], { stdin: img });
  assertEquals(imported, { image_id: created.image_id, algorithm: "sha512", ref: "copy", size: img.length });
});

Deno.test("json: composefs-info ls, objects, missing-objects, measure-file", async () => {
  await using d = await tempDir();
  const src = await sampleTree(d.path);
  const image = `${d.path}/img.cfs`;
  await cfs(["mkcomposefs", src, image, "--digest-store", `${d.path}/store`]);
  const info = (args: string[]) => json(args, { invokedAs: "composefs-info" });
  const big = await fsverityDigest(`${src}/etc/big`, "sha256");
  const backing = `${big.slice(0, 2)}/${big.slice(2)}`;

  const ls = await info(["ls", "--json", image]);
  assertEquals(ls, {
    images: [{
      image,
      entries: [
        { path: "/etc", type: "directory" },
        { path: "/etc/big", type: "file", size: 5000, backing },
        { path: "/etc/link", type: "symlink", target: "big" },
        { path: "/etc/small", type: "file", size: 3 },
        { path: "/usr", type: "directory" },
      ],
    }],
  });
  assertEquals(await info(["objects", "--json", image]), { images: [{ image, objects: [backing] }] });
  assertEquals(await info(["missing-objects", "--json", "--basedir", `${d.path}/store`, image]), {
    basedir: `${d.path}/store`,
    images: [{ image, missing: [] }],
  });
  await Deno.mkdir(`${d.path}/empty`);
  assertEquals(await info(["missing-objects", "--json", "--basedir", `${d.path}/empty`, image]), {
    basedir: `${d.path}/empty`,
    images: [{ image, missing: [backing] }],
  });
  assertEquals(await info(["measure-file", "--json", `${src}/etc/big`, image]), {
    algorithm: "sha256",
    files: [
      { path: `${src}/etc/big`, digest: big },
      { path: image, digest: await fsverityDigest(image, "sha256") },
    ],
  });
});

Deno.test({
  name: "json: mount and oci mount describe what was mounted (root)",
  ignore: !isRoot,
  fn: async () => {
    await using d = await tempDir();
    const repo = `${d.path}/repo`;
    await cfs(["--repo", repo, "init", "--insecure"]);
    const R = ["--repo", repo];
    const pull = await json([...R, "oci", "pull", "--progress", "none", "--json", DEMO, "demo"]);
    const id: string = Object.values(pull.images)[0] as string;
    const mnt = `${d.path}/mnt`;
    await Deno.mkdir(mnt);
    const keys = [
      "image",
      "image_id",
      "mountpoint",
      "source",
      "layer_mode",
      "loop_device",
      "verity",
      "digest_checked_by",
      "read_write",
      "warnings",
    ];
    for (
      const [args, image, imageId] of [
        [["oci", "mount", "demo", mnt, "--json"], "demo", id],
        [["mount", id, mnt, "--json"], id, id],
        [["mount", "refs/nonexistent-ref-is-error", mnt, "--json"], "", ""],
      ] as [string[], string, string][]
    ) {
      const r = await runCli([...R, ...args]);
      if (image === "") {
        assertEquals([r.code, r.stdout], [1, ""]);
        continue;
      }
      assertEquals(r.code, 0, r.stderr);
      try {
        const m = JSON.parse(r.stdout);
        assertKeys(m, keys, args[0]);
        assertEquals([m.image, m.image_id, m.mountpoint, m.read_write], [image, imageId, mnt, false]);
        // the mount table agrees
        const mounts = await Deno.readTextFile("/proc/self/mountinfo");
        assert(mounts.split("\n").some((l) => l.split(" ")[4] === mnt), "mounted");
      } finally {
        await new Deno.Command("umount", { args: [mnt] }).output();
      }
    }
  },
});
