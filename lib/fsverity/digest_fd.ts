// fs-verity digest of an open file descriptor (e.g. an O_TMPFILE or a file opened through FFI with a
// byte-string path). Reads with pread from offset 0, so the fd position is left alone.
//
// A large file's whole blocks are hashed on the leaf pool's threads (lib/fsverity/leaf_pool.ts), a few
// chunks in flight per thread, their digests fed in order; the rest (the short last block, anything
// appended meanwhile) is read here. Without the pool, the next chunk is read on a worker thread while
// the current one is hashed on this one.
import { fstatSize, preadAsync } from "../linux/fs.ts";
import { FsVerityHasher } from "./hasher.ts";
import { leafPool, ShortFileError } from "./leaf_pool.ts";
import type { HashAlgorithm, ObjectId } from "./object_id.ts";
import { BLOCK_SIZE } from "./backend.ts";

const CHUNK = 1 << 20;
/** Files from this size on are hashed on the pool: below it a thread round trip is not worth it. */
export const PARALLEL_MIN = 4 << 20;
/** Bytes per pool request: whole level-1 blocks for both algorithms (128 × 4 KiB for SHA-256). */
const PARALLEL_CHUNK = 8 << 20;
/** Requests in flight per thread, so a thread never waits for the next one. */
const IN_FLIGHT_PER_THREAD = 2;
/** Chunks sent ahead of the one fed next (64 × 8 MiB: at most 4 MiB of waiting SHA-512 digests). */
const AHEAD_CHUNKS = 64;

export interface DigestFdOptions {
  /** Size from which the pool is used (default PARALLEL_MIN; 0 = whenever there is a pool). */
  parallelMin?: number;
  /**
   * The file is exactly this long and does not change (the caller wrote it): no fstat, and the
   * short last block is hashed on the pool too, so nothing is read on this thread.
   */
  size?: number;
}

export async function fsverityDigestFd(
  fd: number,
  alg: HashAlgorithm,
  opts: DigestFdOptions = {},
): Promise<ObjectId> {
  const h = new FsVerityHasher(alg);
  const size = opts.size ?? fstatSize(fd);
  let offset = 0;
  if (size >= BLOCK_SIZE && size >= (opts.parallelMin ?? PARALLEL_MIN)) {
    const end = opts.size ?? Math.floor(size / BLOCK_SIZE) * BLOCK_SIZE;
    try {
      offset = await hashLeavesOnPool(h, fd, end);
      if (offset === size && opts.size !== undefined) return h.digest();
    } catch (e) {
      if (!(e instanceof ShortFileError)) throw e;
      // The file shrank under us: start over, reading until end of file as a stream would.
      h.reset();
      offset = 0;
    }
  }
  await hashSerially(h, fd, offset);
  return h.digest();
}

/**
 * Feeds the leaf digests of fd[0..end) from the pool (end a multiple of 4096 unless it is the end of
 * the file); returns the bytes done.
 */
async function hashLeavesOnPool(h: FsVerityHasher, fd: number, end: number): Promise<number> {
  const pool = leafPool();
  if (!pool) return 0;
  // Requests go to the least busy thread, at most IN_FLIGHT_PER_THREAD unfinished per thread;
  // finished ones wait here (only their digests, 1/128 of the data) until those before them are
  // in, up to AHEAD_CHUNKS: a thread that is descheduled (shared machine) holds up the feeding, not
  // the other threads, which keep hashing the chunks after it.
  const window = pool.size * IN_FLIGHT_PER_THREAD;
  const chunks: { promise: Promise<Uint8Array>; bytes: number; digests?: Uint8Array }[] = [];
  let next = 0;
  let done = 0;
  let unfinished = 0;
  let wake: (() => void) | undefined;
  try {
    while (done < end) {
      while (next < end && unfinished < window && chunks.length < AHEAD_CHUNKS) {
        const bytes = Math.min(PARALLEL_CHUNK, end - next);
        const c: (typeof chunks)[number] = { promise: pool.hash(h.alg, [[fd, next, bytes]]), bytes };
        unfinished++;
        c.promise.then((d) => (c.digests = d), () => {}).finally(() => {
          unfinished--;
          wake?.();
        });
        chunks.push(c);
        next += bytes;
      }
      const head = chunks[0];
      if (!head.digests) {
        // Wait for any request to finish (it may let more be sent); a failure surfaces here.
        await Promise.race([head.promise, new Promise<void>((r) => (wake = r))]);
        wake = undefined;
        continue;
      }
      chunks.shift();
      h.updateLeafDigests(head.digests, head.bytes);
      done += head.bytes;
    }
  } catch (e) {
    // Let the others settle (their rejections are not ours to report twice).
    await Promise.allSettled(chunks.map((c) => c.promise));
    throw e;
  }
  return done;
}

/** Feeds fd[offset..EOF) into h, reading the next chunk while the current one is hashed. */
async function hashSerially(h: FsVerityHasher, fd: number, offset: number): Promise<void> {
  let cur = new Uint8Array(CHUNK);
  let next = new Uint8Array(CHUNK);
  let pending = preadAsync(fd, cur, offset);
  for (;;) {
    const n = await pending;
    if (n === 0) break;
    offset += n;
    const filled = cur;
    pending = preadAsync(fd, next, offset);
    h.update(n === CHUNK ? filled : filled.subarray(0, n));
    cur = next;
    next = filled;
  }
}
