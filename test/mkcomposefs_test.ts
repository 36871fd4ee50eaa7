// mkcomposefs through the CLI: every C vector gives the C tool's image (sha256 pinned in the vectors),
// should-fail vectors leave no image, digests agree with `fsverity digest`, the digest store layout,
// and the pinned composefs-rs digests of the "empty" and "simple" trees (docs/erofs.md#pinned).
import { gunzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { PROJECT_ROOT, runCli, tempDir } from "./helpers/cli.ts";

const VECTORS = new URL("../../shared/vectors/composefs-c/", import.meta.url).pathname;
const NON_STRICT = new Set(["no-newline.dump", "longlink.dump", "honggfuzz-longlink-unterminated.dump"]);

function vectorNames(): string[] {
  return [...Deno.readDirSync(VECTORS)].map((e) => e.name).filter((n) => /\.dump(\.gz)?$/.test(n)).sort();
}
function readVector(name: string): Uint8Array {
  const data = Deno.readFileSync(VECTORS + name);
  return name.endsWith(".gz") ? new Uint8Array(gunzipSync(data)) : data;
}
function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}
async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}
async function fsverityDigest(path: string): Promise<string> {
  const o = await new Deno.Command("fsverity", { args: ["digest", "--compact", path], stdout: "piped" })
    .output();
  assert(o.success, "fsverity digest runs");
  return new TextDecoder().decode(o.stdout).trim();
}
const mk = (args: string[], opts: Parameters<typeof runCli>[1] = {}) =>
  runCli(args, { ...opts, invokedAs: "mkcomposefs" });

/** Runs `fn` over items, two at a time (CLI runs are process spawns). */
async function pool<T>(items: T[], fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all([0, 1].map(async () => {
    while (i < items.length) await fn(items[i++]);
  }));
}

Deno.test("every C vector: image sha256 equals the C mkcomposefs one; should-fail leaves no file", async () => {
  await using tmp = await tempDir();
  const names = vectorNames();
  assert(names.length >= 28);
  let ok = 0, failed = 0;
  await pool(names, async (name) => {
    const out = `${tmp.path}/${name}.img`;
    const args: string[] = [];
    try {
      const v = Deno.readTextFileSync(VECTORS + name + ".version").trim();
      args.push(`--min-version=${v}`, `--max-version=${v}`);
    } catch { /* no version file: defaults */ }
    const env: Record<string, string> = NON_STRICT.has(name) ? {} : { CFS_PARSE_STRICT: "1" };
    const r = await mk([...args, "--from-file", "-", out], { stdin: readVector(name), env });
    if (name.startsWith("should-fail-")) {
      assert(r.code !== 0, `${name} must fail`);
      assertMatch(r.stderr, /^error: .*line \d+: /m);
      assert(!(await exists(out)), `${name}: no output file`);
      failed++;
    } else {
      assertEquals(r.code, 0, `${name}: ${r.stderr}`);
      const want = Deno.readTextFileSync(VECTORS + name + ".sha256").trim().split(/\s+/)[0];
      assertEquals(sha256(await Deno.readFile(out)), want, name);
      ok++;
    }
  });
  assertEquals([ok, failed], [14, 14]);
});

Deno.test("--from-file FILE, stdout output, --print-digest and --print-digest-only agree with fsverity", async () => {
  await using tmp = await tempDir();
  const src = VECTORS + "special.dump";
  const out = `${tmp.path}/special.img`;
  const a = await mk(["--min-version=0", "--max-version=0", "--print-digest", "--from-file", src, out]);
  assertEquals(a.code, 0, a.stderr);
  const digest = await fsverityDigest(out);
  assertEquals(a.stdout, digest + "\n");
  assertEquals(sha256(await Deno.readFile(out)), Deno.readTextFileSync(src + ".sha256").trim());

  const b = await mk(["--min-version=0", "--max-version=0", "--print-digest-only", "--from-file", src]);
  assertEquals([b.code, b.stdout], [0, digest + "\n"]);
  const c = await mk(["--min-version=0", "--max-version=0", "--from-file", src, "-"]);
  assertEquals(c.code, 0);
  assertEquals(c.stdoutBytes, await Deno.readFile(out));

  const d = await mk(["--print-digest-only", "--from-file", src, `${tmp.path}/x.img`]);
  assert(d.code !== 0 && !(await exists(`${tmp.path}/x.img`)));
  const e = await mk(["--from-file", src]);
  assert(e.code !== 0, "IMAGE required");
  const f = await mk(["--min-version=2", "--from-file", src, `${tmp.path}/y.img`]);
  assert(f.code !== 0 && !(await exists(`${tmp.path}/y.img`)));
});

