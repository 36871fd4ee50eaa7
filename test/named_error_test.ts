// Errors crossing to another thread as plain data (lib/errors.ts toNamed/errorFromNamed; the fetch
// threads of docs/fetch.md#threads report failures this way): class, message and context survive.
import { assert, assertEquals } from "./helpers/assert.ts";
import {
  CfsError,
  errorFromNamed,
  IntegrityError,
  InternalError,
  KernelError,
  NotFoundError,
  toNamed,
  TransportError,
} from "../lib/errors.ts";

Deno.test("named errors: typed errors come back as the same class with message and context", () => {
  for (
    const e of [
      new IntegrityError("digest X, expected Y"),
      new NotFoundError("gone"),
      new TransportError("cut"),
    ]
  ) {
    e.within("fetching http://h/objects/ab/cd");
    const back = errorFromNamed(structuredClone(toNamed(e)));
    assertEquals(back.constructor, e.constructor);
    assertEquals(back.name, e.name);
    assertEquals(back.message, e.message);
    assertEquals(back.context, ["fetching http://h/objects/ab/cd"]);
  }
  const k = errorFromNamed(
    structuredClone(toNamed(new KernelError("openat", 28, "ENOSPC", undefined, ["f"]))),
  );
  assert(k instanceof KernelError);
  assertEquals([k.errno, k.code, k.syscall, k.context], [28, "ENOSPC", "openat", ["f"]]);
});

Deno.test("named errors: an untyped error becomes an InternalError naming it, an unknown name a CfsError", () => {
  const back = errorFromNamed(toNamed(new TypeError("x is undefined")));
  assert(back instanceof InternalError);
  assertEquals(back.message, "TypeError: x is undefined");
  const odd = errorFromNamed({ name: "NoSuchError", message: "m" });
  assertEquals(odd.constructor, CfsError);
  assertEquals(odd.message, "m");
});
