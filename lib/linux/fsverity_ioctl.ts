// fs-verity through the kernel (docs/fsverity.md#kernel): FS_IOC_ENABLE_VERITY / FS_IOC_MEASURE_VERITY on an
// fd, their errno meanings as a typed VerityError, and the enable-on-a-fresh-tmpfile procedure.
// The kernel's hash algorithm numbers live here; lib/fsverity/ builds the ObjectId type on them and
// holds measure-with-userspace-fallback. Struct building, parsing and errno mapping are pure
// functions so they can be tested on a kernel without fs-verity.
import { KernelError } from "../errors.ts";
import { Errno, errno, errnoName, openLibc } from "./libc.ts";
import { closeFd, openTmpfile, type PathArg, pathLabel, pread, reopenReadOnly, writeAll } from "./fs.ts";
import { FS_IOC_ENABLE_VERITY, FS_IOC_MEASURE_VERITY } from "./constants.ts";
export { FS_IOC_ENABLE_VERITY, FS_IOC_MEASURE_VERITY } from "./constants.ts";

/** The hash algorithms fs-verity supports (and composefs uses). */
export type HashAlgorithm = "sha256" | "sha512";

/** Kernel fs-verity algorithm numbers (FS_VERITY_HASH_ALG_*). */
export const KERNEL_ALG_ID: Record<HashAlgorithm, number> = { sha256: 1, sha512: 2 };
/** Digest size in bytes of each algorithm. */
export const DIGEST_SIZE: Record<HashAlgorithm, number> = { sha256: 32, sha512: 64 };

/** A digest as the kernel reports it: the bytes and their algorithm (lib/fsverity/ makes it an ObjectId). */
export interface VerityDigest {
  alg: HashAlgorithm;
  bytes: Uint8Array;
}

const ENABLE_ARG_SIZE = 128;
const BLOCK_SIZE = 4096;

export type VerityErrorKind =
  | "unsupported" // the filesystem (or kernel) has no fs-verity
  | "already-enabled"
  | "file-busy" // a writable fd or mapping of the file exists (ETXTBSY)
  | "missing" // measure: the file has no verity
  | "signature-rejected"
  | "wrong-size" // measure: digest size differs from the expected algorithm's
  | "wrong-algorithm" // measure: the file uses the other algorithm
  | "other";

export class VerityError extends KernelError {
  override name = "VerityError";
  kind: VerityErrorKind;
  constructor(
    syscall: string,
    errnoValue: number,
    kind: VerityErrorKind,
    message: string,
    context?: string[],
  ) {
    super(syscall, errnoValue, errnoValue ? errnoName(errnoValue) : "", message, context);
    this.kind = kind;
  }
}

const KIND_MESSAGE: Record<VerityErrorKind, string> = {
  "unsupported": "fs-verity is not supported by this filesystem",
  "already-enabled": "fs-verity is already enabled on this file",
  "file-busy": "file is open for writing (ETXTBSY)",
  "missing": "file does not have fs-verity enabled",
  "signature-rejected": "fs-verity signature rejected",
  "wrong-size": "fs-verity digest has an unexpected size",
  "wrong-algorithm": "fs-verity digest uses a different hash algorithm",
  "other": "fs-verity ioctl failed",
};

/** What an FS_IOC_ENABLE_VERITY errno means. */
export function enableErrorKind(e: number): VerityErrorKind {
  switch (e) {
    case Errno.ENOTTY:
    case Errno.EOPNOTSUPP:
      return "unsupported";
    case Errno.EEXIST:
      return "already-enabled";
    case Errno.ETXTBSY:
      return "file-busy";
    case Errno.EKEYREJECTED:
      return "signature-rejected";
    default:
      return "other";
  }
}

