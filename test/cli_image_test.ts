// cfsctl image commands end to end: create-image, compute-id (with and without a repository),
// create-dumpfile (container-root reading), image-objects, dump-files, errors.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";

async function fsverity(path: string, alg: string): Promise<string> {
  const o = await new Deno.Command("fsverity", {
    args: ["digest", "--compact", `--hash-alg=${alg}`, path],
    stdout: "piped",
  })
    .output();
  assert(o.success);
  return new TextDecoder().decode(o.stdout).trim();
}

async function fixture(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/usr/bin`, { recursive: true });
  await Deno.mkdir(`${dir}/run/state`, { recursive: true });
  await Deno.mkdir(`${dir}/etc`);
  await Deno.writeTextFile(
    `${dir}/usr/bin/tool`,
    "#!/bin/sh\necho this file is longer than sixty-four bytes, so it is external\n",
  );
  await Deno.writeTextFile(`${dir}/etc/hostname`, "box\n");
  await Deno.writeTextFile(`${dir}/run/state/pid`, "42\n");
  await Deno.link(`${dir}/usr/bin/tool`, `${dir}/usr/bin/tool-link`);
  await Deno.chmod(`${dir}/usr`, 0o750);
  const set = (n: string, v: string, p: string) =>
    new Deno.Command("setfattr", { args: ["-n", n, "-v", v, p] }).output();
  await set("security.capability", "0x0100000200000000000000000000000000000000", `${dir}/usr/bin/tool`);
  await set("user.note", "dropped", `${dir}/usr/bin/tool`);
  await set("user.usr", "u", `${dir}/usr`);
  await new Deno.Command("touch", { args: ["-d", "2001-02-03 04:05:06.5", `${dir}/usr`] }).output();
}

Deno.test("create-image, compute-id, image-objects, dump-files on a sha512 repository", async () => {
  await using tmp = await tempDir();
  const repo = `${tmp.path}/repo`;
  const src = `${tmp.path}/root`;
  await fixture(src);
  const cfs = (...a: string[]) => runCli(["--repo", repo, ...a]);
  assertEquals((await cfs("init", "--insecure")).code, 0);

  const c = await cfs("create-image", src, "myimage");
  assertEquals(c.code, 0, c.stderr);
  assertMatch(c.stdout, /^sha512:[0-9a-f]{128}\n$/);
  const hex = c.stdout.trim().slice(7);
  assertEquals(Deno.readLinkSync(`${repo}/images/refs/myimage`), `../${hex}`);
  const imageFile = `${repo}/objects/${hex.slice(0, 2)}/${hex.slice(2)}`;
  assertEquals(await fsverity(imageFile, "sha512"), hex, "image id is the image's fs-verity digest");
  const fsck = await new Deno.Command("fsck.erofs", { args: [imageFile], stderr: "piped" }).output();
  assert(fsck.success, new TextDecoder().decode(fsck.stderr));

  // compute-id gives the same id and stores nothing new
  const before = [...Deno.readDirSync(`${repo}/objects`)].length;
  const id = await cfs("compute-id", src);
  assertEquals([id.code, id.stdout], [0, hex + "\n"]);
  const noRepo = await runCli(["--no-repo", "--hash", "sha512", "compute-id", src]);
  assertEquals(noRepo.stdout, hex + "\n");
  assertEquals([...Deno.readDirSync(`${repo}/objects`)].length, before);
  const v1 = await cfs("--erofs-version", "1", "compute-id", src);
  assert(v1.code === 0 && v1.stdout !== id.stdout, "V1 image differs from V2");

  // the external file is stored under its fs-verity digest, and listed by image-objects
  const toolId = await fsverity(`${src}/usr/bin/tool`, "sha512");
  const objs = await cfs("image-objects", "refs/myimage");
  assertEquals([objs.code, objs.stdout], [0, `sha512:${toolId}\n`]);
  assertEquals(
    await Deno.readTextFile(`${repo}/objects/${toolId.slice(0, 2)}/${toolId.slice(2)}`),
    await Deno.readTextFile(`${src}/usr/bin/tool`),
  );

  const df = await cfs("dump-files", hex, "/usr/bin", "etc/hostname");
  assertEquals(df.code, 0, df.stderr);
  const lines = df.stdout.split("\n");
  assertMatch(lines[0], /^\/usr\/bin 0 40755 2 0 0 0 \d+\.0 - - -$/);
  assertMatch(
    lines[1],
    new RegExp(
      `^/usr/bin/tool \\d+ 100644 2 0 0 0 \\d+\\.0 ${toolId.slice(0, 2)}/${
        toolId.slice(2)
      } - ${toolId} security\\.capability=`,
    ),
  );
  assertEquals(lines[2], "/usr/bin/tool-link 0 @120000 - - - - 0.0 /usr/bin/tool - -");
  assertMatch(lines[3], /^\/etc\/hostname 4 100644 1 0 0 0 \d+\.0 - box\\n -$/);
  assertEquals(lines.slice(4), ["", ""], "ends with an extra blank line");
  const bp = await cfs("dump-files", "--backing-path-only", "refs/myimage", "/usr/bin/tool", "/etc/hostname");
  assertEquals(bp.stdout, `/usr/bin/tool ${toolId.slice(0, 2)}/${toolId.slice(2)}\n/etc/hostname inline\n\n`);
  assert((await cfs("dump-files", "--backing-path-only", hex, "/usr")).code !== 0);
  assert((await cfs("dump-files", hex, "/nope")).code !== 0);
});

Deno.test("create-dumpfile: container-root reading vs --no-propagate-usr-to-root", async () => {
  await using tmp = await tempDir();
  const src = `${tmp.path}/root`;
  await fixture(src);
  const d = await runCli(["--no-repo", "create-dumpfile", src]);
  assertEquals(d.code, 0, d.stderr);
  const lines = d.stdout.split("\n");
  // root takes /usr's mode, owner, mtime (with nanoseconds) and allowlisted xattrs (user.* dropped)
  assertEquals(lines[0], "/ 0 40750 5 0 0 0 981173106.500000000 - - -");
  assert(lines.includes("/run 0 40755 2 0 0 0 981173106.500000000 - - -"), "/run emptied, /usr's mtime");
  assert(!lines.some((l) => l.startsWith("/run/")));
  const tool = lines.find((l) => l.startsWith("/usr/bin/tool "))!;
  assertMatch(tool, / security\.capability=\\x01\\x00\\x00\\x02(\\x00)+$/);
  assert(!/user\.note/.test(d.stdout));

  const raw = await runCli(["--no-repo", "create-dumpfile", "--no-propagate-usr-to-root", src]);
  assert(raw.stdout.includes("user.note=dropped"), "raw reading keeps every xattr");
  assert(raw.stdout.includes("/run/state/pid 3 100644"));
  assert(!raw.stdout.startsWith("/ 0 40750"));

  const noUsr = `${tmp.path}/plain`;
  await Deno.mkdir(noUsr);
  const e = await runCli(["--no-repo", "compute-id", noUsr]);
  assert(e.code !== 0 && /\/usr/.test(e.stderr), e.stderr);
  assertEquals((await runCli(["--no-repo", "compute-id", "--no-propagate-usr-to-root", noUsr])).code, 0);
  const b = await runCli(["--no-repo", "compute-id", "--bootable", src]);
  assert(b.code !== 0 && /\/boot does not exist: a bootable image needs/.test(b.stderr), b.stderr);
  const nr = await runCli(["--no-repo", "create-image", src]);
  assert(nr.code !== 0 && /--no-repo/.test(nr.stderr));
});
