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

/**
 * Hashes everything `reader` yields until EOF. `buffers`: the two read buffers to use (a caller
 * hashing many files passes the same pair each time: allocating 2 × 1 MiB per file cost fsck of
 * 100,000 small objects most of its time in zero-filling and GC); both must be free until this
 * resolves.
 */
export async function fsverityDigestReader(
  reader: ChunkReader,
  alg: HashAlgorithm,
  buffers?: [Uint8Array, Uint8Array],
): Promise<ObjectId> {
  const h = new FsVerityHasher(alg);
  let [cur, next] = buffers ?? [new Uint8Array(CHUNK), new Uint8Array(CHUNK)];
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
