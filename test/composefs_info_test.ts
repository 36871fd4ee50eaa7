// composefs-info through the CLI: dump reproduces the image (dump → mkcomposefs gives the same bytes),
// ls formatting and filters, objects / missing-objects, measure-file against `fsverity digest`.
import { gunzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { assert, assertEquals } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";

const VECTORS = new URL("../../shared/vectors/composefs-c/", import.meta.url).pathname;
const info = (args: string[]) => runCli(args, { invokedAs: "composefs-info" });
const mk = (args: string[], stdin?: Uint8Array | string) => runCli(args, { invokedAs: "mkcomposefs", stdin });
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function readVector(name: string): Uint8Array {
  const data = Deno.readFileSync(VECTORS + name);
  return name.endsWith(".gz") ? new Uint8Array(gunzipSync(data)) : data;
}

Deno.test("dump of a C-identical image feeds back into mkcomposefs to the same image", async () => {
  await using tmp = await tempDir();
  for (
    const name of ["special.dump", "config-with-hard-link.dump.gz", "longlink.dump", "bigfile-xattr.dump"]
  ) {
    const img = `${tmp.path}/a.img`;
    const ver = name === "special.dump" ? ["--min-version=0", "--max-version=0"] : [];
    const a = await mk([...ver, "--from-file", "-", img], readVector(name));
    assertEquals(a.code, 0, a.stderr);
    const want = Deno.readTextFileSync(VECTORS + name + ".sha256").trim();
    assertEquals(sha256(await Deno.readFile(img)), want, name);
    const d = await info(["dump", img]);
    assertEquals(d.code, 0, d.stderr);
    const img2 = `${tmp.path}/b.img`;
    const b = await mk([...ver, "--from-file", "-", img2], d.stdoutBytes);
    assertEquals(b.code, 0, b.stderr);
    assertEquals(sha256(await Deno.readFile(img2)), want, `${name} after dump → mkcomposefs`);
  }
});

Deno.test("ls: C formatting, escapes, hard links listed with their backing path once, --filter", async () => {
  await using tmp = await tempDir();
  const d = "ab".repeat(32);
  const dump = "/ 0 40755 2 0 0 0 0.0 - - -\n" +
    "/a\\x20dir 0 40755 2 0 0 0 0.0 - - -\n" +
    `/a\\x20dir/f\\tile 100 100644 2 0 0 0 0.0 ab/${d.slice(2)} - ${d}\n` +
    "/a\\x20dir/link 0 @100644 - - - - 0.0 /a\\x20dir/f\\tile - -\n" +
    "/b 0 40755 2 0 0 0 0.0 - - -\n" +
    "/b/sym 9 120777 1 0 0 0 0.0 ../t\\x20x\\xff - -\n" +
    "/b/small 2 100644 1 0 0 0 0.0 - hi -\n" +
    "/b/noverity 200 100644 1 0 0 0 0.0 cd/ef.file - -\n";
  const img = `${tmp.path}/x.img`;
  assertEquals((await mk(["--from-file", "-", img], dump)).code, 0);
  const ls = await info(["ls", img]);
  assertEquals(ls.code, 0, ls.stderr);
  assertEquals(
    ls.stdout,
    "/a dir/\t\n" +
      `/a dir/f\\tile\t@ ab/${d.slice(2)}\n` +
      "/a dir/link\n" +
      "/b/\t\n" +
      "/b/noverity\t@ cd/ef.file\n" +
      "/b/small\n" +
      "/b/sym\t-> ../t\\x20x\\xff\n",
  );
  const f = await info(["ls", "--filter", "b", img]);
  assertEquals(f.stdout.split("\n").filter((l) => l).length, 4);
  assert(f.stdout.split("\n").filter((l) => l).every((l) => l.startsWith("/b/")));
  const f2 = await info(["--filter", "a dir", "ls", img]); // C places options before the command
  assertEquals(f2.stdout.split("\n").filter((l) => l).length, 3);
  assert((await info(["ls", "--filter", "a/b", img])).code !== 0);

  const objs = await info(["objects", img]);
  assertEquals(objs.stdout, `ab/${d.slice(2)}\ncd/ef.file\n`);
  const base = `${tmp.path}/objects`;
  await Deno.mkdir(`${base}/cd`, { recursive: true });
  await Deno.writeTextFile(`${base}/cd/ef.file`, "present");
  const miss = await info(["missing-objects", "--basedir", base, img]);
  assertEquals([miss.code, miss.stdout], [0, `ab/${d.slice(2)}\n`]);
  assert((await info(["missing-objects", img])).code !== 0, "--basedir required");
  assert((await info(["frobnicate", img])).code !== 0);
  assert((await info(["ls", `${tmp.path}/missing.img`])).code !== 0);
});

Deno.test("--filter is applied at load: dump, objects and missing-objects honour it (outputs of C 1.0.8)", async () => {
  await using tmp = await tempDir();
  const d = "ab".repeat(32), e = "cd".repeat(32);
  const objA = `ab/${d.slice(2)}`, objB = `cd/${e.slice(2)}`;
  const dump = "/ 0 40755 3 0 0 0 0.0 - - -\n" +
    "/a 0 40755 2 0 0 0 0.0 - - -\n" +
    `/a/one 100 100644 2 0 0 0 0.0 ${objA} - ${d}\n` +
    `/a/two 100 100644 1 0 0 0 0.0 ${objB} - ${e}\n` +
    "/b 0 40755 2 0 0 0 0.0 - - -\n" +
    "/b/link 0 @100644 - - - - 0.0 /a/one - -\n" +
    "/b/small 2 100644 1 0 0 0 0.0 - hi -\n" +
    "/c 0 100644 1 0 0 0 0.0 - - -\n";
  const img = `${tmp.path}/f.img`;
  assertEquals((await mk(["--from-file", "-", img], dump)).code, 0);
  // The expected lists are what C composefs-info 1.0.8 prints for this image.
  assertEquals((await info(["--filter=b", "objects", img])).stdout, `${objA}\n`);
  assertEquals((await info(["objects", "--filter", "a", img])).stdout, `${objA}\n${objB}\n`);
  assertEquals((await info(["objects", "--json", "--filter", "c", img])).stdout.includes(objA), false);
  await Deno.mkdir(`${tmp.path}/o/ab`, { recursive: true });
  await Deno.writeTextFile(`${tmp.path}/o/${objA}`, "");
  const miss = await info(["--basedir", `${tmp.path}/o`, "--filter", "a", "missing-objects", img]);
  assertEquals([miss.code, miss.stdout], [0, `${objB}\n`]);
  const missB = await info(["missing-objects", "--basedir", `${tmp.path}/o`, "--filter", "b", img]);
  assertEquals([missB.code, missB.stdout], [0, ""]);
  // dump: only /b and /c remain; the hard link's first path (/a/one) is gone, so /b/link is printed
  // in full with its backing object, as C does. Our nlink counts the paths in the printed tree.
  for (
    const args of [["--filter=b", "--filter=c", "dump", img], ["dump", "--filter", "b", "--filter", "c", img]]
  ) {
    const r = await info(args);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.split("\n").filter((l) => l).map((l) => l.split(" ")[0]), [
      "/",
      "/b",
      "/b/link",
      "/b/small",
      "/c",
    ]);
    assert(r.stdout.includes(`/b/link 100 100644 1 0 0 0 0.0 ${objA} - ${d}\n`), r.stdout);
    // The filtered dump is a dumpfile mkcomposefs takes.
    assertEquals((await mk(["--from-file", "-", `${tmp.path}/g.img`], r.stdoutBytes)).code, 0);
  }
  const help = await info(["dump", "--help"]);
  assert(!help.stdout.includes("ignored"), help.stdout);
  const mhelp = await info(["missing-objects", "--help"]);
  assert(/--basedir is required/.test(mhelp.stdout), mhelp.stdout);
  const nob = await info(["missing-objects", img]);
  assertEquals(nob.code, 2);
  assert(nob.stderr.includes("needs --basedir"), nob.stderr);
});

