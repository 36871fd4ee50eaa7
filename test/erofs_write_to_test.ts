// writeErofsTo (the image handed on in pieces through a reused window) gives the bytes of writeErofs,
// for every format, on random trees and on the C test vectors, whatever the window size.
import { writeErofs, writeErofsTo } from "../lib/erofs/writer.ts";
import { parseDumpfileSync } from "../lib/dumpfile/parse.ts";
import type { Directory } from "../lib/tree/tree.ts";
import { concatBytes } from "../lib/util/bytes.ts";
import { gunzipSync } from "node:zlib";
import { randomTree } from "./helpers/random_tree.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const VECTORS = new URL("../../shared/vectors/composefs-c/", import.meta.url).pathname;

function piecewise(tree: Directory, version: 0 | 1 | 2, window: number): Uint8Array {
  const pieces: Uint8Array[] = [];
  writeErofsTo(tree, { version }, (p) => pieces.push(p.slice()), window);
  return concatBytes(pieces);
}

function same(a: Uint8Array, b: Uint8Array, what: string): void {
  assertEquals(a.length, b.length, `${what}: length`);
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  assert(i === a.length, `${what}: first difference at byte ${i}`);
}

Deno.test("writeErofsTo: the bytes of writeErofs for random trees, windows of 4 KiB to 1 MiB", () => {
  for (let seed = 1; seed <= 12; seed++) {
    const tree = randomTree(seed, { entries: 400 });
    for (const version of [0, 1, 2] as const) {
      const whole = writeErofs(tree, { version });
      for (const window of [4096, 12345, 1 << 20]) {
        same(piecewise(tree, version, window), whole, `seed ${seed} v${version} window ${window}`);
      }
    }
  }
});

Deno.test("writeErofsTo: the bytes of writeErofs for the C test vectors", async () => {
  for (const name of ["config.dump.gz", "config-with-hard-link.dump.gz", "bigfile-xattr.dump"]) {
    let data = await Deno.readFile(VECTORS + name);
    if (name.endsWith(".gz")) data = new Uint8Array(gunzipSync(data));
    const tree = parseDumpfileSync(data);
    for (const version of [0, 1, 2] as const) {
      same(piecewise(tree, version, 4096), writeErofs(tree, { version }), `${name} v${version}`);
    }
  }
});
