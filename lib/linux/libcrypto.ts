// libcrypto's one-shot digest through FFI, for the fs-verity Merkle tree (lib/fsverity/backend.ts
// chooses between this and node:crypto). fs-verity hashes every 4 KiB block on its own, so what
// matters is the cost per small one-shot hash: EVP_Digest with a pre-fetched EVP_MD and raw
// addresses (no per-call allocation in JS) is ~2× faster than node:crypto's createHash per block.
//
// Addresses are passed as `usize` bigints: no pointer objects or subarrays are created per block, and
// with bigint arguments for every 64-bit parameter Deno takes V8's fast-call path (measured: ~4 ns per
// call). Plain numbers for `usize` are accepted too but go through the slow path (~80 ns, and
// EVP_Digest of a 4 KiB block dropped from ~1600 to ~1230 MiB/s). Only off-heap buffers (≥ 4096
// bytes, or ones allocated here) are ever addressed, so their backing stores do not move while the
// address is held.
import { InternalError } from "../errors.ts";

/** The digests this binding fetches (OpenSSL names) and their output sizes. */
export type LibcryptoDigest = "SHA256" | "SHA512";
const DIGEST_BYTES: Record<LibcryptoDigest, number> = { SHA256: 32, SHA512: 64 };
/** Buffers at least this large live off the V8 heap and never move. */
const OFF_HEAP_MIN = 4096;

const cryptoSymbols = {
  EVP_MD_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_Digest: { parameters: ["usize", "usize", "usize", "usize", "usize", "usize"], result: "i32" },
} as const;

type CryptoLib = Deno.DynamicLibrary<typeof cryptoSymbols>["symbols"];
type EvpDigest = (
  data: bigint,
  count: bigint,
  md: bigint,
  size: bigint,
  type: bigint,
  impl: bigint,
) => number;

/** One-shot digests of equal-sized blocks and of short messages. */
export interface LibcryptoHasher {
  /**
   * Hashes `count` consecutive blocks of `blockSize` bytes of `src` from `srcOff`, writing the
   * digests back to back into `dst` from `dstOff`.
   */
  hashBlocks(
    md: LibcryptoDigest,
    blockSize: number,
    src: Uint8Array,
    srcOff: number,
    count: number,
    dst: Uint8Array,
    dstOff: number,
  ): void;
  /** One-shot digest of `data` (at most 4096 bytes when on the V8 heap), written into `dst` at `dstOff`. */
  hashInto(md: LibcryptoDigest, data: Uint8Array, dst: Uint8Array, dstOff: number): void;
}

/** Base addresses of large (off-heap, so never moving) buffers: hashing many small files asks often. */
const bases = new WeakMap<ArrayBufferLike, bigint>();

function addressOf(b: Uint8Array): bigint {
  if (b.buffer.byteLength >= OFF_HEAP_MIN) {
    const base = bases.get(b.buffer);
    if (base !== undefined) return base + BigInt(b.byteOffset);
  }
  const p = Deno.UnsafePointer.of(b);
  if (p === null) throw new InternalError("cannot take the address of an empty buffer");
  const a = BigInt(Deno.UnsafePointer.value(p));
  if (b.buffer.byteLength >= OFF_HEAP_MIN) bases.set(b.buffer, a - BigInt(b.byteOffset));
  return a;
}

function fetchMd(lib: CryptoLib, name: LibcryptoDigest): bigint {
  const md = lib.EVP_MD_fetch(null, new TextEncoder().encode(name + "\0"), null);
  if (md === null) throw new InternalError(`EVP_MD_fetch(${name}) failed`);
  return BigInt(Deno.UnsafePointer.value(md));
}

function makeHasher(lib: CryptoLib): LibcryptoHasher {
  const mds: Record<LibcryptoDigest, bigint> = {
    SHA256: fetchMd(lib, "SHA256"),
    SHA512: fetchMd(lib, "SHA512"),
  };
  const evp = lib.EVP_Digest as unknown as EvpDigest;
  // Scratch for hashing short or on-heap inputs (the descriptor, tiny chunks).
  const scratchIn = new Uint8Array(OFF_HEAP_MIN);
  const scratchOut = new Uint8Array(OFF_HEAP_MIN);
  const scratchInAddr = addressOf(scratchIn);
  const scratchOutAddr = addressOf(scratchOut);

  function hashBlocks(
    md: LibcryptoDigest,
    blockSize: number,
    src: Uint8Array,
    srcOff: number,
    count: number,
    dst: Uint8Array,
    dstOff: number,
  ): void {
    if (count <= 0) return;
    if (srcOff < 0 || srcOff + count * blockSize > src.length) {
      throw new InternalError("source range out of bounds");
    }
    const ds = DIGEST_BYTES[md];
    if (dstOff < 0 || dstOff + count * ds > dst.length) throw new InternalError("digest range out of bounds");
    const type = mds[md];
    const s = addressOf(src) + BigInt(srcOff);
    // A small buffer may live on the V8 heap (movable): go through scratch then.
    const direct = dst.buffer.byteLength >= OFF_HEAP_MIN;
    const d = direct ? addressOf(dst) + BigInt(dstOff) : scratchOutAddr;
    const bs = BigInt(blockSize);
    const dsb = BigInt(ds);
    for (let i = 0n, n = BigInt(count); i < n; i++) {
      if (evp(s + i * bs, bs, d + i * dsb, 0n, type, 0n) !== 1) throw new InternalError("EVP_Digest failed");
    }
    if (!direct) dst.set(scratchOut.subarray(0, count * ds), dstOff);
  }

  function hashInto(md: LibcryptoDigest, data: Uint8Array, dst: Uint8Array, dstOff: number): void {
    let src: bigint;
    if (data.buffer.byteLength >= OFF_HEAP_MIN) {
      src = addressOf(data);
    } else {
      scratchIn.set(data);
      src = scratchInAddr;
    }
    if (evp(src, BigInt(data.length), scratchOutAddr, 0n, mds[md], 0n) !== 1) {
      throw new InternalError("EVP_Digest failed");
    }
    dst.set(scratchOut.subarray(0, DIGEST_BYTES[md]), dstOff);
  }

  return { hashBlocks, hashInto };
}

let loaded: LibcryptoHasher | null | undefined;

/** The libcrypto hasher, or null when FFI is not permitted or libcrypto.so.3 is absent. */
export function loadLibcrypto(): LibcryptoHasher | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  try {
    // querySync first: dlopen without permission would prompt on a terminal.
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    loaded = makeHasher(Deno.dlopen("libcrypto.so.3", cryptoSymbols).symbols);
  } catch {
    loaded = null;
  }
  return loaded;
}
