// Batches of whole files hashed on the leaf pool (lib/fsverity/leaf_pool.ts): an import of many files
// (containers-storage diff/ files) gets their fs-verity digests from the pool's threads while its own
// thread goes on walking the layer.
import type { BlockHashJob } from "../linux/block_hash_thread.ts";
import { fsverityDigestFd } from "./digest_fd.ts";
import { FsVerityHasher } from "./hasher.ts";
import type { LeafPool } from "./leaf_pool.ts";
import { DIGEST_SIZE, type HashAlgorithm, type ObjectId } from "./object_id.ts";

/**
 * fs-verity digests of many files on the pool, a batch of files per thread request (a request costs
 * a round trip of ~0.1–0.4 ms: one per small file would cost more than hashing it). digest() queues a
 * file and gives its id later; a batch goes out when it is full, or at flush() — call that before
 * waiting for any digest. Files larger than a batch go alone, in chunks (fsverityDigestFd).
 */
export class VerityBatcher {
  #pool: LeafPool;
  #alg: HashAlgorithm;
  #jobs: BlockHashJob[] = [];
  #waiters: { resolve: (id: ObjectId) => void; reject: (e: unknown) => void }[] = [];
  #bytes = 0;
  #hasher: FsVerityHasher;

  constructor(
    pool: LeafPool,
    alg: HashAlgorithm,
    /** Use only the pool's first N threads (others run beside the caller already). */
    readonly threads = pool.size,
    readonly maxJobs = 128,
    readonly maxBytes = 8 << 20,
  ) {
    this.#pool = pool;
    this.#alg = alg;
    this.#hasher = new FsVerityHasher(alg);
  }

  /** The fs-verity digest of the first `size` bytes of `fd` (which must stay open until it settles). */
  digest(fd: number, size: number): Promise<ObjectId> {
    if (size >= this.maxBytes) return fsverityDigestFd(fd, this.#alg, { parallelMin: 0, size });
    const p = new Promise<ObjectId>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.#jobs.push([fd, 0, size]);
    this.#bytes += size;
    if (this.#jobs.length >= this.maxJobs || this.#bytes >= this.maxBytes) this.flush();
    return p;
  }

  /** Sends the queued files. */
  flush(): void {
    if (this.#jobs.length === 0) return;
    const jobs = this.#jobs;
    const waiters = this.#waiters;
    this.#jobs = [];
    this.#waiters = [];
    this.#bytes = 0;
    const ds = DIGEST_SIZE[this.#alg];
    this.#pool.hash(this.#alg, jobs, this.threads).then((leaves) => {
      let at = 0;
      for (let k = 0; k < jobs.length; k++) {
        const n = Math.ceil(jobs[k][2] / 4096) * ds;
        const h = this.#hasher;
        h.reset();
        h.updateLeafDigests(leaves.subarray(at, at + n), jobs[k][2]);
        at += n;
        waiters[k].resolve(h.digest());
      }
    }, (e) => {
      for (const w of waiters) w.reject(e);
    });
  }
}
