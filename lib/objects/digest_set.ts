// A set of fixed-length digests, numbered in insertion order, held in two typed arrays: the digests
// back to back in one byte slab and an open-addressing index of entry numbers. An import remembers
// one digest per object (which objects it stored, which ones a splitstream refers to); as strings in a
// Set or Map that cost ~200 bytes each (a 128-character hex string plus the table entry), here 64
// bytes of slab and ≤ 16 bytes of index for a sha512 id (docs/performance.md#memory).
//
// Digests are uniformly distributed, so their first four bytes are the hash.
import { InternalError } from "../errors.ts";

const INITIAL_ENTRIES = 1024;

export class DigestSet {
  readonly digestSize: number;
  #slab: Uint8Array;
  #count = 0;
  /** Slot → entry number + 1 (0 = empty); a power of two, at most half full. */
  #index: Int32Array;

  constructor(digestSize: number) {
    this.digestSize = digestSize;
    this.#slab = new Uint8Array(INITIAL_ENTRIES * digestSize);
    this.#index = new Int32Array(INITIAL_ENTRIES * 2);
  }

  get size(): number {
    return this.#count;
  }

  has(d: Uint8Array): boolean {
    return this.#index[this.#slot(d)] !== 0;
  }

  /** The entry number of `d`, or -1. */
  indexOf(d: Uint8Array): number {
    return this.#index[this.#slot(d)] - 1;
  }

  /** Adds `d` (copied) unless present; returns its entry number either way. */
  add(d: Uint8Array): number {
    let slot = this.#slot(d);
    const known = this.#index[slot];
    if (known !== 0) return known - 1;
    const n = this.#count;
    if ((n + 1) * 2 > this.#index.length) {
      this.#grow();
      slot = this.#slot(d);
    }
    const len = this.digestSize;
    if ((n + 1) * len > this.#slab.length) {
      const bigger = new Uint8Array(this.#slab.length * 2);
      bigger.set(this.#slab);
      this.#slab = bigger;
    }
    this.#slab.set(d, n * len);
    this.#index[slot] = n + 1;
    this.#count = n + 1;
    return n;
  }

  /** Entry `i` (a view: valid until the next add). */
  at(i: number): Uint8Array {
    if (i < 0 || i >= this.#count) throw new InternalError(`digest entry ${i} of ${this.#count}`);
    return this.#slab.subarray(i * this.digestSize, (i + 1) * this.digestSize);
  }

  /** All entries back to back, in insertion order (a view: valid until the next add). */
  bytes(): Uint8Array {
    return this.#slab.subarray(0, this.#count * this.digestSize);
  }

  /** The slot holding `d`, or the empty slot where it would go. */
  #slot(d: Uint8Array): number {
    const len = this.digestSize;
    if (d.length !== len) {
      throw new InternalError(`digest of ${d.length} bytes in a set of ${len}-byte digests`);
    }
    const mask = this.#index.length - 1;
    const slab = this.#slab;
    let s = (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) & mask;
    for (;;) {
      const e = this.#index[s];
      if (e === 0) return s;
      let o = (e - 1) * len;
      let i = 0;
      while (i < len && slab[o++] === d[i]) i++;
      if (i === len) return s;
      s = (s + 1) & mask;
    }
  }

  #grow(): void {
    const len = this.digestSize;
    const index = new Int32Array(this.#index.length * 2);
    const mask = index.length - 1;
    const slab = this.#slab;
    for (let e = 0; e < this.#count; e++) {
      const o = e * len;
      let s = (slab[o] | (slab[o + 1] << 8) | (slab[o + 2] << 16) | (slab[o + 3] << 24)) & mask;
      while (index[s] !== 0) s = (s + 1) & mask;
      index[s] = e + 1;
    }
    this.#index = index;
  }
}
