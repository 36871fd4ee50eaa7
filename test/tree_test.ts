// Tree helpers and transforms: walk order, clone sharing, counts, container-root transform (§1.3, §7.3).
import { Buffer } from "node:buffer";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { parseDumpfileSync } from "../lib/dumpfile/parse.ts";
import { dumpfileBytes } from "../lib/dumpfile/write.ts";
import { type Directory, type Leaf, lookup } from "../lib/tree/tree.ts";
import { cloneTree, countLeafLinks, countTree, walkTree } from "../lib/tree/walk.ts";
import {
  filterXattrs,
  propagateUsrToRoot,
  removeDevices,
  transformForContainerRoot,
  zeroMtimes,
} from "../lib/tree/transform.ts";
import { FormatError } from "../lib/errors.ts";

const parse = (s: string): Directory => parseDumpfileSync(Buffer.from(s, "latin1"));
const dump = (t: Directory): string => Buffer.from(dumpfileBytes(t)).toString("latin1");
const D = "a".repeat(64);

const FIXTURE = "/ 0 40700 2 0 0 0 1.1 - - - user.root=r\n" +
  "/B 0 100644 1 0 0 0 0.0 - - -\n" +
  "/a 0 20644 1 0 0 0 0.0 - - -\n" +
  "/a2 0 60644 1 0 0 7 0.0 - - -\n" +
  "/run 0 40755 2 0 0 0 9.9 - - -\n" +
  "/run/x 0 40755 2 0 0 0 9.9 - - -\n" +
  "/run/x/y 0 100644 1 0 0 0 9.9 - - -\n" +
  "/usr 0 40751 2 12 34 0 1234.5678 - - - security.capability=c security.selinux=s user.u=u\n" +
  `/usr/f 100 100644 2 0 0 0 5.6 ${D.slice(0, 2)}/${D.slice(2)} - ${D} user.f=1 security.capability=cap\n` +
  "/usr/g 0 @100644 - - - - 0.0 /usr/f - -\n" +
  "/\xe9 0 100644 1 0 0 0 0.0 - - -\n";

Deno.test("walkTree: pre-order, byte order of names, paths and parents", () => {
  const t = parse(FIXTURE.replace("/\xe9 ", "/\\xe9 "));
  const paths = [...walkTree(t)].map((e) => e.path);
  assertEquals(paths, [
    "/",
    "/B",
    "/a",
    "/a2",
    "/run",
    "/run/x",
    "/run/x/y",
    "/usr",
    "/usr/f",
    "/usr/g",
    "/\xe9",
  ]);
  const f = [...walkTree(t)].find((e) => e.path === "/usr/f")!;
  assert(f.parent === lookup(t, "/usr"));
  assertEquals(f.name, "f");
});

Deno.test("cloneTree keeps hard links shared and is independent of the original", () => {
  const t = parse(FIXTURE.replace("/\xe9 ", "/\\xe9 "));
  const c = cloneTree(t);
  assertEquals(dump(c), dump(t));
  const f = lookup(c, "/usr/f") as Leaf;
  assert(f === lookup(c, "/usr/g"), "hard link shared in the copy");
  assert(f !== lookup(t, "/usr/f"), "new objects");
  assertEquals(f.canonicalPath, "/usr/f");
  f.stat.xattrs.set("user.new", new Uint8Array([1]));
  (lookup(c, "/usr") as Directory).entries.delete("g");
  assert(!(lookup(t, "/usr/f") as Leaf).stat.xattrs.has("user.new"));
  assert(lookup(t, "/usr/g"));
  assertEquals(countLeafLinks(t).get(lookup(t, "/usr/f") as Leaf), 2);
  assertEquals(countTree(t), {
    directories: 4,
    leaves: 6,
    leafEntries: 7,
    externalFiles: 1,
    externalBytes: 100,
  });
});

Deno.test("transformForContainerRoot: allowlist xattrs, root from /usr, /run emptied", () => {
  const t = parse(FIXTURE.replace("/\xe9 ", "/\\xe9 "));
  transformForContainerRoot(t);
  const out = dump(t).split("\n");
  // root: /usr's mode, owner, mtime and (filtered) xattrs; /run empty with /usr's mtime
  assertEquals(out[0], "/ 0 40751 4 12 34 0 1234.5678 - - - security.capability=c");
  assert(out.includes("/run 0 40755 2 0 0 0 1234.5678 - - -"));
  assert(!out.some((l) => l.startsWith("/run/")));
  assert(
    out.includes(
      `/usr/f 100 100644 2 0 0 0 5.6 ${D.slice(0, 2)}/${D.slice(2)} - ${D} security.capability=cap`,
    ),
  );
  assert(out.includes("/usr 0 40751 2 12 34 0 1234.5678 - - - security.capability=c"));

  const noUsr = parse("/ 0 40755 2 0 0 0 0.0 - - -\n/etc 0 40755 2 0 0 0 0.0 - - -\n");
  assertThrows(() => propagateUsrToRoot(noUsr), FormatError);
  const usrLink = parse("/ 0 40755 2 0 0 0 0.0 - - -\n/usr 3 120777 1 0 0 0 0.0 foo - -\n");
  assertThrows(() => propagateUsrToRoot(usrLink), /not a directory/);
  // /run as a symlink is left alone
  const runLink = parse(
    "/ 0 40755 2 0 0 0 0.0 - - -\n/usr 0 40755 2 0 0 0 7.0 - - -\n/run 3 120777 1 0 0 0 0.0 foo - -\n",
  );
  propagateUsrToRoot(runLink);
  assertEquals((lookup(runLink, "/run") as Leaf).content, { type: "symlink", target: "foo" });
});

Deno.test("mkcomposefs transforms: epoch mtimes, devices removed, user xattrs", () => {
  const t = parse(FIXTURE.replace("/\xe9 ", "/\\xe9 "));
  zeroMtimes(t);
  removeDevices(t);
  filterXattrs(t, (n) => n.startsWith("user."));
  const out = dump(t);
  assert(!/ [1-9][0-9]*\.[0-9]+ /.test(out.replace(/ 0\.0 /g, " ")), "all mtimes 0.0");
  assertEquals(lookup(t, "/a"), undefined);
  assertEquals(lookup(t, "/a2"), undefined);
  assert(lookup(t, "/B"));
  assertEquals([...(lookup(t, "/usr/f") as Leaf).stat.xattrs.keys()], ["user.f"]);
  assertEquals([...t.stat.xattrs.keys()], ["user.root"]);
});