/** What an FS_IOC_MEASURE_VERITY errno means. */
export function measureErrorKind(e: number): VerityErrorKind {
  switch (e) {
    case Errno.ENODATA:
      return "missing";
    case Errno.ENOTTY:
    case Errno.EOPNOTSUPP:
      return "unsupported";
    case Errno.EOVERFLOW:
      return "wrong-size";
    default:
      return "other";
  }
}

/** The typed error for a failed enable/measure ioctl. */
export function verityErrorFor(op: "enable" | "measure", e: number, context?: string[]): VerityError {
  const kind = op === "enable" ? enableErrorKind(e) : measureErrorKind(e);
  const syscall = op === "enable" ? "ioctl(FS_IOC_ENABLE_VERITY)" : "ioctl(FS_IOC_MEASURE_VERITY)";
  return new VerityError(syscall, e, kind, `${KIND_MESSAGE[kind]} (${errnoName(e)})`, context);
}

/** struct fsverity_enable_arg: version 1, the algorithm, 4096-byte blocks, no salt, no signature. */
export function buildEnableArg(alg: HashAlgorithm): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(ENABLE_ARG_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, 1, true); // version
  v.setUint32(4, KERNEL_ALG_ID[alg], true); // hash_algorithm
  v.setUint32(8, BLOCK_SIZE, true); // block_size
  // salt_size u32 @12, salt_ptr u64 @16, sig_size u32 @24, reserved1 u32 @28, sig_ptr u64 @32,
  // reserved2 u64[11] @40..127: all zero.
  return b;
}

/** struct fsverity_digest for FS_IOC_MEASURE_VERITY: digest_size = room for the expected digest. */
export function buildMeasureBuffer(alg: HashAlgorithm): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4 + DIGEST_SIZE[alg]);
  const v = new DataView(b.buffer);
  v.setUint16(0, KERNEL_ALG_ID[alg], true); // digest_algorithm (ignored on input by the kernel)
  v.setUint16(2, DIGEST_SIZE[alg], true); // digest_size: capacity in, actual size out
  return b;
}

/** The digest the kernel wrote into a measure buffer, checked against the expected algorithm. */
export function parseMeasureBuffer(b: Uint8Array, alg: HashAlgorithm, context?: string[]): VerityDigest {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const gotAlg = v.getUint16(0, true);
  const gotSize = v.getUint16(2, true);
  const syscall = "ioctl(FS_IOC_MEASURE_VERITY)";
  if (gotAlg !== KERNEL_ALG_ID[alg]) {
    throw new VerityError(
      syscall,
      0,
      "wrong-algorithm",
      `${KIND_MESSAGE["wrong-algorithm"]}: expected ${alg} (${KERNEL_ALG_ID[alg]}), file has ${gotAlg}`,
      context,
    );
  }
  if (gotSize !== DIGEST_SIZE[alg] || b.length < 4 + gotSize) {
    throw new VerityError(
      syscall,
      0,
      "wrong-size",
      `${KIND_MESSAGE["wrong-size"]}: expected ${DIGEST_SIZE[alg]} bytes, got ${gotSize}`,
      context,
    );
  }
  return { alg, bytes: b.slice(4, 4 + gotSize) };
}

const ioctlSymbols = {
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
} as const;

// errno is read by a second FFI call after the ioctl; the runtime's own system calls in between (a futex
// or an madvise during garbage collection, on this thread) can leave another value there (seen here:
// EAGAIN, EINTR, ENOENT, none of which these ioctls report). A failure whose errno the ioctl does not
// document is therefore asked again, a few times: a real one stays, a misread one does not.
const MISREAD_RETRIES = 3;

/** FS_IOC_ENABLE_VERITY on `fd` (must be read-only, with no writable fds open on the file). */
export function enableVerity(fd: number, alg: HashAlgorithm): void {
  const arg = buildEnableArg(alg);
  for (let attempt = 0;; attempt++) {
    if (openLibc(ioctlSymbols).ioctl(fd, BigInt(FS_IOC_ENABLE_VERITY), arg) >= 0) return;
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (enableErrorKind(e) === "other" && attempt < MISREAD_RETRIES) continue;
    throw verityErrorFor("enable", e, [`fd ${fd}`]);
  }
}

