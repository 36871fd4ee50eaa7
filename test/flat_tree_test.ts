// The column form of a tree (lib/tree/flat.ts): a dumpfile read into columns gives the same image as the
// same dumpfile read into objects (every C vector, V0/V1/V2), conversions both ways keep it, the
// mkcomposefs transforms on columns equal the ones on objects, and entries out of byte order are
// sorted and still checked for duplicates.
import { gunzipSync } from "node:zlib";
import { assert, assertEquals, assertMatch, assertThrows } from "./helpers/assert.ts";
import { parseDumpfileFlatSync, parseDumpfileSync } from "../lib/dumpfile/parse.ts";
import { writeErofs } from "../lib/erofs/writer.ts";
import { flatToTree, treeToFlat } from "../lib/tree/flat.ts";
import {
  filterXattrs,
  filterXattrsFlat,
  removeDevices,
  removeDevicesFlat,
  zeroMtimes,
  zeroMtimesFlat,
} from "../lib/tree/transform.ts";
import { describeError, FormatError } from "../lib/errors.ts";
import { type Directory, lookup } from "../lib/tree/tree.ts";

const VECTORS = new URL("../../shared/vectors/composefs-c/", import.meta.url).pathname;

function vectors(): [string, Uint8Array][] {
  return [...Deno.readDirSync(VECTORS)].map((e) => e.name)
    .filter((n) => /\.dump(\.gz)?$/.test(n) && !n.startsWith("should-fail-")).sort()
    .map((n) => {
      const data = Deno.readFileSync(VECTORS + n);
      return [n, n.endsWith(".gz") ? new Uint8Array(gunzipSync(data)) : data];
    });
}

function sameImage(a: Uint8Array, b: Uint8Array, what: string): void {
  assertEquals(a.length, b.length, what);
  assert(a.every((x, i) => x === b[i]), `${what}: images differ`);
}

Deno.test("flat: every C vector as columns gives the image of it as objects, both ways converted too", () => {
  const list = vectors();
  assert(list.length >= 14);
  for (const [name, data] of list) {
    for (const version of [0, 1, 2] as const) {
      const fromObjects = writeErofs(parseDumpfileSync(data), { version });
      const flat = parseDumpfileFlatSync(data);
      sameImage(writeErofs(flat, { version }), fromObjects, `${name} V${version}`);
      sameImage(
        writeErofs(treeToFlat(flatToTree(flat)), { version }),
        fromObjects,
        `${name} V${version} round trip`,
      );
    }
  }
});

Deno.test("flat: the mkcomposefs transforms on columns equal the ones on objects", () => {
  for (const name of ["special.dump", "config-with-hard-link.dump.gz", "honggfuzz-bigfile-with-acl.dump"]) {
    const data = vectors().find(([n]) => n === name)![1];
    const cases: [(t: Directory) => void, (t: ReturnType<typeof parseDumpfileFlatSync>) => void][] = [
      [(t) => filterXattrs(t, () => false), (t) => filterXattrsFlat(t, () => false)],
      [
        (t) => filterXattrs(t, (n) => n.startsWith("user.")),
        (t) => filterXattrsFlat(t, (n) => n.startsWith("user.")),
      ],
      [removeDevices, removeDevicesFlat],
      [zeroMtimes, zeroMtimesFlat],
    ];
    for (const [k, [onTree, onFlat]] of cases.entries()) {
      const tree = parseDumpfileSync(data);
      onTree(tree);
      const flat = parseDumpfileFlatSync(data);
      onFlat(flat);
      for (const version of [0, 2] as const) {
        sameImage(
          writeErofs(flat, { version }),
          writeErofs(tree, { version }),
          `${name} transform ${k} V${version}`,
        );
      }
    }
  }
});

Deno.test("flat: entries out of byte order are sorted in the image; a duplicate among them is refused", () => {
  const root = "/ 4096 40755 2 0 0 0 0.0 - - -\n";
  const dir = (p: string) => `${p} 4096 40755 2 0 0 0 0.0 - - -\n`;
  const file = (p: string) => `${p} 0 100644 1 0 0 0 0.0 - - -\n`;
  const sorted = root + dir("/d") + file("/d/a") + file("/d/b") + file("/d/c") + file("/z");
  const shuffled = root + file("/z") + dir("/d") + file("/d/c") + file("/d/a") + file("/d/b");
  const flat = parseDumpfileFlatSync(shuffled);
  assertEquals(flat.children(0).map((e) => flat.name[e]), ["d", "z"]);
  sameImage(
    writeErofs(flat, { version: 1 }),
    writeErofs(parseDumpfileFlatSync(sorted), { version: 1 }),
    "sorted",
  );
  const tree = flatToTree(flat);
  assertEquals([...(lookup(tree, "/d") as Directory).entries.keys()], ["c", "a", "b"]); // dumpfile order
  const e = assertThrows(() => parseDumpfileFlatSync(shuffled + file("/d/a")), FormatError);
  assertMatch(describeError(e), /^line 7: path "\/d\/a" already exists/);
});
