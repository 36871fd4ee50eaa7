// openBeneath (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and its per-component O_NOFOLLOW fallback
// must agree: a plain path opens, a symlink anywhere on the way is ELOOP, a `..` escape is EXDEV.
import { assert, assertEquals } from "./helpers/assert.ts";
import { tempDir } from "./helpers/cli.ts";
import { openBeneath, openByComponents } from "../lib/linux/openat2.ts";
import { closeFd, O_DIRECTORY, O_RDONLY, openPath } from "../lib/linux/fs.ts";
import { KernelError } from "../lib/errors.ts";

function errnoOf(fn: () => number): number | "ok" {
  try {
    closeFd(fn());
    return "ok";
  } catch (e) {
    assert(e instanceof KernelError, String(e));
    return e.code === "ELOOP" ? 40 : e.code === "EXDEV" ? 18 : e.code === "ENOENT" ? 2 : e.errno;
  }
}

Deno.test("openBeneath and the component walk agree on plain paths, symlinks and escapes", async () => {
  await using t = await tempDir();
  const root = `${t.path}/root`;
  await Deno.mkdir(`${root}/a/b`, { recursive: true });
  await Deno.writeTextFile(`${root}/a/b/file`, "x");
  await Deno.symlink(`${t.path}`, `${root}/a/out`);
  await Deno.symlink("b", `${root}/a/rel`);
  await Deno.symlink("file", `${root}/a/b/flink`);
  const dfd = openPath(root, O_RDONLY | O_DIRECTORY);
  try {
    const cases: [string, number | "ok"][] = [
      ["a/b/file", "ok"],
      ["a/b", "ok"],
      ["a/out/root", 40], // symlinked directory on the way
      ["a/rel/file", 40],
      ["a/b/flink", 40], // final symlink
      ["../root/a/b/file", 18],
      ["a/../../x", 18],
      ["a/b/missing", 2],
    ];
    for (const [rel, want] of cases) {
      assertEquals(errnoOf(() => openBeneath(dfd, rel, O_RDONLY)), want, `openat2: ${rel}`);
      assertEquals(errnoOf(() => openByComponents(dfd, rel, O_RDONLY, rel)), want, `walk: ${rel}`);
    }
    // a final symlink opened as a directory (how RepoFs opens layout directories)
    assertEquals(errnoOf(() => openBeneath(dfd, "a/rel", O_RDONLY | O_DIRECTORY)), 40);
    assertEquals(errnoOf(() => openByComponents(dfd, "a/rel", O_RDONLY | O_DIRECTORY, "a/rel")), 40);
  } finally {
    closeFd(dfd);
  }
});