Deno.test("--min-version 1 alone raises max to 1 like C; --max-version 2 is refused with no file", async () => {
  await using tmp = await tempDir();
  const src = VECTORS + "special.dump";
  // special.dump's C image at version 1 is the pinned vector image of the same tree built with 1/1.
  const both = await mk(["--min-version=1", "--max-version=1", "--from-file", src, `${tmp.path}/both.img`]);
  assertEquals(both.code, 0, both.stderr);
  const alone = await mk(["--min-version", "1", "--from-file", src, `${tmp.path}/alone.img`]);
  assertEquals(alone.code, 0, alone.stderr);
  assertEquals(await Deno.readFile(`${tmp.path}/alone.img`), await Deno.readFile(`${tmp.path}/both.img`));
  // The header's composefs_version field (offset 12, little-endian u32) says 1.
  const hdr = await Deno.readFile(`${tmp.path}/alone.img`);
  assertEquals(new DataView(hdr.buffer).getUint32(12, true), 1);
  // max below min: raised, as C does (lcfs_write_to).
  const lower = await mk(["--min-version=1", "--max-version=0", "--from-file", src, `${tmp.path}/lower.img`]);
  assertEquals(lower.code, 0, lower.stderr);
  assertEquals(await Deno.readFile(`${tmp.path}/lower.img`), hdr);
  // The example of our own --help runs.
  const ex = await mk(["--min-version", "1", "--from-file", "-", "-"], { stdin: await Deno.readFile(src) });
  assertEquals([ex.code, ex.stdoutBytes.length > 0], [0, true], ex.stderr);
  for (const flag of ["--max-version=2", "--min-version=2"]) {
    const r = await mk([flag, "--from-file", src, `${tmp.path}/two.img`]);
    assertEquals(r.code, 2, `${flag}: usage error`);
    assertMatch(r.stderr, /format version 2 is not supported .*--erofs-version 2/);
    assert(!(await exists(`${tmp.path}/two.img`)));
  }
});

Deno.test("a failing run keeps an existing IMAGE untouched", async () => {
  await using tmp = await tempDir();
  const out = `${tmp.path}/keep.img`;
  await Deno.writeTextFile(out, "old");
  const r = await mk(["--from-file", "-", out], {
    stdin: "/ 0 40755 2 0 0 0 0.0 - - -\n/x 0 0 1 0 0 0 0.0 - - -\n",
  });
  assert(r.code !== 0);
  assertMatch(r.stderr, /line 2: invalid file type/);
  assertEquals(await Deno.readTextFile(out), "old");
  assertEquals([...Deno.readDirSync(tmp.path)].map((e) => e.name), ["keep.img"]);
});

Deno.test("pinned composefs-rs digests: empty and simple trees as V0 (default) and V2", async () => {
  const ext = "5a".repeat(32);
  const simple = "/ 0 40755 2 0 0 0 0.0 - - -\n" +
    "/blkdev 0 60000 1 0 0 123 0.0 - - -\n" +
    "/chrdev 0 20000 1 0 0 123 0.0 - - -\n" +
    "/fifo 0 10000 1 0 0 0 0.0 - - -\n" +
    `/regular-external 1234 100000 1 0 0 0 0.0 5a/${ext.slice(2)} - ${ext}\n` +
    "/regular-inline 4 100000 1 0 0 0 0.0 - hihi -\n" +
    "/socket 0 140000 1 0 0 0 0.0 - - -\n" +
    "/symlink 7 120000 1 0 0 0 0.0 /target - -\n";
  const empty = "/ 0 40755 2 0 0 0 0.0 - - -\n";
  const cases: [string, string[], string][] = [
    [empty, ["--erofs-version", "2"], "086b702a519b57d6ef5aea6f8b3f2be24355cd1fb835cd80fb4e3d388b24d5a5"],
    [simple, ["--erofs-version", "2"], "a8fcd41f8b313bede69f462f2af0a38d64b99a6333f5df884ea9ab4037fac722"],
    [empty, [], "8f589e8f57ecb88823736b0d857ddca1e1068a23e264fad164b28f7038eb3682"],
    [simple, [], "9f3f5620ee0c54708516467d0d58741e7963047c7106b245d94c298259d0fa01"],
  ];
  for (const [dump, args, want] of cases) {
    const r = await mk([...args, "--print-digest-only", "--from-file", "-"], { stdin: dump });
    assertEquals([r.code, r.stdout.trim()], [0, want], `${args.join(" ")}: ${r.stderr}`);
  }
});

