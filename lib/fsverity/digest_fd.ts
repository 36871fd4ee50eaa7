// fs-verity digest of an open file descriptor (e.g. an O_TMPFILE or a file opened through FFI with a
// byte-string path). Reads with pread from offset 0, so the fd position is left alone; the next
// chunk is read on a worker thread while the current one is hashed.
import { preadAsync } from "../linux/fs.ts";
import { FsVerityHasher } from "./hasher.ts";
import type { HashAlgorithm, ObjectId } from "./object_id.ts";

const CHUNK = 1 << 20;

export async function fsverityDigestFd(fd: number, alg: HashAlgorithm): Promise<ObjectId> {
  const h = new FsVerityHasher(alg);
  let cur = new Uint8Array(CHUNK);
  let next = new Uint8Array(CHUNK);
  let offset = 0;
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
  return h.digest();
}
