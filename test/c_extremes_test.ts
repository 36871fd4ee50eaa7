// Exact 64-bit fields (issue 13.2): dumpfiles at the extremes of every field give C mkcomposefs 1.0.8's
// image bytes (sha256 in test/data/c_extremes, see its README), composefs-info dump prints them back
// exactly, and inputs C stores wrongly (wrapped or truncated) are refused with no output file.
import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { parseDumpfileSync } from "../lib/dumpfile/parse.ts";
import { dumpfileEntryLines } from "../lib/dumpfile/write.ts";
import { writeErofs } from "../lib/erofs/writer.ts";
import { readErofs } from "../lib/erofs/reader.ts";
import { lookup, mtimeSeconds } from "../lib/tree/tree.ts";

const DATA = new URL("./data/c_extremes/", import.meta.url).pathname;
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const mk = (args: string[], stdin?: Uint8Array) => runCli(args, { invokedAs: "mkcomposefs", stdin });
const info = (args: string[]) => runCli(args, { invokedAs: "composefs-info" });

function names(prefix: boolean): string[] {
  return [...Deno.readDirSync(DATA)].map((e) => e.name)
    .filter((n) => n.endsWith(".dump") && n.startsWith("refused-") === prefix).sort();
}

Deno.test("c_extremes: every field's extremes give C 1.0.8's image (V0 and V1) and dump back exactly", async () => {
  await using tmp = await tempDir();
  const accepted = names(false);
  assertEquals(accepted.length, 6);
  for (const name of accepted) {
    const input = await Deno.readFile(DATA + name);
    const leafLines = new TextDecoder().decode(input).split("\n").filter((l) => l && !/^\S+ \d+ 4/.test(l));
    for (const v of [0, 1]) {
      const what = `${name} V${v}`;
      const want = Deno.readTextFileSync(`${DATA}${name}.v${v}.sha256`).trim();
      const img = `${tmp.path}/${name}.${v}.img`;
      const r = await mk([`--min-version=${v}`, `--max-version=${v}`, "--from-file", DATA + name, img]);
      assertEquals(r.code, 0, `${what}: ${r.stderr}`);
      assertEquals(sha256(await Deno.readFile(img)), want, what);
      const d = await info(["dump", img]);
      assertEquals(d.code, 0, `${what}: ${d.stderr}`);
      const dumped = new Set(d.stdout.split("\n"));
      for (const l of leafLines) {
        assert(dumped.has(l), `${what}: dump lacks\n${l.slice(0, 200)}\n---\n${d.stdout}`);
      }
      const again = await mk(
        [`--min-version=${v}`, `--max-version=${v}`, "--from-file", "-", `${img}.2`],
        d.stdoutBytes,
      );
      assertEquals(again.code, 0, again.stderr);
      assertEquals(sha256(await Deno.readFile(`${img}.2`)), want, `${what}: dump → mkcomposefs`);
    }
  }
});

Deno.test("c_extremes: mtimes beyond 2^53 are exact through parse, EROFS write/read and dumpfile write", () => {
  const tree = parseDumpfileSync(Deno.readFileSync(DATA + "mtime-extremes.dump"));
  const want: [string, bigint][] = [
    ["/a", (1n << 63n) - 1n],
    ["/b", -(1n << 63n)],
    ["/c", (1n << 53n) + 1n],
    ["/d", -((1n << 53n) + 1n)],
    ["/e", 1n << 62n],
    ["/f", (1n << 53n) - 1n],
  ];
  for (const version of [0, 1, 2] as const) {
    const back = readErofs(writeErofs(tree, { version }));
    for (const [p, sec] of want) assertEquals(mtimeSeconds(lookup(back, p)!.stat), sec, `${p} V${version}`);
  }
  const lines = [...dumpfileEntryLines(tree)];
  assert(lines.includes("/a 0 100644 1 0 0 0 9223372036854775807.999999999 - - -"), lines.join("\n"));
  assert(lines.includes("/c 0 100644 1 0 0 0 9007199254740993.1 - - -"));
  // All inodes beyond 2^53: compact inodes inherit the exact build_time.
  const huge = readErofs(writeErofs(parseDumpfileSync(Deno.readFileSync(DATA + "mtime-all-huge.dump")), {
    version: 0,
  }));
  assertEquals(mtimeSeconds(lookup(huge, "/d/f")!.stat), 1n << 62n);
  assertEquals(mtimeSeconds(huge.stat), 1n << 62n);
});

Deno.test("c_extremes: values C wraps or truncates are refused, naming line and field, no output file", async () => {
  await using tmp = await tempDir();
  const refused = names(true);
  assertEquals(refused.length, 8);
  for (const name of refused) {
    const out = `${tmp.path}/${name}.img`;
    const r = await mk(["--from-file", DATA + name, out]);
    assertEquals(r.code, 1, `${name}: ${r.stderr}`);
    assertMatch(
      r.stderr,
      /(line 2: (MTIME seconds|UID|GID|RDEV|file too big)|device number \d+ does not fit)/,
      name,
    );
    assert(!(await Deno.lstat(out).then(() => true, () => false)), `${name}: no output file`);
  }
});