Deno.test("dump prints every xattr the image holds for the entry, overlay-looking ones included", async () => {
  await using tmp = await tempDir();
  // Only the markers the writer adds are left out (whiteout dirs' whiteouts/opaque, escaped whiteouts'
  // whiteout): the entries' own overlay-like xattrs survive the round trip.
  const dump = "/ 0 40755 4 0 0 0 0.0 - - - trusted.overlay.opaque=y\n" +
    "/d 0 40755 2 0 0 0 0.0 - - - trusted.overlay.opaque=y user.overlay.opaque=y\n" +
    "/d/w 0 20644 1 0 0 0 0.0 - - -\n" +
    "/e 0 40755 2 0 0 0 0.0 - - - user.overlay.whiteouts=\n" +
    "/e/f 0 100644 1 0 0 0 100.5 - - - trusted.overlay.redirect=/x user.overlay.whiteout=\n";
  const img = `${tmp.path}/rt.img`;
  const a = await mk(["--min-version=0", "--max-version=0", "--from-file", "-", img], dump);
  assertEquals(a.code, 0, a.stderr);
  const d = await info(["dump", img]);
  assertEquals([d.code, d.stdout], [0, dump]);
  // In V1 /d's own opaque would be replaced by the whiteout-dir marker: refused (issue 13.3).
  assertEquals((await mk(["--min-version=1", "--from-file", "-", `${tmp.path}/v1.img`], dump)).code, 1);
});

Deno.test("measure-file equals `fsverity digest` (empty file included) and fails on missing files", async () => {
  await using tmp = await tempDir();
  const files = [`${tmp.path}/empty`, `${tmp.path}/one`, `${tmp.path}/big`];
  await Deno.writeFile(files[0], new Uint8Array(0));
  await Deno.writeTextFile(files[1], "x");
  await Deno.writeFile(files[2], new Uint8Array(1 << 20).map((_, i) => (i * 31) & 0xff));
  const r = await info(["measure-file", ...files]);
  assertEquals(r.code, 0, r.stderr);
  const o = await new Deno.Command("fsverity", { args: ["digest", "--compact", ...files], stdout: "piped" })
    .output();
  assertEquals(r.stdout, new TextDecoder().decode(o.stdout));
  assertEquals(r.stdout.split("\n")[0], "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95");
  const bad = await info(["measure-file", `${tmp.path}/nope`]);
  assert(bad.code !== 0 && /nope/.test(bad.stderr));
});
