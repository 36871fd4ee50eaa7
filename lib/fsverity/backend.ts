// The hash primitive behind the fs-verity Merkle tree. fs-verity hashes every 4 KiB block on its own,
// so what matters is the cost per small one-shot hash: libcrypto through FFI (EVP_Digest with a
// pre-fetched EVP_MD and raw addresses, no per-call allocation in JS) is ~2× faster than
// node:crypto's createHash per block. libcrypto may be missing (minimal hosts) or FFI not allowed:
// node:crypto is the always-available fallback.
import { createHash } from "node:crypto";
import { DIGEST_SIZE, type HashAlgorithm } from "./object_id.ts";

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

// ---- libcrypto through FFI ---------------------------------------------------------------------

// Addresses are passed as `usize` numbers (user-space addresses fit in 2^53): no pointer objects
// or subarrays are created per block. Only off-heap buffers (≥ 4096 bytes, or ones we allocate)
// are ever addressed, so their backing stores do not move while we hold the address.
const cryptoSymbols = {
  EVP_MD_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_Digest: { parameters: ["usize", "usize", "usize", "pointer", "pointer", "pointer"], result: "i32" },
} as const;

type CryptoLib = Deno.DynamicLibrary<typeof cryptoSymbols>["symbols"];
// Deno's typings say bigint for usize parameters; at run time numbers are accepted (and cheaper).
type EvpDigest = (
  data: number,
  count: number,
  md: number,
  size: null,
  type: Deno.PointerObject,
  impl: null,
) => number;

/** Base addresses of large (off-heap, so never moving) buffers: hashing many small files asks often. */
const bases = new WeakMap<ArrayBufferLike, number>();

function addressOf(b: Uint8Array): number {
  if (b.buffer.byteLength >= BLOCK_SIZE) {
    const base = bases.get(b.buffer);
    if (base !== undefined) return base + b.byteOffset;
  }
  const p = Deno.UnsafePointer.of(b);
  if (p === null) throw new RangeError("cannot take the address of an empty buffer");
  const a = Number(Deno.UnsafePointer.value(p));
  if (b.buffer.byteLength >= BLOCK_SIZE) bases.set(b.buffer, a - b.byteOffset);
  return a;
}

function makeLibcryptoBackend(lib: CryptoLib): HashBackend {
  const mds: Record<HashAlgorithm, Deno.PointerObject> = {
    sha256: fetchMd(lib, "SHA256"),
    sha512: fetchMd(lib, "SHA512"),
  };
  // Scratch for hashing short or on-heap inputs (the descriptor, tiny chunks).
  const scratchIn = new Uint8Array(BLOCK_SIZE);
  const scratchOut = new Uint8Array(BLOCK_SIZE);
  const scratchInAddr = addressOf(scratchIn);
  const scratchOutAddr = addressOf(scratchOut);

  function hashBlocks(
    alg: HashAlgorithm,
    src: Uint8Array,
    srcOff: number,
    count: number,
    dst: Uint8Array,
    dstOff: number,
  ): void {
    if (count <= 0) return;
    if (srcOff < 0 || srcOff + count * BLOCK_SIZE > src.length) {
      throw new RangeError("source range out of bounds");
    }
    const ds = DIGEST_SIZE[alg];
    if (dstOff < 0 || dstOff + count * ds > dst.length) throw new RangeError("digest range out of bounds");
    const md = mds[alg];
    const evp = lib.EVP_Digest as unknown as EvpDigest;
    const s = addressOf(src) + srcOff;
    // A small buffer may live on the V8 heap (movable): go through scratch then.
    const direct = dst.buffer.byteLength >= BLOCK_SIZE;
    const d = direct ? addressOf(dst) + dstOff : scratchOutAddr;
    for (let i = 0; i < count; i++) {
      if (evp(s + i * BLOCK_SIZE, BLOCK_SIZE, d + i * ds, null, md, null) !== 1) {
        throw new Error("EVP_Digest failed");
      }
    }
    if (!direct) dst.set(scratchOut.subarray(0, count * ds), dstOff);
  }

  function hashInto(alg: HashAlgorithm, data: Uint8Array, dst: Uint8Array, dstOff: number): void {
    const ds = DIGEST_SIZE[alg];
    let src: number;
    if (data.buffer.byteLength >= BLOCK_SIZE) {
      src = addressOf(data);
    } else {
      scratchIn.set(data);
      src = scratchInAddr;
    }
    const evp = lib.EVP_Digest as unknown as EvpDigest;
    if (evp(src, data.length, scratchOutAddr, null, mds[alg], null) !== 1) {
      throw new Error("EVP_Digest failed");
    }
    dst.set(scratchOut.subarray(0, ds), dstOff);
  }

  return { name: "libcrypto", hashBlocks, hashInto };
}

function fetchMd(lib: CryptoLib, name: string): Deno.PointerObject {
  const md = lib.EVP_MD_fetch(null, new TextEncoder().encode(name + "\0"), null);
  if (md === null) throw new Error(`EVP_MD_fetch(${name}) failed`);
  return md;
}

let libcryptoBackend: HashBackend | null | undefined;

/** The libcrypto backend, or null when FFI is not permitted or libcrypto.so.3 is absent. */
function loadLibcrypto(): HashBackend | null {
  if (libcryptoBackend !== undefined) return libcryptoBackend;
  libcryptoBackend = null;
  try {
    // querySync first: dlopen without permission would prompt on a terminal.
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    const lib = Deno.dlopen("libcrypto.so.3", cryptoSymbols);
    libcryptoBackend = makeLibcryptoBackend(lib.symbols);
  } catch {
    libcryptoBackend = null;
  }
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
    throw new RangeError(`unknown hash backend ${JSON.stringify(choice)}`);
  }
  if (choice === "libcrypto" && loadLibcrypto() === null) {
    throw new Error("libcrypto backend unavailable (needs --allow-ffi and libcrypto.so.3)");
  }
  forced = choice;
  current = undefined;
}

/** The backend in use (resolved on first use). */
export function hashBackend(): HashBackend {
  if (current) return current;
  if (forced === "node:crypto") current = nodeBackend;
  else current = loadLibcrypto() ?? nodeBackend;
  return current;
}

export function hashBackendName(): HashBackendName {
  return hashBackend().name;
}

/** True when the libcrypto backend can be loaded in this process. */
export function libcryptoAvailable(): boolean {
  return loadLibcrypto() !== null;
}