Deno.test("directory source: --digest-store layout, flags, image passes fsck.erofs", async () => {
  await using tmp = await tempDir();
  const src = `${tmp.path}/src`;
  await Deno.mkdir(`${src}/d`, { recursive: true });
  const big = new Uint8Array(10000).map((_, i) => i & 0xff);
  await Deno.writeFile(`${src}/big`, big);
  await Deno.writeFile(`${src}/d/other`, new TextEncoder().encode("y".repeat(100)));
  await Deno.writeTextFile(`${src}/small`, "tiny");
  await Deno.link(`${src}/big`, `${src}/d/big-link`);
  await new Deno.Command("setfattr", { args: ["-n", "user.k", "-v", "v", `${src}/small`] }).output();
  await new Deno.Command("setfattr", { args: ["-n", "trusted.t", "-v", "t", `${src}/small`] }).output();

  const store = `${tmp.path}/store`;
  const img = `${tmp.path}/dir.img`;
  const r = await mk(["--digest-store", store, "--print-digest", src, img]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stdout.trim(), await fsverityDigest(img));
  // DIR/XX/<rest>: exactly the files over 64 bytes, named by their fs-verity digest
  const stored: string[] = [];
  for (const xx of Deno.readDirSync(store)) {
    for (const f of Deno.readDirSync(`${store}/${xx.name}`)) stored.push(`${xx.name}/${f.name}`);
  }
  const want = [await fsverityDigest(`${src}/big`), await fsverityDigest(`${src}/d/other`)]
    .map((h) => `${h.slice(0, 2)}/${h.slice(2)}`).sort();
  assertEquals(stored.sort(), want);
  const bigHex = await fsverityDigest(`${src}/big`);
  const bigPath = `${store}/${bigHex.slice(0, 2)}/${bigHex.slice(2)}`;
  assertEquals(await Deno.readFile(bigPath), big);

  const fsck = await new Deno.Command("fsck.erofs", { args: [img], stdout: "piped", stderr: "piped" })
    .output();
  assert(fsck.success, `fsck.erofs: ${new TextDecoder().decode(fsck.stderr)}`);

  const info = async (image: string) => {
    const o = await runCli(["dump", image], { invokedAs: "composefs-info" });
    assertEquals(o.code, 0, o.stderr);
    return o.stdout;
  };
  const dump = await info(img);
  assertMatch(dump, /^\/small 4 100644 1 0 0 0 \d+\.\d+ - tiny - trusted\.t=t user\.k=v$/m);
  assertMatch(dump, /^\/d\/big-link 10000 100644 1 /m); // default: hard links broken, like C

  const h = `${tmp.path}/h.img`;
  assertEquals((await mk(["--hardlinks", "--use-epoch", "--user-xattrs", src, h])).code, 0);
  const hd = await info(h);
  assertMatch(hd, /^\/d\/big-link 0 @120000 /m);
  assertMatch(hd, /^\/small 4 100644 1 0 0 0 0\.0 - tiny - user\.k=v$/m);
  assert(!/ [1-9]\d*\.\d+ /.test(hd.replace(/^(\S+ ){7}/gm, "")), "all mtimes 0 with --use-epoch");
  const s = `${tmp.path}/s.img`;
  assertEquals((await mk(["--skip-xattrs", "--threads", "1", src, s])).code, 0);
  assert(!/=/.test(await info(s)), "no xattrs");
  const bad = await mk(["--threads", "0", src, `${tmp.path}/t.img`]);
  assert(bad.code !== 0 && !(await exists(`${tmp.path}/t.img`)));
});

