// WalkAhead (lib/tree/walk_ahead.ts): the depth-first order `find` gives, regular files handed over
// open, never more than its window of files open at once, and every descriptor closed — after a
// complete walk, and after one abandoned midway.
import { assert, assertEquals } from "./helpers/assert.ts";
import { DENO, MAIN, tempDir } from "./helpers/cli.ts";
import { WalkAhead, WINDOW } from "../lib/tree/walk_ahead.ts";
import { scanDirectory } from "../lib/tree/scan.ts";
import { closeFd, O_DIRECTORY, O_RDONLY, openAt, statFd } from "../lib/linux/fs_at.ts";
import { AT_FDCWD, S_IFMT, S_IFREG } from "../lib/linux/constants.ts";
import { bytesToBstr, utf8 } from "../lib/util/bytes.ts";

function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** A tree of `dirs` directories (some nested, one empty), files, symlinks and a FIFO. */
async function makeTree(root: string, dirs: number, filesPerDir: number): Promise<number> {
  let files = 0;
  for (let d = 0; d < dirs; d++) {
    const dir = `${root}/${d % 3 === 0 ? `nest${d}/inner` : `d${d}`}`;
    await Deno.mkdir(dir, { recursive: true });
    for (let f = 0; f < filesPerDir; f++) {
      await Deno.writeTextFile(`${dir}/f${f}`, `${d}/${f}\n`.repeat(f + 1));
      files++;
    }
    await Deno.symlink(`f0`, `${dir}/link`);
  }
  await Deno.mkdir(`${root}/empty`);
  await new Deno.Command("mkfifo", { args: [`${root}/fifo`] }).output();
  return files;
}

/** Paths in the walk's order (directories with a trailing "/"), checking each file's fd on the way. */
function walkPaths(root: string, stopAfter = Infinity): { paths: string[]; maxOpen: number; w: WalkAhead } {
  const rootFd = openAt(AT_FDCWD, utf8.encode(root), O_RDONLY | O_DIRECTORY);
  const w = new WalkAhead(rootFd, 4096);
  const stack = [""];
  const paths: string[] = [];
  let maxOpen = 0;
  // Stop before taking the next entry: a taken file's fd is the caller's to close.
  for (
    let e = paths.length < stopAfter ? w.next() : null;
    e !== null;
    e = paths.length < stopAfter ? w.next() : null
  ) {
    maxOpen = Math.max(maxOpen, openFds());
    if (e.kind === "leave") {
      stack.pop();
      w.leave(e.fd);
      continue;
    }
    const p = stack[stack.length - 1] + bytesToBstr(e.name);
    if (e.isDir) {
      assert(e.fd >= 0 && e.error === undefined, `${p}: directory opened`);
      stack.push(p + "/");
      paths.push(p + "/");
      continue;
    }
    paths.push(p);
    if (e.fd >= 0) {
      assertEquals(statFd(e.fd).mode & S_IFMT, S_IFREG, `${p}: only regular files come open`);
      closeFd(e.fd);
    } else {
      assert(!/\/f\d+$|^f\d+$/.test(p), `${p}: a regular file came without its fd`);
    }
  }
  return { paths, maxOpen, w };
}

Deno.test("WalkAhead: find's depth-first order, files open, at most its window open, all closed", async () => {
  await using t = await tempDir();
  const root = `${t.path}/tree`;
  await Deno.mkdir(root);
  const files = await makeTree(root, 40, 5); // 200 files: many windows' worth
  const before = openFds();
  const { paths, maxOpen } = walkPaths(root);
  assertEquals(openFds(), before, "every descriptor closed after the last leave");
  // find -depth-first without sorting lists the same kernel order (readdir) as getdents64.
  const find = new TextDecoder().decode(
    (await new Deno.Command("find", { args: [".", "-mindepth", "1", "-printf", "%P%y\\n"], cwd: root })
      .output())
      .stdout,
  ).trim().split("\n").map((l) => l.endsWith("d") ? l.slice(0, -1) + "/" : l.slice(0, -1));
  assertEquals(paths, find);
  assertEquals(paths.filter((p) => /f\d+$/.test(p)).length, files);
  // scanDirectory walks the same way and leaves nothing open either.
  const tree = await scanDirectory(root, { alg: "sha256" });
  assertEquals(tree.entries.size, 26 + 14 + 2); // d*, nest*, empty and fifo
  assertEquals(openFds(), before);
  // The window's files, the directories holding them (at most one each) and the path down to them.
  const extra = maxOpen - before;
  assert(extra > WINDOW / 2 && extra <= 2 * WINDOW + 3, `${extra} extra fds open (window ${WINDOW})`);
});

