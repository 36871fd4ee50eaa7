import { assertEquals } from "./helpers/assert.ts";
import { xxh32 } from "../lib/erofs/xxh32.ts";

const enc = new TextEncoder();

Deno.test("xxh32: published test vectors", () => {
  assertEquals(xxh32(enc.encode(""), 0), 0x02cc5d05);
  assertEquals(xxh32(enc.encode("a"), 0), 0x550d7456);
  assertEquals(xxh32(enc.encode("abc"), 0), 0x32d153ff);
  // python-xxhash README example (exercises the 16-byte stripe loop)
  assertEquals(xxh32(enc.encode("Nobody inspects the spammish repetition"), 0), 0xe2293b2f);
  // xxHash sanity check: empty input with seed PRIME32_1
  assertEquals(xxh32(enc.encode(""), 0x9e3779b1), 0x36b78ae7);
});
