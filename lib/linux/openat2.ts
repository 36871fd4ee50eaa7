// openat2(2) with RESOLVE_BENEATH (docs/repository-safety.md): open a path below a directory fd such
// that `..` can never climb above the directory. By default also RESOLVE_NO_SYMLINKS: no component —
// intermediate or final — may be a symlink. A containers-storage diff/ (docs/containers-storage.md)
// asks instead for symlinks to be followed as long as they stay beneath (RESOLVE_BENEATH alone).
// Kernels without openat2 (before 5.6) get the no-symlinks guarantee by walking the components one
// openat(O_NOFOLLOW) at a time (stricter than "beneath", never looser). Also unlinkat relative to a
// directory fd.
import { KernelError } from "../errors.ts";
import { Errno, errno, errnoName, openLibc } from "./libc.ts";
import { statFd } from "./fs_at.ts";
import {
  AT_REMOVEDIR,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_PATH,
  OPEN_HOW_SIZE,
  RESOLVE_BENEATH,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  SYS_OPENAT2,
} from "./constants.ts";

const symbols = {
  syscall: { parameters: ["i64", "i64", "buffer", "buffer", "u64"], result: "i64" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

const lib = () => openLibc(symbols);

let noOpenat2 = false;

const enc = new TextEncoder();

/** `p` as bytes (a string is UTF-8 encoded). */
function toBytes(p: string | Uint8Array): Uint8Array {
  return typeof p === "string" ? enc.encode(p) : p;
}

/** NUL-terminated copy of `b`. */
function cbytes(b: string | Uint8Array): Uint8Array<ArrayBuffer> {
  const e = toBytes(b);
  const out = new Uint8Array(e.length + 1);
  out.set(e);
  return out;
}

function label(p: string | Uint8Array): string {
  return typeof p === "string" ? p : new TextDecoder().decode(p);
}

function fail(syscall: string, what: string, e: number): never {
  throw new KernelError(syscall, e, errnoName(e), undefined, [what]);
}

export interface OpenBeneathOptions {
  /**
   * Follow symlinks that resolve inside the directory (RESOLVE_BENEATH alone) instead of refusing
   * every symlink. A final symlink still fails when `flags` has O_NOFOLLOW. Without openat2 the
   * component walk refuses symlinks whatever this says.
   */
  followBeneath?: boolean;
}

/**
 * Opens `rel` (relative, `/`-separated, a string or raw bytes) below `dirFd` without leaving it and,
 * unless `opts.followBeneath`, without following any symlink. A refused symlink anywhere on the way
 * fails with ELOOP, an escape with EXDEV (openat2's errnos; the fallback walk reports the same ones).
 * O_CLOEXEC is always added.
 */
export function openBeneath(
  dirFd: number,
  rel: string | Uint8Array,
  flags: number,
  what?: string,
  opts: OpenBeneathOptions = {},
): number {
  if (!noOpenat2) {
    const resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (opts.followBeneath ? 0 : RESOLVE_NO_SYMLINKS);
    const how = new BigUint64Array([BigInt(flags | O_CLOEXEC), 0n, BigInt(resolve)]);
    const p = cbytes(rel);
    for (;;) {
      const fd = Number(
        lib().syscall(
          BigInt(SYS_OPENAT2),
          BigInt(dirFd),
          p,
          new Uint8Array(how.buffer),
          BigInt(OPEN_HOW_SIZE),
        ),
      );
      if (fd >= 0) return fd;
      const e = errno();
      if (e === Errno.EINTR || e === Errno.EAGAIN) continue;
      if (e === Errno.ENOSYS) {
        noOpenat2 = true;
        break;
      }
      // Container seccomp profiles that predate openat2 answer EPERM: the component walk gives the
      // same guarantee (and its own errno if the open really is not permitted).
      if (e === Errno.EPERM) break;
      fail("openat2", what ?? label(rel), e);
    }
  }
  return openByComponents(dirFd, rel, flags, what ?? label(rel));
}

/** The components of `rel` split at `/`, without empty ones and `.`. */
function components(rel: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    if (i < rel.length && rel[i] !== 0x2f) continue;
    const c = rel.subarray(start, i);
    if (c.length && !(c.length === 1 && c[0] === 0x2e)) parts.push(c);
    start = i + 1;
  }
  return parts;
}

const isDotDot = (c: Uint8Array) => c.length === 2 && c[0] === 0x2e && c[1] === 0x2e;

/** The fallback walk, exported so tests can check it behaves like openat2 on kernels that have it. */
export function openByComponents(
  dirFd: number,
  rel: string | Uint8Array,
  flags: number,
  what: string,
): number {
  const parts = components(toBytes(rel));
  if (parts.some(isDotDot)) fail("openat", what, Errno.EXDEV);
  let cur = dirFd;
  try {
    for (let i = 0; i < parts.length - 1; i++) {
      // O_PATH|O_NOFOLLOW opens a symlink itself: its type then tells ELOOP from ENOTDIR, as openat2.
      const next = lib().openat(cur, cbytes(parts[i]), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
      if (next < 0) fail("openat", what, errno());
      if (cur !== dirFd) lib().close(cur);
      cur = next;
      const type = statFd(cur, what).mode & S_IFMT;
      if (type === S_IFLNK) fail("openat", what, Errno.ELOOP);
      if (type !== S_IFDIR) fail("openat", what, Errno.ENOTDIR);
    }
    const last = parts.length ? cbytes(parts[parts.length - 1]) : cbytes(".");
    const fd = lib().openat(cur, last, flags | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0) {
      const e = errno();
      if (e === Errno.ENOTDIR && (flags & O_DIRECTORY) !== 0) {
        // O_DIRECTORY on a final symlink says ENOTDIR; openat2 says ELOOP: answer the same.
        const p = lib().openat(cur, last, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
        if (p >= 0) {
          const link = (statFd(p, what).mode & S_IFMT) === S_IFLNK;
          lib().close(p);
          if (link) fail("openat", what, Errno.ELOOP);
        }
      }
      fail("openat", what, e);
    }
    return fd;
  } finally {
    if (cur !== dirFd) lib().close(cur);
  }
}

/** unlinkat(dirFd, name): `name` is one component (no `/`). */
export function unlinkAtName(dirFd: number, name: string, what = name, dir = false): void {
  if (lib().unlinkat(dirFd, cbytes(name), dir ? AT_REMOVEDIR : 0) < 0) fail("unlinkat", what, errno());
}
