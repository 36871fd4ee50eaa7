// The single entry to libc through FFI. Each room that needs system calls declares its own symbol
// table and opens it with `openLibc` (dlopen is reference-counted, so several tables are cheap).
// errno is read through __errno_location right after a failing call (FFI calls are synchronous).
import { KernelError } from "../errors.ts";

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  30: "EROFS",
  31: "EMLINK",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  61: "ENODATA",
  75: "EOVERFLOW",
  95: "EOPNOTSUPP",
  122: "EDQUOT",
  129: "EKEYREJECTED",
};

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOTTY: 25,
  ETXTBSY: 26,
  ENOSPC: 28,
  EROFS: 30,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ENODATA: 61,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  EKEYREJECTED: 129,
} as const;

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