const hasScript = (() => {
  try {
    return Deno.statSync("/usr/bin/script").isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "IMAGE - refuses a terminal on stdout (pty from script(1))",
  ignore: !hasScript,
  fn: async () => {
    const cmd = `${Deno.execPath()} run -A --no-check ${PROJECT_ROOT}main.ts mkcomposefs --from-file ` +
      `${VECTORS}special.dump -; echo "rc=$?"`;
    const o = await new Deno.Command("script", { args: ["-qec", cmd, "/dev/null"], stdout: "piped" })
      .output();
    const text = new TextDecoder().decode(o.stdout);
    assertMatch(text, /refusing to write an image/);
    assertMatch(text, /rc=[1-9]/);
  },
});

Deno.test("own xattrs colliding with the ones the writer adds are refused (path + xattr named, no file)", async () => {
  await using tmp = await tempDir();
  const R = "/ 0 40755 2 0 0 0 0.0 - - -\n";
  const WO = "/d/w 0 20644 1 0 0 0 0.0 - - -\n";
  const dir = (x: string) => `/d 0 40755 2 0 0 0 0.0 - - - ${x}\n`;
  // C 1.0.8 writes an image for each of these, its own value replaced by the writer's.
  const refused: [string, string, string, string[]][] = [
    [
      "whiteout's trusted.overlay.whiteout",
      R + "/w 0 20644 1 0 0 0 0.0 - - - trusted.overlay.whiteout=\n",
      "/w",
      [],
    ],
    [
      "whiteout's user.overlay.whiteout",
      R + "/w 0 20644 1 0 0 0 0.0 - - - user.overlay.whiteout=abc\n",
      "/w",
      [],
    ],
    ["dir's trusted.overlay.whiteouts", R + dir("trusted.overlay.whiteouts=") + WO, "/d", []],
    ["dir's user.overlay.whiteouts", R + dir("user.overlay.whiteouts=") + WO, "/d", ["--max-version=0"]],
    ["dir's trusted.overlay.opaque (V1)", R + dir("trusted.overlay.opaque=y") + WO, "/d", []],
    ["dir's user.overlay.opaque (V1)", R + dir("user.overlay.opaque=y") + WO, "/d", ["--min-version=1"]],
  ];
  for (const [what, dump, path, flags] of refused) {
    const out = `${tmp.path}/r.img`;
    const r = await mk([...flags, "--from-file", "-", out], { stdin: dump });
    assertEquals(r.code, 1, `${what}: ${r.stderr}`);
    const xattr = / - - - ([a-z.]+)=/.exec(dump.split("\n").find((l) => l.includes("overlay."))!)![1];
    assert(r.stderr.includes(`"${path}": its own xattr "${xattr}"`), `${what}: ${r.stderr}`);
    assert(!(await exists(out)), `${what}: no output file`);
  }
  // No collision: the image is C 1.0.8's (sha256 of its output for the same dumpfile and flags).
  const accepted: [string, string, string[], string][] = [
    ["dir's own opaque in V0 (no opaque marker there)", R + dir("trusted.overlay.opaque=y") + WO, [
      "--min-version=0",
      "--max-version=0",
    ], "85226db46f256a9b0d003a5116c1ad0d7b81a4d3099f2fab7c8f693b41d17c76"],
    [
      "root's own trusted.overlay.opaque",
      "/ 0 40755 2 0 0 0 0.0 - - - trusted.overlay.opaque=y\n",
      [],
      "6dd53186612134f9c0745302a9f65781ff4322dc3b93f7ed518bc43a3d2c77f2",
    ],
    [
      "a dir's opaque without whiteouts",
      R + dir("trusted.overlay.opaque=y user.overlay.opaque=y"),
      [],
      "a95377e731e9f7fb77561d491a79c8a8a04017184305f19ce323bdf2cbc3bef9",
    ],
    [
      "a regular file's user.overlay.whiteout",
      R + "/f 0 100644 1 0 0 0 0.0 - - - user.overlay.whiteout=\n",
      [],
      "d2a2d19948255a5effa024a1c281c671d82461d6adddf6281f83acda204f6cb0",
    ],
    [
      "an external file's own metacopy and redirect",
      R + "/f 10 100644 1 0 0 0 0.0 ab/cd - - trusted.overlay.metacopy=zz trusted.overlay.redirect=/x\n",
      [],
      "23b8cb7f2e6511a9fd294a0e50af7665561d5a9f0b8b070ef5b6761d562629e3",
    ],
    [
      "an already escaped name next to the marker",
      R + dir("trusted.overlay.overlay.whiteouts=") + WO,
      [],
      "f421bab51b51719b1b71e5381f69af3ec5981b607083104a6cb3957041267443",
    ],
  ];
  for (const [what, dump, flags, want] of accepted) {
    const out = `${tmp.path}/a.img`;
    const r = await mk([...flags, "--from-file", "-", out], { stdin: dump });
    assertEquals(r.code, 0, `${what}: ${r.stderr}`);
    assertEquals(sha256(await Deno.readFile(out)), want, what);
  }
});
