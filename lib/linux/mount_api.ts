// The new Linux mount API (fsopen/fsconfig/fsmount/move_mount/open_tree) and umount2, through FFI.
// glibc ≥ 2.36 has wrappers, but older hosts do not, so every call goes through `syscall()` with the
// x86_64 numbers. A failing fsconfig/create leaves its reason in the fs context's log (readable from
// the context fd as "e …"/"w …"/"i …" lines), not in errno: we read it and put it in the error.
import { KernelError } from "../errors.ts";
import { cstr, errno, errnoName, openLibc } from "./libc.ts";
import {
  Errno,
  FSCONFIG_CMD_CREATE,
  FSCONFIG_SET_FD,
  FSCONFIG_SET_FLAG,
  FSCONFIG_SET_STRING,
  FSOPEN_CLOEXEC,
  O_CLOEXEC,
  SYS_FSCONFIG,
  SYS_FSMOUNT,
  SYS_FSOPEN,
  SYS_MOUNT_SETATTR,
  SYS_MOVE_MOUNT,
  SYS_OPEN_TREE,
} from "./constants.ts";
export {
  AT_EMPTY_PATH,
  AT_FDCWD,
  AT_RECURSIVE,
  FSCONFIG_CMD_CREATE,
  FSCONFIG_SET_FD,
  FSCONFIG_SET_FLAG,
  FSCONFIG_SET_STRING,
  FSMOUNT_CLOEXEC,
  FSOPEN_CLOEXEC,
  MNT_DETACH,
  MNT_FORCE,
  MOUNT_ATTR_IDMAP,
  MOUNT_ATTR_NODEV,
  MOUNT_ATTR_NOEXEC,
  MOUNT_ATTR_NOSUID,
  MOUNT_ATTR_RDONLY,
  MOVE_MOUNT_F_EMPTY_PATH,
  O_CLOEXEC,
  O_DIRECTORY,
  O_PATH,
  O_RDONLY,
  O_RDWR,
  OPEN_TREE_CLONE,
} from "./constants.ts";

/** errno values the mount code reacts to. */
export const ENOTBLK = Errno.ENOTBLK;

const symbols = {
  sys_fsopen: { name: "syscall", parameters: ["i64", "buffer", "u32"], result: "i64" },
  sys_fsconfig: {
    name: "syscall",
    parameters: ["i64", "i32", "u32", "buffer", "buffer", "i32"],
    result: "i64",
  },
  sys_fsmount: { name: "syscall", parameters: ["i64", "i32", "u32", "u32"], result: "i64" },
  sys_move_mount: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "i32", "buffer", "u32"],
    result: "i64",
  },
  sys_open_tree: { name: "syscall", parameters: ["i64", "i32", "buffer", "u32"], result: "i64" },
  sys_mount_setattr: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "u32", "buffer", "usize"],
    result: "i64",
  },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
} as const;

let lib: ReturnType<typeof openLibc<typeof symbols>> | undefined;
function L() {
  return lib ??= openLibc(symbols);
}

function fail(syscall: string, what: string, e: number, log: string[] = []): KernelError {
  let msg = `${syscall}(${what}) failed: ${errnoName(e)} (errno ${e})`;
  if (log.length) msg += `: kernel says: ${log.join("; ")}`;
  else if (syscall === "fsconfig" && what === "create") msg += " (the kernel gave no reason here; see dmesg)";
  return new KernelError(syscall, e, errnoName(e), msg);
}

/** An fs context log message; `level` is "e" (error), "w" (warning) or "i" (info). */
export interface FsLogMessage {
  level: string;
  text: string;
}

/**
 * Reads (and so consumes) every pending message of an fs context's log. The kernel keeps at most
 * 8 of them; read() returns one per call and fails with ENODATA when the log is empty.
 */
export function readFsLog(fsfd: number): FsLogMessage[] {
  const out: FsLogMessage[] = [];
  const buf = new Uint8Array(4096);
  const dec = new TextDecoder();
  for (let i = 0; i < 64; i++) {
    const n = Number(L().read(fsfd, buf, BigInt(buf.length)));
    if (n <= 0) break;
    const line = dec.decode(buf.subarray(0, n)).replace(/\n$/, "");
    const m = /^([ewi]) (.*)$/s.exec(line);
    out.push(m ? { level: m[1], text: m[2] } : { level: "e", text: line });
  }
  return out;
}

function logLines(fsfd: number): string[] {
  try {
    return readFsLog(fsfd).map((m) => (m.level === "e" ? m.text : `${m.level}: ${m.text}`));
  } catch {
    return [];
  }
}

