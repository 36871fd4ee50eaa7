// Where mkcomposefs writes IMAGE: a regular file is replaced atomically (temporary name + rename, no
// partial image visible); a device, a FIFO or /dev/null is written in place, never replaced by a plain
// file; a symlink's target is written and the link stays (lib/cli/mkcomposefs.ts writeAtomically).
import { assert, assertEquals, isRoot } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";

const DUMP = "/ 0 40755 2 0 0 0 0.0 - - -\n/a 5 100644 1 0 0 0 0.0 - hello -\n";

async function mkcomposefs(out: string): Promise<void> {
  const r = await runCli(["--from-file", "-", out], { stdin: DUMP, invokedAs: "mkcomposefs" });
  assertEquals(r.code, 0, r.stderr);
}

Deno.test({
  name: "mkcomposefs output: a character device stays a device (a /dev/null of our own)",
  ignore: !isRoot,
  async fn() {
    await using t = await tempDir();
    const nul = `${t.path}/null`;
    const mk = await new Deno.Command("mknod", { args: ["-m", "666", nul, "c", "1", "3"] }).output();
    assert(mk.success, "mknod");
    await mkcomposefs(nul);
    const st = await Deno.lstat(nul);
    assert(st.isCharDevice, "the device node was replaced");
    assertEquals(st.rdev, (1 << 8) | 3);
    assertEquals([...Deno.readDirSync(t.path)].map((e) => e.name), ["null"], "no temporary left");
  },
});

Deno.test("mkcomposefs output: a symlink's target is written, the link kept; a regular file replaced whole", async () => {
  await using t = await tempDir();
  await mkcomposefs(`${t.path}/plain.img`);
  const image = await Deno.readFile(`${t.path}/plain.img`);
  assert(image.length > 0);
  await Deno.writeTextFile(`${t.path}/target.img`, "old contents");
  await Deno.symlink("target.img", `${t.path}/link.img`);
  await mkcomposefs(`${t.path}/link.img`);
  assert((await Deno.lstat(`${t.path}/link.img`)).isSymlink, "the symlink was replaced");
  assertEquals(await Deno.readFile(`${t.path}/target.img`), image);
  const names = [...Deno.readDirSync(t.path)].map((e) => e.name).sort();
  assertEquals(names, ["link.img", "plain.img", "target.img"]);
});
