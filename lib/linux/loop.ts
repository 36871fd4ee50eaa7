// Loop devices, for kernels whose erofs cannot mount straight from a file (before Linux 6.12):
// LOOP_CTL_GET_FREE on /dev/loop-control picks a free /dev/loopN, LOOP_CONFIGURE binds it to the
// image fd in one call (read-only, direct I/O, cleared automatically when the last user closes it).
import { KernelError } from "../errors.ts";
import { errno, errnoName, openLibc } from "./libc.ts";
import { closeFd, O_RDONLY, openFd } from "./mount_api.ts";
import {
  LO_FLAGS_AUTOCLEAR,
  LO_FLAGS_DIRECT_IO,
  LO_FLAGS_READ_ONLY,
  LOOP_CLR_FD,
  LOOP_CONFIGURE,
  LOOP_CTL_GET_FREE,
} from "./constants.ts";
export {
  LO_FLAGS_AUTOCLEAR,
  LO_FLAGS_DIRECT_IO,
  LO_FLAGS_PARTSCAN,
  LO_FLAGS_READ_ONLY,
  LOOP_CLR_FD,
  LOOP_CONFIGURE,
  LOOP_CTL_GET_FREE,
} from "./constants.ts";

/** sizeof(struct loop_config) from <linux/loop.h> (x86_64). */
export const LOOP_CONFIG_SIZE = 304;
/** Offsets inside struct loop_config (info starts at 8; loop_info64 fields are relative to it). */
export const LOOP_CONFIG = {
  fd: 0, // u32
  blockSize: 4, // u32
  info: 8, // struct loop_info64
  infoOffset: 8 + 24, // u64 lo_offset
  infoSizeLimit: 8 + 32, // u64 lo_sizelimit
  infoFlags: 8 + 52, // u32 lo_flags
  infoFileName: 8 + 56, // u8[64] lo_file_name
} as const;

/**
 * Builds a struct loop_config: backing fd, logical block size (0 = let the kernel choose), lo_flags,
 * and lo_file_name (informational only: shown by losetup; truncated to 63 bytes + NUL).
 */
export function buildLoopConfig(
  fd: number,
  opts: { blockSize?: number; flags?: number; fileName?: Uint8Array } = {},
): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(LOOP_CONFIG_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(LOOP_CONFIG.fd, fd, true);
  v.setUint32(LOOP_CONFIG.blockSize, opts.blockSize ?? 0, true);
  v.setUint32(LOOP_CONFIG.infoFlags, opts.flags ?? 0, true);
  if (opts.fileName) buf.set(opts.fileName.subarray(0, 63), LOOP_CONFIG.infoFileName);
  return buf;
}

const symbols = {
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
} as const;

let lib: ReturnType<typeof openLibc<typeof symbols>> | undefined;
function L() {
  return lib ??= openLibc(symbols);
}

function fail(what: string, e: number): KernelError {
  return new KernelError("ioctl", e, errnoName(e), `${what} failed: ${errnoName(e)} (errno ${e})`);
}

/** A configured loop device; `fd` keeps it bound (AUTOCLEAR) until closed and no mount uses it. */
export interface LoopDevice {
  path: string;
  fd: number;
}

/**
 * Attaches `backingFd` read-only to a free loop device. Retries when another process takes the device
 * between GET_FREE and CONFIGURE (EBUSY), and retries without direct I/O when the backing file system
 * refuses it (EINVAL).
 */
export function attachLoopDevice(backingFd: number, fileName?: Uint8Array): LoopDevice {
  let ctl: number;
  try {
    ctl = openFd("/dev/loop-control", 2 /* O_RDWR */);
  } catch (e) {
    throw e instanceof KernelError ? e.within("loop devices unavailable") : e;
  }
  try {
    let dio = true;
    for (let attempt = 0; attempt < 16; attempt++) {
      const n = L().ioctl_int(ctl, BigInt(LOOP_CTL_GET_FREE), 0n);
      if (n < 0) throw fail("LOOP_CTL_GET_FREE on /dev/loop-control", errno());
      const path = `/dev/loop${n}`;
      const fd = openFd(path, O_RDONLY);
      const flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | (dio ? LO_FLAGS_DIRECT_IO : 0);
      const cfg = buildLoopConfig(backingFd, { flags, fileName });
      if (L().ioctl_ptr(fd, BigInt(LOOP_CONFIGURE), cfg) === 0) return { path, fd };
      const e = errno();
      closeFd(fd);
      if (e === 16 /* EBUSY */) continue;
      if (e === 22 /* EINVAL */ && dio) {
        dio = false;
        continue;
      }
      throw fail(`LOOP_CONFIGURE on ${path}`, e);
    }
    throw fail("LOOP_CONFIGURE (no free loop device after 16 attempts)", 16);
  } finally {
    closeFd(ctl);
  }
}

/** Unbinds a loop device now (for error paths before anything mounted it), then closes its fd. */
export function detachLoopDevice(dev: LoopDevice): void {
  L().ioctl_int(dev.fd, BigInt(LOOP_CLR_FD), 0n);
  closeFd(dev.fd);
}
