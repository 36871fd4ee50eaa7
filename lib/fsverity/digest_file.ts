// fs-verity digest of a file, streamed with bounded memory (two read buffers + one block per level).
// Reads are double-buffered: Deno performs file reads on a worker thread, so the next chunk is read
// while the current one is hashed on this thread.
import { closeFd, O_RDONLY, openPath } from "../linux/fs.ts";
import { fsverityDigestFd, PARALLEL_MIN } from "./digest_fd.ts";
import { FsVerityHasher } from "./hasher.ts";
import { leafPool } from "./leaf_pool.ts";
import type { HashAlgorithm, ObjectId } from "./object_id.ts";

const CHUNK = 1 << 20;

/** Anything with Deno.FsFile's `read`. */
export interface ChunkReader {
  read(buf: Uint8Array): Promise<number | null>;
}

/** What a caller hashing many files passes to fsverityDigestReader each time, instead of fresh ones. */
export interface DigestScratch {
  /** The two read buffers (same size; both free until the digest resolves). */
  buffers: [Uint8Array, Uint8Array];
  /** A hasher to reset and reuse. */
  hasher: FsVerityHasher;
}

/**
 * Hashes everything `reader` yields until EOF. `scratch`: buffers and hasher to reuse; without it
 * two 1 MiB buffers and a hasher are allocated per call, which cost fsck of 100,000 small objects most
 * of its time in zero-filling and GC, and its memory grew with every object checked.
 */
export async function fsverityDigestReader(
  reader: ChunkReader,
  alg: HashAlgorithm,
  scratch?: DigestScratch,
): Promise<ObjectId> {
  let h: FsVerityHasher;
  if (scratch && scratch.hasher.alg === alg) {
    h = scratch.hasher;
    h.reset();
  } else h = new FsVerityHasher(alg);
  let [cur, next] = scratch?.buffers ?? [new Uint8Array(CHUNK), new Uint8Array(CHUNK)];
  const size = cur.length;
  let pending = reader.read(cur);
  for (;;) {
    const n = await pending;
    if (n === null) break;
    const filled = cur;
    // Start the next read before hashing so the two overlap.
    pending = reader.read(next);
    h.update(n === size ? filled : filled.subarray(0, n));
    cur = next;
    next = filled;
  }
  return h.digest();
}

/**
 * fs-verity digest of the file at `path` (a normal Unicode path, as Deno.open takes it). A large file
 * goes by fd to fsverityDigestFd, which hashes it on the leaf pool's threads when there is one.
 */
export async function fsverityDigestFile(path: string, alg: HashAlgorithm): Promise<ObjectId> {
  using file = await Deno.open(path, { read: true });
  if ((await file.stat()).size >= PARALLEL_MIN && leafPool()) {
    const fd = openPath(path, O_RDONLY);
    try {
      return await fsverityDigestFd(fd, alg);
    } finally {
      closeFd(fd);
    }
  }
  return await fsverityDigestReader(file, alg);
}
