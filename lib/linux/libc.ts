// The single entry to libc through FFI. Each room that needs system calls declares its own symbol
// table and opens it with `openLibc` (dlopen is reference-counted, so several tables are cheap).
// errno is read through __errno_location right after a failing call (FFI calls are synchronous).
import { KernelError } from "../errors.ts";
import { Errno } from "./constants.ts";
export { Errno } from "./constants.ts";

/** errno number → name, for messages. */
const ERRNO_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Errno).map(([name, value]) => [value, name]),
);

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E${errno}`;
}

const baseSymbols = {
  __errno_location: { parameters: [], result: "pointer" },
} as const;

let baseLib: Deno.DynamicLibrary<typeof baseSymbols> | undefined;
let ffiUnavailable: unknown;

function libcPath(): string {
  return "libc.so.6";
}

function base(): Deno.DynamicLibrary<typeof baseSymbols> {
  if (baseLib) return baseLib;
  if (ffiUnavailable) throw ffiUnavailable;
  try {
    baseLib = Deno.dlopen(libcPath(), baseSymbols);
    return baseLib;
  } catch (e) {
    ffiUnavailable = e;
    throw e;
  }
}

/** Opens libc with the given symbol table (cached per table object). */
const cache = new WeakMap<object, unknown>();
export function openLibc<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] {
  const hit = cache.get(symbols);
  if (hit) return hit as Deno.DynamicLibrary<S>["symbols"];
  base();
  const lib = Deno.dlopen(libcPath(), symbols);
  cache.set(symbols, lib.symbols);
  return lib.symbols;
}

/** Current thread's errno. Call immediately after the failing FFI call. */
export function errno(): number {
  const p = base().symbols.__errno_location();
  if (p === null) return 0;
  return new Deno.UnsafePointerView(p).getInt32(0);
}

/** NUL-terminated copy of a path. Byte strings (chars ≤ 0xFF) should use `cstrBytes`. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder().encode(s);
  const out = new Uint8Array(enc.length + 1);
  out.set(enc);
  return out;
}

export function cstrBytes(b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/** Throws KernelError(syscall, errno) when `ret` is negative; returns `ret` otherwise. */
export function check<T extends number | bigint>(syscall: string, ret: T, context?: string): T {
  if ((typeof ret === "bigint" ? ret < 0n : ret < 0)) {
    const e = errno();
    throw new KernelError(
      syscall,
      e,
      errnoName(e),
      undefined,
      context ? [context] : undefined,
    );
  }
  return ret;
}
