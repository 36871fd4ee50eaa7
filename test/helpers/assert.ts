// Thin wrappers over node:assert/strict (no @std/assert here).
import assert from "node:assert/strict";

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  assert.deepStrictEqual(actual, expected, msg);
}
export function assert_(cond: unknown, msg?: string): asserts cond {
  assert.ok(cond, msg);
}
export { assert_ as assert };
export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  assert.match(actual, re, msg);
}
export async function assertRejects(
  fn: () => Promise<unknown>,
  re?: RegExp | (new (...a: any[]) => Error),
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    if (re instanceof RegExp) assert.match(String((e as Error)?.message ?? e), re);
    else if (re) assert.ok(e instanceof re, `expected ${re.name}, got ${e}`);
    return e as Error;
  }
  throw new assert.AssertionError({ message: "expected rejection" });
}
export function assertThrows(fn: () => unknown, re?: RegExp | (new (...a: any[]) => Error)): Error {
  try {
    fn();
  } catch (e) {
    if (re instanceof RegExp) assert.match(String((e as Error)?.message ?? e), re);
    else if (re) assert.ok(e instanceof re, `expected ${re.name}, got ${e}`);
    return e as Error;
  }
  throw new assert.AssertionError({ message: "expected throw" });
}
export const isRoot = Deno.uid() === 0;
