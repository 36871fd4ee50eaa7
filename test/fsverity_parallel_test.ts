// fs-verity digests hashed on the leaf pool's threads (lib/fsverity/leaf_pool.ts) are the digests of
// the same bytes hashed in one stream, for both backends and algorithms, on sizes around the chunk
// and block boundaries; batches of whole files come back in job order; a file shorter than asked is
// reported, not hashed as zeros.
import { assert, assertEquals } from "./helpers/assert.ts";
import { InternalError } from "../lib/errors.ts";
import { libcryptoAvailable, setHashBackend } from "../lib/fsverity/backend.ts";
import { fsverityDigest, FsVerityHasher } from "../lib/fsverity/hasher.ts";
import { fsverityDigestFd } from "../lib/fsverity/digest_fd.ts";
import { fsverityDigestFile } from "../lib/fsverity/digest_file.ts";
import { LeafPool, ShortFileError } from "../lib/fsverity/leaf_pool.ts";
import type { HashAlgorithm } from "../lib/fsverity/object_id.ts";
import { closeFd, O_RDONLY, openPath } from "../lib/linux/fs.ts";

const ALGS: HashAlgorithm[] = ["sha256", "sha512"];
const BACKENDS = libcryptoAvailable() ? ["libcrypto", "node:crypto"] as const : ["node:crypto"] as const;

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  return out;
}

for (const backend of BACKENDS) {
  Deno.test(`fsverity pool: large files match the streamed digest (${backend})`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "fsverity-pool-" });
    setHashBackend(backend);
    try {
      const MiB = 1 << 20;
      for (const size of [4 * MiB, 4 * MiB + 1, 8 * MiB + 3 * 4096 + 5, 17 * MiB - 1, 24 * MiB]) {
        const data = randomBytes(size);
        const path = `${dir}/f`;
        await Deno.writeFile(path, data);
        for (const alg of ALGS) {
          const want = fsverityDigest(data, alg).hex();
          assertEquals((await fsverityDigestFile(path, alg)).hex(), want, `file ${size} ${alg}`);
          const fd = openPath(path, O_RDONLY);
          try {
            assertEquals((await fsverityDigestFd(fd, alg)).hex(), want, `fd ${size} ${alg}`);
          } finally {
            closeFd(fd);
          }
        }
      }
    } finally {
      setHashBackend("auto");
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`fsverity pool: a batch of whole files, digests in job order (${backend})`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "fsverity-pool-" });
    const pool = new LeafPool(2, backend);
    const fds: number[] = [];
    try {
      const sizes = [1, 4095, 4096, 4097, 100_000, 1 << 20];
      const datas = sizes.map(randomBytes);
      for (let i = 0; i < sizes.length; i++) {
        await Deno.writeFile(`${dir}/f${i}`, datas[i]);
        fds.push(openPath(`${dir}/f${i}`, O_RDONLY));
      }
      for (const alg of ALGS) {
        const leaves = await pool.hash(alg, sizes.map((s, i) => [fds[i], 0, s]));
        const ds = alg === "sha256" ? 32 : 64;
        let at = 0;
        for (let i = 0; i < sizes.length; i++) {
          const n = Math.ceil(sizes[i] / 4096) * ds;
          const h = new FsVerityHasher(alg);
          h.updateLeafDigests(leaves.subarray(at, at + n), sizes[i]);
          at += n;
          assertEquals(h.digest().hex(), fsverityDigest(datas[i], alg).hex(), `file ${i} ${alg}`);
        }
        assertEquals(at, leaves.length);
      }
      // Asking for more than the file holds is an error naming the shortfall, not zero padding.
      let err: unknown;
      await pool.hash("sha256", [[fds[0], 0, 1], [fds[1], 0, 8192]]).catch((e) => err = e);
      assert(err instanceof ShortFileError, `expected ShortFileError, got ${err}`);
    } finally {
      for (const fd of fds) closeFd(fd);
      await pool.terminate();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("fsverity pool: leaf digests must start on a block boundary", () => {
  const h = new FsVerityHasher("sha256");
  h.update(new Uint8Array(10));
  let threw = false;
  try {
    h.updateLeafDigests(new Uint8Array(32), 4096);
  } catch (e) {
    threw = e instanceof InternalError;
  }
  assert(threw, "expected an InternalError");
});