Deno.test("WalkAhead: close() midway closes the files read ahead and the directories not left", async () => {
  await using t = await tempDir();
  const root = `${t.path}/tree`;
  await Deno.mkdir(root);
  await makeTree(root, 30, 4);
  const before = openFds();
  const { paths, w } = walkPaths(root, 20);
  assertEquals(paths.length, 20);
  assert(openFds() > before + 2, "files and directories are open ahead of the caller");
  w.close();
  assertEquals(openFds(), before);
});

Deno.test("WalkAhead: an unreadable directory comes with its error, the walk goes on", async () => {
  await using t = await tempDir();
  const root = `${t.path}/tree`;
  await Deno.mkdir(`${root}/a`, { recursive: true });
  await Deno.writeTextFile(`${root}/a/x`, "x");
  await Deno.mkdir(`${root}/b`);
  // Replaced by a symlink after the parent's entries were read: O_NOFOLLOW refuses it.
  const rootFd = openAt(AT_FDCWD, utf8.encode(root), O_RDONLY | O_DIRECTORY);
  const w = new WalkAhead(rootFd, 4096);
  await Deno.remove(`${root}/b`);
  await Deno.symlink("a", `${root}/b`);
  const seen: string[] = [];
  for (let e = w.next(); e !== null; e = w.next()) {
    if (e.kind === "leave") {
      w.leave(e.fd);
      continue;
    }
    seen.push(`${bytesToBstr(e.name)}:${e.error ? "error" : e.fd >= 0 ? "open" : "-"}`);
    if (!e.isDir && e.fd >= 0) closeFd(e.fd);
  }
  w.close();
  assertEquals(seen.sort(), ["a:open", "b:error", "x:open"]);
});

const LIB = new URL("../lib/", import.meta.url).href;

/** Walks `root` with WalkAhead in a child under `prlimit --nofile=LIMIT`, `hold` fds taken first. */
async function walkUnderLimit(
  root: string,
  limit: number,
  hold: number,
): Promise<{ paths: number; out: string }> {
  const code = `
    import { WalkAhead } from "${LIB}tree/walk_ahead.ts";
    import { closeFd, O_DIRECTORY, O_RDONLY, openAt } from "${LIB}linux/fs_at.ts";
    const held = [];
    for (let i = 0; i < ${hold}; i++) held.push(Deno.openSync("/dev/null"));
    const w = new WalkAhead(openAt(-100, new TextEncoder().encode(${
    JSON.stringify(root)
  }), O_RDONLY | O_DIRECTORY), 4096);
    let n = 0;
    for (let e = w.next(); e !== null; e = w.next()) {
      if (e.kind === "leave") { w.leave(e.fd); continue; }
      if (e.error) throw e.error;
      n++;
      if (!e.isDir && e.fd >= 0) closeFd(e.fd);
    }
    console.log(n);`;
  const o = await new Deno.Command("prlimit", {
    args: [`--nofile=${limit}`, Deno.execPath(), "eval", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
  assert(o.success, `walk under a limit of ${limit} fds (${hold} held): ${out}`);
  return { paths: Number(new TextDecoder().decode(o.stdout).trim()), out };
}

Deno.test("WalkAhead: descriptors running out midway make it go one file at a time, not fail", async () => {
  await using t = await tempDir();
  const root = `${t.path}/tree`;
  await Deno.mkdir(root);
  await makeTree(root, 30, 12);
  const all = (await walkUnderLimit(root, 4096, 0)).paths;
  // 600 allows reading ahead (MIN_OPEN_FILE_LIMIT 512); holding all but a few leaves it short of fds.
  for (const hold of [560, 575]) {
    assertEquals((await walkUnderLimit(root, 600, hold)).paths, all, `${hold} of 600 fds held`);
  }
});

Deno.test("mkcomposefs --digest-store under ulimit -n 64 reads one file at a time and gives the same image", async () => {
  await using t = await tempDir();
  const src = `${t.path}/src`;
  await Deno.mkdir(src);
  await makeTree(src, 12, 40); // more files per directory than the read-ahead window
  const run = async (limit: number) => {
    const o = await new Deno.Command("prlimit", {
      args: [
        `--nofile=${limit}`,
        DENO,
        ...(MAIN.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"]),
        MAIN,
        "mkcomposefs",
        "--digest-store",
        `${t.path}/store-${limit}`,
        src,
        `${t.path}/img-${limit}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(o.success, `ulimit -n ${limit}: ${new TextDecoder().decode(o.stderr)}`);
    return await Deno.readFile(`${t.path}/img-${limit}`);
  };
  assertEquals(await run(64), await run(4096));
});
