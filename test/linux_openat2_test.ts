// openBeneath (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and its per-component O_NOFOLLOW fallback
// must agree: a plain path opens, a symlink anywhere on the way is ELOOP, a `..` escape is EXDEV.
import { assert, assertEquals } from "./helpers/assert.ts";
import { tempDir } from "./helpers/cli.ts";
import { openBeneath, openByComponents } from "../lib/linux/openat2.ts";
import { closeFd, O_DIRECTORY, O_NOFOLLOW, O_RDONLY, openPath } from "../lib/linux/fs.ts";
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

Deno.test("openBeneath followBeneath: symlinks that stay inside are followed, escapes and a final symlink under O_NOFOLLOW are not; raw byte paths", async () => {
  await using t = await tempDir();
  const root = `${t.path}/root`;
  await Deno.mkdir(`${root}/a/b`, { recursive: true });
  await Deno.writeTextFile(`${root}/a/b/file`, "x");
  await Deno.symlink(`${t.path}`, `${root}/a/out`);
  await Deno.symlink("b", `${root}/a/rel`);
  await Deno.symlink("../..", `${root}/a/b/up2`);
  await Deno.symlink("file", `${root}/a/b/flink`);
  // a name that is not UTF-8: a/b/\xff\xfe
  const made = await new Deno.Command("sh", {
    args: ["-c", "touch \"$(printf 'a/b/\\377\\376')\""],
    cwd: root,
  })
    .output();
  assert(made.success);
  const raw = new Uint8Array([0x61, 0x2f, 0x62, 0x2f, 0xff, 0xfe]);
  const dfd = openPath(root, O_RDONLY | O_DIRECTORY);
  const open = (rel: string | Uint8Array, flags = O_RDONLY | O_NOFOLLOW) =>
    openBeneath(dfd, rel, flags, undefined, { followBeneath: true });
  try {
    assertEquals(errnoOf(() => open("a/rel/file")), "ok"); // a relative symlink that stays inside
    assertEquals(errnoOf(() => open("a/b/up2/a/b/file")), "ok"); // `..` through a link, still inside
    assertEquals(errnoOf(() => open("a/out/root/a/b/file")), 18); // an absolute symlink: EXDEV
    assertEquals(errnoOf(() => open("../root/a/b/file")), 18);
    assertEquals(errnoOf(() => open("a/b/flink")), 40); // final symlink, O_NOFOLLOW
    assertEquals(errnoOf(() => open("a/b/flink", O_RDONLY)), "ok");
    assertEquals(errnoOf(() => open(raw)), "ok"); // raw bytes used as they are
    assertEquals(errnoOf(() => openBeneath(dfd, raw, O_RDONLY)), "ok");
    assertEquals(errnoOf(() => openByComponents(dfd, raw, O_RDONLY, "raw")), "ok");
    assertEquals(errnoOf(() => open(new TextDecoder().decode(raw))), 2); // U+FFFD is another name
  } finally {
    closeFd(dfd);
  }
});
