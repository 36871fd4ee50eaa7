// The hash primitive behind the fs-verity Merkle tree. fs-verity hashes every 4 KiB block on its own,
// so what matters is the cost per small one-shot hash: libcrypto through FFI (lib/linux/libcrypto.ts)
// is ~2× faster than node:crypto's createHash per block. libcrypto may be missing (minimal hosts) or FFI not allowed:
// node:crypto is the always-available fallback.
import { createHash } from "node:crypto";
import { DIGEST_SIZE, type HashAlgorithm } from "./object_id.ts";
import { type LibcryptoDigest, loadLibcrypto } from "../linux/libcrypto.ts";
import { CfsError, InvalidArgumentError } from "../errors.ts";

export const BLOCK_SIZE = 4096;

export type HashBackendName = "libcrypto" | "node:crypto";

/** Hashes 4096-byte blocks and short messages; one instance per process per backend. */
export interface HashBackend {
  readonly name: HashBackendName;
  /**
   * Hashes `count` consecutive whole blocks of `src` starting at `srcOff`, writing the `count`
   * digests back to back into `dst` starting at `dstOff`.
   */
  hashBlocks(
    alg: HashAlgorithm,
    src: Uint8Array,
    srcOff: number,
    count: number,
    dst: Uint8Array,
    dstOff: number,
  ): void;
  /** One-shot hash of `data` (any length), written into `dst` at `dstOff`. */
  hashInto(alg: HashAlgorithm, data: Uint8Array, dst: Uint8Array, dstOff: number): void;
}

// ---- node:crypto ---------------------------------------------------------------------------------

function nodeHashBlocks(
  alg: HashAlgorithm,
  src: Uint8Array,
  srcOff: number,
  count: number,
  dst: Uint8Array,
  dstOff: number,
): void {
  const ds = DIGEST_SIZE[alg];
  for (let i = 0; i < count; i++) {
    const o = srcOff + i * BLOCK_SIZE;
    const d = createHash(alg).update(src.subarray(o, o + BLOCK_SIZE)).digest();
    dst.set(d, dstOff + i * ds);
  }
}

const nodeBackend: HashBackend = {
  name: "node:crypto",
  hashBlocks: nodeHashBlocks,
  hashInto(alg, data, dst, dstOff) {
    dst.set(createHash(alg).update(data).digest(), dstOff);
  },
};

// ---- libcrypto (lib/linux/libcrypto.ts) ---------------------------------------------------------

const OPENSSL_NAME: Record<HashAlgorithm, LibcryptoDigest> = { sha256: "SHA256", sha512: "SHA512" };

let libcryptoBackend: HashBackend | null | undefined;

/** The libcrypto backend, or null when FFI is not permitted or libcrypto.so.3 is absent. */
function loadLibcryptoBackend(): HashBackend | null {
  if (libcryptoBackend !== undefined) return libcryptoBackend;
  const lib = loadLibcrypto();
  libcryptoBackend = lib && {
    name: "libcrypto",
    hashBlocks: (alg, src, srcOff, count, dst, dstOff) =>
      lib.hashBlocks(OPENSSL_NAME[alg], BLOCK_SIZE, src, srcOff, count, dst, dstOff),
    hashInto: (alg, data, dst, dstOff) => lib.hashInto(OPENSSL_NAME[alg], data, dst, dstOff),
  };
  return libcryptoBackend;
}

// ---- selection -----------------------------------------------------------------------------------

export type HashBackendChoice = HashBackendName | "auto";

let forced: HashBackendChoice = "auto";
let current: HashBackend | undefined;

/**
 * Chooses the backend for every hasher created afterwards. "auto" = libcrypto when it loads, else
 * node:crypto. Forcing "libcrypto" throws when it cannot be loaded.
 */
export function setHashBackend(choice: HashBackendChoice): void {
  if (choice !== "auto" && choice !== "libcrypto" && choice !== "node:crypto") {
    throw new InvalidArgumentError(`unknown hash backend ${JSON.stringify(choice)}`);
  }
  if (choice === "libcrypto" && loadLibcryptoBackend() === null) {
    throw new CfsError("libcrypto backend unavailable (needs --allow-ffi and libcrypto.so.3)");
  }
  forced = choice;
  current = undefined;
}

/** The backend in use (resolved on first use). */
export function hashBackend(): HashBackend {
  if (current) return current;
  if (forced === "node:crypto") current = nodeBackend;
  else current = loadLibcryptoBackend() ?? nodeBackend;
  return current;
}

export function hashBackendName(): HashBackendName {
  return hashBackend().name;
}

/** True when the libcrypto backend can be loaded in this process. */
export function libcryptoAvailable(): boolean {
  return loadLibcryptoBackend() !== null;
}
