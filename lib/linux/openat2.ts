// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (docs/repository-safety.md): open a path below
// a directory fd such that no component — intermediate or final — may be a symlink and `..` can never
// climb above the directory. Kernels without openat2 (before 5.6) get the same guarantee by walking
// the components one openat(O_NOFOLLOW) at a time. Also unlinkat relative to a directory fd.
import { KernelError } from "../errors.ts";
import { Errno, errno, errnoName, openLibc } from "./libc.ts";
import { statFd } from "./fs_at.ts";
import { AT_REMOVEDIR, O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, O_PATH } from "./constants.ts";

const SYS_openat2 = 437n; // the same number on x86_64 and aarch64 (unified syscall table)

const symbols = {
  syscall: { parameters: ["i64", "i64", "buffer", "buffer", "u64"], result: "i64" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

const lib = () => openLibc(symbols);

export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;

let noOpenat2 = false;

function cbytes(s: string): Uint8Array<ArrayBuffer> {
  const e = new TextEncoder().encode(s);
  const out = new Uint8Array(e.length + 1);
  out.set(e);
  return out;
}

function fail(syscall: string, what: string, e: number): never {
  throw new KernelError(syscall, e, errnoName(e), undefined, [what]);
}

/**
 * Opens `rel` (relative, `/`-separated) below `dirFd` without following any symlink and without
 * leaving `dirFd`. A symlink anywhere on the way fails with ELOOP, an escape with EXDEV (openat2's
 * errnos; the fallback walk reports the same ones). O_CLOEXEC is always added.
 */
export function openBeneath(dirFd: number, rel: string, flags: number, what = rel): number {
  if (!noOpenat2) {
    const how = new BigUint64Array([
      BigInt(flags | O_CLOEXEC),
      0n,
      BigInt(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS),
    ]);
    const p = cbytes(rel);
    for (;;) {
      const fd = Number(
        lib().syscall(SYS_openat2, BigInt(dirFd), p, new Uint8Array(how.buffer), 24n),
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
      fail("openat2", what, e);
    }
  }
  return openByComponents(dirFd, rel, flags, what);
}

/** The fallback walk, exported so tests can check it behaves like openat2 on kernels that have it. */
export function openByComponents(dirFd: number, rel: string, flags: number, what: string): number {
  const parts = rel.split("/").filter((c) => c !== "" && c !== ".");
  if (parts.some((c) => c === "..")) fail("openat", what, Errno.EXDEV);
  let cur = dirFd;
  try {
    for (let i = 0; i < parts.length - 1; i++) {
      // O_PATH|O_NOFOLLOW opens a symlink itself: its type then tells ELOOP from ENOTDIR, as openat2.
      const next = lib().openat(cur, cbytes(parts[i]), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
      if (next < 0) fail("openat", what, errno());
      if (cur !== dirFd) lib().close(cur);
      cur = next;
      const type = statFd(cur, what).mode & 0o170000;
      if (type === 0o120000) fail("openat", what, 40 /* ELOOP */);
      if (type !== 0o040000) fail("openat", what, Errno.ENOTDIR);
    }
    const last = parts.length ? parts[parts.length - 1] : ".";
    const fd = lib().openat(cur, cbytes(last), flags | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0) {
      const e = errno();
      if (e === Errno.ENOTDIR && (flags & O_DIRECTORY) !== 0) {
        // O_DIRECTORY on a final symlink says ENOTDIR; openat2 says ELOOP: answer the same.
        const p = lib().openat(cur, cbytes(last), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
        if (p >= 0) {
          const link = (statFd(p, what).mode & 0o170000) === 0o120000;
          lib().close(p);
          if (link) fail("openat", what, 40 /* ELOOP */);
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