/** FS_IOC_MEASURE_VERITY on `fd`: the kernel's digest, checked to be of algorithm `alg`. */
export function measureVerityDigest(fd: number, alg: HashAlgorithm): VerityDigest {
  const buf = buildMeasureBuffer(alg);
  for (let attempt = 0;; attempt++) {
    if (openLibc(ioctlSymbols).ioctl(fd, BigInt(FS_IOC_MEASURE_VERITY), buf) >= 0) break;
    const e = errno();
    if (measureErrorKind(e) === "other" && attempt < MISREAD_RETRIES) continue;
    throw verityErrorFor("measure", e, [`fd ${fd}`]);
  }
  return parseMeasureBuffer(buf, alg, [`fd ${fd}`]);
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Seams for testing the retry/copy procedure on a kernel without fs-verity. */
export interface EnableDeps {
  enable(fd: number, alg: HashAlgorithm): void;
  sleep(ms: number): void;
}
const defaultDeps: EnableDeps = { enable: enableVerity, sleep: sleepMs };

/** Copies the whole content of `srcFd` into the (empty, writable) `dstFd`. */
function copyContent(srcFd: number, dstFd: number): void {
  const buf = new Uint8Array(1 << 20);
  for (let off = 0;;) {
    const n = pread(srcFd, buf, off);
    if (n === 0) return;
    writeAll(dstFd, n === buf.length ? buf : buf.subarray(0, n));
    off += n;
  }
}

const MAX_COPIES = 3;

/**
 * Enables fs-verity on a freshly written file (docs/fsverity.md#kernel). Takes ownership of the writable fd
 * `writeFd`: it is reopened read-only through /proc/self/fd and closed. ETXTBSY (another thread
 * forked while holding a writable fd) is retried twice after 1 ms; if still busy the data is copied
 * into a new O_TMPFILE in `dir` and the copy is used. Returns the read-only fd (caller closes it)
 * and whether verity got enabled: `enabled: false` means the filesystem has no fs-verity
 * ("unsupported"), which the caller may tolerate (insecure repositories). Other failures throw
 * VerityError after closing every fd.
 */
export function enableVerityOnTmpfile(
  writeFd: number,
  dir: PathArg,
  alg: HashAlgorithm,
  deps: EnableDeps = defaultDeps,
): { fd: number; enabled: boolean } {
  let ro: number;
  try {
    ro = reopenReadOnly(writeFd);
  } finally {
    closeFd(writeFd);
  }
  for (let copies = 0;; copies++) {
    let busy: VerityError | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        deps.enable(ro, alg);
        return { fd: ro, enabled: true };
      } catch (e) {
        if (e instanceof VerityError && e.kind === "unsupported") return { fd: ro, enabled: false };
        if (!(e instanceof VerityError && e.kind === "file-busy")) {
          closeFd(ro);
          throw e;
        }
        busy = e;
        if (attempt < 2) deps.sleep(1);
      }
    }
    if (copies >= MAX_COPIES) {
      closeFd(ro);
      throw busy!.within(pathLabel(dir));
    }
    ro = copyToFreshTmpfile(ro, dir);
  }
}

/** Copies the file open as `ro` into a new O_TMPFILE in `dir`; returns a read-only fd of the copy. */
function copyToFreshTmpfile(ro: number, dir: PathArg): number {
  try {
    const w = openTmpfile(dir);
    if (w === null) {
      throw new KernelError("open(O_TMPFILE)", Errno.EOPNOTSUPP, "EOPNOTSUPP", undefined, [pathLabel(dir)]);
    }
    try {
      copyContent(ro, w);
      return reopenReadOnly(w);
    } finally {
      closeFd(w);
    }
  } finally {
    closeFd(ro);
  }
}
