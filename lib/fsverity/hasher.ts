// Streaming fs-verity digest (docs/fsverity.md#digest): 4096-byte blocks, no salt, SHA-256 or SHA-512.
// Memory is bounded: one partial block per tree level. Full blocks of a level are hashed as soon as
// they fill, so the tree is never held; the unfinished right edge is completed in digest().
import { BLOCK_SIZE, type HashBackend, hashBackend } from "./backend.ts";
import { DIGEST_SIZE, type HashAlgorithm, KERNEL_ALG_ID, ObjectId } from "./object_id.ts";
import { InternalError } from "../errors.ts";

const LOG_BLOCK_SIZE = 12;
/** Digests are carved out of shared slabs of this size (see digestBytes). */
const SLAB_SIZE = 64 * 1024;
const DESCRIPTOR_SIZE = 256;

let slab = new Uint8Array(SLAB_SIZE);
let slabUsed = 0;

/**
 * Room for one digest that lives as long as its ObjectId. An import keeps one id per object (100,000
 * for a layer of small files); a Uint8Array of its own costs an ArrayBuffer and a malloc'd backing
 * store per id (~330 bytes measured in a heap snapshot for 64 digest bytes), a view into a shared
 * slab only the view. A slab stays alive while any of its ids does.
 */
function digestBytes(size: number): Uint8Array {
  if (slabUsed + size > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += size;
  return out;
}

/** Builds the 256-byte fs_verity_descriptor whose hash is the file digest. */
export function verityDescriptor(alg: HashAlgorithm, dataSize: number, rootHash: Uint8Array): Uint8Array {
  const d = new Uint8Array(DESCRIPTOR_SIZE);
  const v = new DataView(d.buffer);
  d[0] = 1; // version
  d[1] = KERNEL_ALG_ID[alg];
  d[2] = LOG_BLOCK_SIZE;
  d[3] = 0; // salt_size; reserved u32 at 4..7 stays 0
  v.setBigUint64(8, BigInt(dataSize), true);
  d.set(rootHash, 16); // root_hash[64], zero-padded for SHA-256; salt and reserved stay 0
  return d;
}

export class FsVerityHasher {
  readonly alg: HashAlgorithm;
  #backend: HashBackend;
  #ds: number;
  #size = 0;
  // levels[0] holds the partial data block; levels[k ≥ 1] the partial block of level-k hashes.
  #levels: Uint8Array[] = [new Uint8Array(BLOCK_SIZE)];
  #fill: number[] = [0];
  // Hashes produced so far at each level (index 0 unused).
  #count: number[] = [0];

  constructor(alg: HashAlgorithm) {
    this.alg = alg;
    this.#backend = hashBackend();
    this.#ds = DIGEST_SIZE[alg];
  }

  /** Starts over (keeps the level buffers: hashing many small files allocates nothing per file). */
  reset(): void {
    this.#size = 0;
    this.#fill.fill(0);
    this.#count.fill(0);
  }

  /** Bytes fed so far. */
  get size(): number {
    return this.#size;
  }

  /** Feeds data; any chunk size. */
  update(data: Uint8Array): void {
    const n = data.length;
    if (n === 0) return;
    this.#size += n;
    let off = 0;
    const block0 = this.#levels[0];
    if (this.#fill[0] > 0) {
      const take = Math.min(BLOCK_SIZE - this.#fill[0], n);
      block0.set(data.subarray(0, take), this.#fill[0]);
      this.#fill[0] += take;
      off = take;
      if (this.#fill[0] < BLOCK_SIZE) return;
      this.#emit(0);
    }
    off = this.#hashWholeBlocks(data, off);
    if (off < n) {
      block0.set(data.subarray(off), 0);
      this.#fill[0] = n - off;
    }
  }

  /**
   * Feeds the leaf digests of `dataBytes` bytes hashed elsewhere (lib/fsverity/leaf_pool.ts): one digest
   * per 4096-byte block, the last block zero-padded when `dataBytes` is not a multiple of 4096 — as
   * update() would have hashed them. Everything fed before must have been whole blocks, and after a
   * short last block only digest() may follow.
   */
  updateLeafDigests(digests: Uint8Array, dataBytes: number): void {
    const ds = this.#ds;
    if (this.#fill[0] !== 0 || this.#size % BLOCK_SIZE !== 0) {
      throw new InternalError("leaf digests must start on a block boundary");
    }
    if (digests.length !== Math.ceil(dataBytes / BLOCK_SIZE) * ds) {
      throw new InternalError(`${digests.length} digest bytes do not match ${dataBytes} data bytes`);
    }
    this.#size += dataBytes;
    this.#ensureLevel(1);
    const level1 = this.#levels[1];
    for (let off = 0; off < digests.length;) {
      const take = Math.min(BLOCK_SIZE - this.#fill[1], digests.length - off);
      level1.set(digests.subarray(off, off + take), this.#fill[1]);
      this.#fill[1] += take;
      this.#count[1] += take / ds;
      off += take;
      if (this.#fill[1] === BLOCK_SIZE) this.#emit(1);
    }
  }

  /** Hashes the whole blocks of data[off..] straight into level 1; returns where the tail starts. */
  #hashWholeBlocks(data: Uint8Array, off: number): number {
    const n = data.length;
    const ds = this.#ds;
    const perBlock = BLOCK_SIZE / ds;
    this.#ensureLevel(1);
    const level1 = this.#levels[1];
    while (n - off >= BLOCK_SIZE) {
      const room = perBlock - this.#fill[1] / ds;
      const nb = Math.min(Math.floor((n - off) / BLOCK_SIZE), room);
      this.#backend.hashBlocks(this.alg, data, off, nb, level1, this.#fill[1]);
      this.#fill[1] += nb * ds;
      this.#count[1] += nb;
      off += nb * BLOCK_SIZE;
      if (this.#fill[1] === BLOCK_SIZE) this.#emit(1);
    }
    return off;
  }

  #ensureLevel(k: number): void {
    while (this.#levels.length <= k) {
      this.#levels.push(new Uint8Array(BLOCK_SIZE));
      this.#fill.push(0);
      this.#count.push(0);
    }
  }

  /** Hashes the full block of level k into level k+1, cascading upwards. */
  #emit(k: number): void {
    for (;;) {
      this.#ensureLevel(k + 1);
      this.#backend.hashBlocks(this.alg, this.#levels[k], 0, 1, this.#levels[k + 1], this.#fill[k + 1]);
      this.#fill[k] = 0;
      this.#fill[k + 1] += this.#ds;
      this.#count[k + 1]++;
      if (this.#fill[k + 1] < BLOCK_SIZE) return;
      k++;
    }
  }

  /** The fs-verity digest of everything fed so far. Does not change the state (more data may follow). */
  digest(): ObjectId {
    const ds = this.#ds;
    const root = new Uint8Array(ds);
    if (this.#size > 0) this.#rootHash(root);
    const out = digestBytes(ds);
    this.#backend.hashInto(this.alg, verityDescriptor(this.alg, this.#size, root), out, 0);
    return new ObjectId(this.alg, out);
  }

  /**
   * Completes the right edge of the tree on copies of the fill counters. Padding and pushed-up hashes
   * only land beyond each level's recorded fill, which the live state treats as free space, so the
   * buffers themselves need no copy.
   */
  #rootHash(root: Uint8Array): void {
    const ds = this.#ds;
    // New levels are added to the live state (empty there, so harmless) to be reused next time.
    const levels = this.#levels;
    const fill = this.#fill.slice();
    const count = this.#count.slice();
    const grow = (k: number) => {
      this.#ensureLevel(k);
      while (fill.length <= k) {
        fill.push(0);
        count.push(0);
      }
    };
    const pushUp = (k: number) => {
      // Zero-pad the partial block of level k and hash it into level k+1.
      levels[k].fill(0, fill[k]);
      grow(k + 1);
      this.#backend.hashBlocks(this.alg, levels[k], 0, 1, levels[k + 1], fill[k + 1]);
      fill[k] = 0;
      fill[k + 1] += ds;
      count[k + 1]++;
    };
    if (fill[0] > 0) pushUp(0);
    for (let k = 1;; k++) {
      grow(k);
      if (count[k] === 1) {
        root.set(levels[k].subarray(0, ds));
        return;
      }
      if (fill[k] > 0) pushUp(k);
    }
  }
}

/** fs-verity digest of in-memory data. */
export function fsverityDigest(data: Uint8Array, alg: HashAlgorithm): ObjectId {
  const h = new FsVerityHasher(alg);
  h.update(data);
  return h.digest();
}