/** fsopen(fsType, FSOPEN_CLOEXEC): a new fs context fd. ENODEV = the kernel lacks this filesystem. */
export function fsopen(fsType: string): number {
  const r = Number(L().sys_fsopen(BigInt(SYS_FSOPEN), cstr(fsType), FSOPEN_CLOEXEC));
  if (r < 0) throw fail("fsopen", fsType, errno());
  return r;
}

function fsconfig(
  fsfd: number,
  cmd: number,
  key: string | null,
  value: Uint8Array | null,
  aux: number,
  what: string,
): void {
  const r = Number(
    L().sys_fsconfig(BigInt(SYS_FSCONFIG), fsfd, cmd, key === null ? null : cstr(key), value, aux),
  );
  if (r < 0) {
    const e = errno();
    throw fail("fsconfig", what, e, logLines(fsfd));
  }
}

export function fsconfigSetFlag(fsfd: number, key: string): void {
  fsconfig(fsfd, FSCONFIG_SET_FLAG, key, null, 0, key);
}

export function fsconfigSetString(fsfd: number, key: string, value: string): void {
  fsconfig(fsfd, FSCONFIG_SET_STRING, key, cstr(value), 0, `${key}=${value}`);
}

export function fsconfigSetFd(fsfd: number, key: string, fd: number): void {
  fsconfig(fsfd, FSCONFIG_SET_FD, key, null, fd, `${key}=fd ${fd}`);
}

/** FSCONFIG_CMD_CREATE: builds the superblock; most mount errors (bad image, bad layers) surface here. */
export function fsconfigCreate(fsfd: number): void {
  fsconfig(fsfd, FSCONFIG_CMD_CREATE, null, null, 0, "create");
}

/** fsmount: a detached mount of a created context; the returned fd owns it until attached. */
export function fsmount(fsfd: number, flags: number, attrs: number): number {
  const r = Number(L().sys_fsmount(BigInt(SYS_FSMOUNT), fsfd, flags, attrs));
  if (r < 0) {
    const e = errno();
    throw fail("fsmount", `attrs=0x${attrs.toString(16)}`, e, logLines(fsfd));
  }
  return r;
}

/** move_mount(fromFd, fromPath, toDirFd, toPath, flags); attaches a detached mount with F_EMPTY_PATH. */
export function moveMount(
  fromFd: number,
  fromPath: string,
  toDirFd: number,
  toPath: string,
  flags: number,
): void {
  const r = Number(
    L().sys_move_mount(BigInt(SYS_MOVE_MOUNT), fromFd, cstr(fromPath), toDirFd, cstr(toPath), flags),
  );
  if (r < 0) throw fail("move_mount", toPath, errno());
}

/** open_tree(dirfd, path, flags), e.g. OPEN_TREE_CLONE to get a detached copy of a mounted tree. */
export function openTree(dirfd: number, path: string, flags: number): number {
  const r = Number(L().sys_open_tree(BigInt(SYS_OPEN_TREE), dirfd, cstr(path), flags));
  if (r < 0) throw fail("open_tree", path, errno());
  return r;
}

/** mount_setattr(dirfd, path, flags, {attr_set, attr_clr, propagation, userns_fd}). */
export function mountSetattr(
  dirfd: number,
  path: string,
  flags: number,
  attr: { set?: number; clear?: number; propagation?: number; usernsFd?: number },
): void {
  const a = new DataView(new ArrayBuffer(32));
  a.setBigUint64(0, BigInt(attr.set ?? 0), true);
  a.setBigUint64(8, BigInt(attr.clear ?? 0), true);
  a.setBigUint64(16, BigInt(attr.propagation ?? 0), true);
  a.setBigUint64(24, BigInt(attr.usernsFd ?? 0), true);
  const r = Number(
    L().sys_mount_setattr(BigInt(SYS_MOUNT_SETATTR), dirfd, cstr(path), flags, new Uint8Array(a.buffer), 32n),
  );
  if (r < 0) throw fail("mount_setattr", path, errno());
}

export function umount2(path: string, flags: number): void {
  if (L().umount2(cstr(path), flags) < 0) throw fail("umount2", path, errno());
}

/** open(2); returns the raw fd (O_CLOEXEC is always added). */
export function openFd(path: string, flags: number, mode = 0): number {
  const r = L().open(cstr(path), flags | O_CLOEXEC, mode);
  if (r < 0) throw fail("open", path, errno());
  return r;
}

/** close(2), ignoring errors (used on cleanup paths); negative fds are skipped. */
export function closeFd(fd: number): void {
  if (fd >= 0) L().close(fd);
}

/** pread(2) into `buf`; returns the number of bytes read. */
export function preadFd(fd: number, buf: Uint8Array<ArrayBuffer>, offset: number): number {
  const r = Number(L().pread(fd, buf, BigInt(buf.length), BigInt(offset)));
  if (r < 0) throw fail("pread", `fd ${fd}`, errno());
  return r;
}
