// lib/objects/digest_set.ts against a Map of hex strings, through growth and colliding first bytes.
import { InternalError } from "../lib/errors.ts";
import { DigestSet } from "../lib/objects/digest_set.ts";
import { Rng } from "./helpers/random_tree.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("digest set: numbers digests in first-seen order, like a Map of their hex, through growth", () => {
  const rng = new Rng(7);
  const set = new DigestSet(64);
  const ref = new Map<string, number>();
  const seen: Uint8Array[] = [];
  for (let i = 0; i < 5000; i++) {
    let d: Uint8Array;
    if (seen.length > 0 && rng.chance(0.25)) d = rng.pick(seen).slice();
    else {
      d = rng.bytes(64);
      // every 16th digest shares its first 8 bytes with another: same slot, different digest
      if (i % 16 === 0 && seen.length > 0) d.set(seen[seen.length - 1].subarray(0, 8));
      seen.push(d);
    }
    const k = hex(d);
    const want = ref.get(k) ?? ref.size;
    if (!ref.has(k)) {
      assert(!set.has(d), `digest ${i} reported present before it was added`);
      assertEquals(set.indexOf(d), -1);
    }
    ref.set(k, want);
    assertEquals(set.add(d), want, `digest ${i}`);
    assert(set.has(d));
  }
  assertEquals(set.size, ref.size);
  const all = set.bytes();
  assertEquals(all.length, ref.size * 64);
  for (const [k, i] of ref) {
    assertEquals(hex(all.subarray(i * 64, (i + 1) * 64)), k);
    assertEquals(hex(set.at(i)), k);
  }
});

Deno.test("digest set: refuses a digest of the wrong length and an entry out of range", () => {
  const set = new DigestSet(32);
  assertThrows(() => set.add(new Uint8Array(64)), InternalError);
  assertThrows(() => set.at(0), InternalError);
});
