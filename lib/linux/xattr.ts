// Extended attributes through FFI (Deno has no xattr API). Names are byte strings (lib/util/bytes.ts);
// paths are raw bytes (any file name, not only UTF-8). The l* calls never follow a final symlink.
import { check, cstrBytes, Errno, errno, openLibc } from "./libc.ts";
import { KernelError } from "../errors.ts";
import { bstrToBytes, bytesToBstr } from "../util/bytes.ts";

const symbols = {
  llistxattr: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  flistxattr: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  fgetxattr: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
} as const;

function lib() {
  return openLibc(symbols);
}

const EMPTY = new Uint8Array(0);

/** Calls `fn(buf, size)` until the buffer is large enough (the value may grow between calls).
 *  Returns null when the call reports `absent` errnos. */
function sized(
  what: string,
  fn: (buf: Uint8Array<ArrayBuffer> | null, size: number) => number | bigint,
  absent: number[],
): Uint8Array | null {
  for (let attempt = 0; attempt < 8; attempt++) {
    const need = Number(fn(null, 0));
    if (need < 0) {
      const e = errno();
      if (absent.includes(e)) return null;
      check(what, -1);
    }
    if (need === 0) return EMPTY;
    const buf = new Uint8Array(need);
    const got = Number(fn(buf, need));
    if (got >= 0) return buf.subarray(0, got);
    const e = errno();
    if (e === Errno.ERANGE) continue;
    if (absent.includes(e)) return null;
    check(what, -1);
  }
  throw new KernelError(what, Errno.ERANGE, "ERANGE", `${what}: value keeps growing`);
}

function splitNames(list: Uint8Array): string[] {
  const names: string[] = [];
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    if (list[i] === 0) {
      if (i > start) names.push(bytesToBstr(list.subarray(start, i)));
      start = i + 1;
    }
  }
  return names;
}

// Filesystems without xattr support answer EOPNOTSUPP: that simply means "no xattrs".
const NO_XATTRS = [Errno.EOPNOTSUPP];

/** xattr names (byte strings) of `path` (raw bytes), not following a final symlink. */
export function listXattrs(path: Uint8Array): string[] {
  const p = cstrBytes(path);
  const list = sized("llistxattr", (b, n) => lib().llistxattr(p, b, BigInt(n)), NO_XATTRS);
  return list ? splitNames(list) : [];
}

/** Value of xattr `name` (byte string) of `path`, or null when absent. */
export function getXattr(path: Uint8Array, name: string): Uint8Array | null {
  const p = cstrBytes(path);
  const n = cstrBytes(bstrToBytes(name));
  return sized("lgetxattr", (b, s) => lib().lgetxattr(p, n, b, BigInt(s)), [Errno.ENODATA, ...NO_XATTRS]);
}

/** All xattrs of `path` (not following a final symlink). */
export function readXattrs(path: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const name of listXattrs(path)) {
    const v = getXattr(path, name);
    if (v !== null) out.set(name, v.slice());
  }
  return out;
}

/** All xattrs of an open file descriptor. */
export function readXattrsFd(fd: number): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const list = sized("flistxattr", (b, n) => lib().flistxattr(fd, b, BigInt(n)), NO_XATTRS);
  if (!list) return out;
  for (const name of splitNames(list)) {
    const nb = cstrBytes(bstrToBytes(name));
    const v = sized("fgetxattr", (b, s) => lib().fgetxattr(fd, nb, b, BigInt(s)), [Errno.ENODATA]);
    if (v !== null) out.set(name, v.slice());
  }
  return out;
}

// Scratch buffers for the scan's per-file xattr reads: one list call answers "none" (the common
// case) without allocating; values are copied out.
let listBuf = new Uint8Array(4096);
let valueBuf = new Uint8Array(4096);

/**
 * Like readXattrsFd / readXattrs (by `fd`, or by `path` without following a final symlink), but
 * returns null when there are none, and allocates nothing in that case.
 */
export function readXattrsOrNull(fd: number, path?: Uint8Array): Map<string, Uint8Array> | null {
  const p = path ? cstrBytes(path) : null;
  const what = p ? "llistxattr" : "flistxattr";
  let len: number;
  for (;;) {
    len = Number(
      p
        ? lib().llistxattr(p, listBuf, BigInt(listBuf.length))
        : lib().flistxattr(fd, listBuf, BigInt(listBuf.length)),
    );
    if (len >= 0) break;
    const e = errno();
    if (e === Errno.ERANGE) {
      const need = Number(p ? lib().llistxattr(p, null, 0n) : lib().flistxattr(fd, null, 0n));
      if (need < 0) check(what, -1, path ? bytesToBstr(path) : undefined);
      listBuf = new Uint8Array(Math.max(need, listBuf.length * 2));
      continue;
    }
    if (e === Errno.EOPNOTSUPP) return null; // no xattr support: none
    check(what, -1, path ? bytesToBstr(path) : undefined);
  }
  if (len === 0) return null;
  const out = new Map<string, Uint8Array>();
  for (const name of splitNames(listBuf.subarray(0, len))) {
    const nb = cstrBytes(bstrToBytes(name));
    for (;;) {
      const n = Number(
        p
          ? lib().lgetxattr(p, nb, valueBuf, BigInt(valueBuf.length))
          : lib().fgetxattr(fd, nb, valueBuf, BigInt(valueBuf.length)),
      );
      if (n >= 0) {
        out.set(name, valueBuf.slice(0, n));
        break;
      }
      const e = errno();
      if (e === Errno.ENODATA) break; // removed since the list call
      if (e !== Errno.ERANGE) check(p ? "lgetxattr" : "fgetxattr", -1, path ? bytesToBstr(path) : undefined);
      const need = Number(p ? lib().lgetxattr(p, nb, null, 0n) : lib().fgetxattr(fd, nb, null, 0n));
      valueBuf = new Uint8Array(Math.max(need, valueBuf.length * 2));
    }
  }
  return out.size > 0 ? out : null;
}
