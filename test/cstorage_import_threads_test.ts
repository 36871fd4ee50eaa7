// The containers-storage import threads (lib/linux/diff_import_thread.ts through
// lib/oci/transport/containers_storage/import_workers.ts) against the real kernel: what they report
// for files they cannot clone (another filesystem), missing files, FIFOs and escapes; small files'
// contents; link jobs (the XX directory made, an existing name reported present); ranges of a file
// hashed to the same leaves as the streamed hasher, and a file that is longer or shorter than asked
// refused. On a reflink xfs (root): clones hashed once into the data buffer, with the digest of the
// bytes, and a clone whose source changed size is not hashed.
import { assert, assertEquals, assertRejects, isRoot } from "./helpers/assert.ts";
import { FormatError } from "../lib/errors.ts";
import { fsverityDigest, FsVerityHasher } from "../lib/fsverity/hasher.ts";
import type { HashAlgorithm } from "../lib/fsverity/object_id.ts";
import { closeFd, O_DIRECTORY, O_RDONLY, openPath, openTmpfile, writeAll } from "../lib/linux/fs.ts";
import { ImportWorkers, type PrefetchItem } from "../lib/oci/transport/containers_storage/import_workers.ts";
import { libcryptoAvailable } from "../lib/fsverity/backend.ts";

const enc = new TextEncoder();
const onPath = (name: string) =>
  new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" }).outputSync().success;
const S_IFMT = 0o170000;

function bytes(n: number, seed: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 7919 + seed) & 0xff);
}

function item(path: string, size: number, clone: boolean, inline = false): PrefetchItem {
  return { path: enc.encode(path), size, clone, inline };
}

function digestOfLeaves(alg: HashAlgorithm, leaves: Uint8Array, size: number): string {
  const h = new FsVerityHasher(alg);
  h.updateLeafDigests(leaves, size);
  return h.digest().hex();
}

async function withDirs(fn: (diff: string, objects: string) => Promise<void>, base?: string) {
  const dir = await Deno.makeTempDir({ prefix: "cs-threads-", dir: base });
  try {
    await Deno.mkdir(`${dir}/diff/etc`, { recursive: true });
    await Deno.mkdir(`${dir}/objects`);
    await fn(`${dir}/diff`, `${dir}/objects`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("import threads: open, stat, inline contents, refusals, links (no reflinks here)", async () => {
  await withDirs(async (diff, objects) => {
    const big = bytes(100_000, 1);
    await Deno.writeFile(`${diff}/etc/big`, big);
    await Deno.writeFile(`${diff}/etc/small`, enc.encode("hello"));
    await Deno.symlink("/etc", `${diff}/out`);
    await Deno.symlink("etc", `${diff}/in`);
    const made = new Deno.Command("mkfifo", { args: [`${diff}/etc/fifo`] }).outputSync();
    assert(made.success, "mkfifo");
    const w = new ImportWorkers(2, libcryptoAvailable());
    const diffFd = openPath(diff, O_RDONLY | O_DIRECTORY);
    const fds: number[] = [];
    try {
      const { results, release } = await w.request(objects, "sha512", diffFd, [
        item("etc/big", big.length, true),
        item("etc/small", 5, false, true),
        item("in/small", 5, false, true), // a symlink that stays inside diff/ is followed
        item("etc/missing", 3, false),
        item("out/passwd", 10, false), // an absolute symlink out of diff/
        item("etc/fifo", 10, false), // O_NONBLOCK: must not block
      ]);
      for (const r of results) if (r.fd >= 0) fds.push(r.fd);
      for (const r of results) if (r.tmp >= 0) fds.push(r.tmp);
      const [b, s, s2, missing, out, fifo] = results;
      // /tmp is not a reflink filesystem: the clone is refused, the file is left open, not hashed.
      assert(b.fd >= 0 && b.tmp === -1 && b.cloneErrno !== 0, JSON.stringify(b));
      assertEquals([b.size, b.mode & S_IFMT, b.nlink], [big.length, 0o100000, 1]);
      assertEquals(b.leaves, undefined);
      assertEquals(new TextDecoder().decode(s.data!), "hello");
      assertEquals(new TextDecoder().decode(s2.data!), "hello");
      assertEquals([missing.fd, missing.openErrno], [-1, 2]); // ENOENT
      assertEquals([out.fd, out.openErrno], [-1, 18]); // EXDEV
      assertEquals(fifo.mode & S_IFMT, 0o010000);
      assertEquals(fifo.data, undefined);
      release();

      // Link jobs: the XX directory is made on the way; the same name again is "present".
      const t1 = openTmpfile(objects)!;
      const t2 = openTmpfile(objects)!;
      writeAll(t1, enc.encode("one"));
      writeAll(t2, enc.encode("two"));
      const l = await w.request(objects, "sha512", diffFd, [], [
        { fd: t1, close: [], name: "ab/cdef" },
        { fd: t2, close: [], name: "ab/cdef" },
      ]);
      assertEquals(l.links, ["linked", "present"]);
      assertEquals(await Deno.readTextFile(`${objects}/ab/cdef`), "one");
      // The thread closed both fds.
      for (const fd of [t1, t2]) {
        let target = "";
        try {
          target = Deno.readLinkSync(`/proc/self/fd/${fd}`);
        } catch { /* closed */ }
        assert(!target.startsWith(objects), `fd ${fd} still open: ${target}`);
      }
    } finally {
      for (const fd of fds) closeFd(fd);
      closeFd(diffFd);
      await w.terminate();
    }
  });
});

Deno.test("import threads: ranges of a file hash to the streamed digest; longer or shorter is refused", async () => {
  await withDirs(async (diff) => {
    const size = 9 * 1024 * 1024 + 4096 + 17;
    const data = bytes(size, 3);
    await Deno.writeFile(`${diff}/f`, data);
    const w = new ImportWorkers(3, libcryptoAvailable());
    const fd = openPath(`${diff}/f`, O_RDONLY);
    try {
      for (const alg of ["sha256", "sha512"] as const) {
        const step = 4 << 20;
        const parts = await Promise.all(
          [0, step, 2 * step].map((off) =>
            w.hashRange(alg, fd, off, Math.min(step, size - off), off + step >= size)
          ),
        );
        const leaves = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
        let at = 0;
        for (const p of parts) {
          leaves.set(p, at);
          at += p.length;
        }
        assertEquals(digestOfLeaves(alg, leaves, size), fsverityDigest(data, alg).hex(), alg);
      }
      // The file goes on past what was asked (it grew): refused; asked past its end: refused.
      await assertRejects(() => w.hashRange("sha256", fd, 0, size - 1, true), FormatError);
      await assertRejects(() => w.hashRange("sha256", fd, 0, size + 1, true), FormatError);
      assertEquals(
        (await w.hashRange("sha256", fd, 0, size - 1, false)).length,
        Math.ceil((size - 1) / 4096) * 32,
      );
    } finally {
      closeFd(fd);
      await w.terminate();
    }
  });
});

Deno.test({
  name: "import threads: on a reflink xfs, clones are hashed once into the data buffer (root)",
  ignore: !isRoot || !onPath("mkfs.xfs"),
  fn: async () => {
    const base = await Deno.makeTempDir({ prefix: "cs-threads-xfs-" });
    const img = `${base}/xfs.img`;
    const mnt = `${base}/mnt`;
    await Deno.mkdir(mnt);
    const sh = (c: string) => new Deno.Command("sh", { args: ["-c", c] }).outputSync();
    assert(
      sh(`truncate -s 320M ${img} && mkfs.xfs -q -m reflink=1 ${img} && mount -o loop ${img} ${mnt}`).success,
    );
    try {
      await withDirs(async (diff, objects) => {
        const files = [bytes(65, 1), bytes(4096, 2), bytes(100_001, 3), bytes(3 << 20, 4)];
        for (const [i, d] of files.entries()) await Deno.writeFile(`${diff}/etc/f${i}`, d);
        await Deno.writeFile(`${diff}/etc/changed`, bytes(5000, 5));
        const w = new ImportWorkers(2, libcryptoAvailable());
        const diffFd = openPath(diff, O_RDONLY | O_DIRECTORY);
        const fds: number[] = [];
        try {
          const items = files.map((d, i) => item(`etc/f${i}`, d.length, true));
          items.push(item("etc/changed", 4000, true)); // the layer says 4000, the file has 5000
          const { results } = await w.request(objects, "sha512", diffFd, items);
          for (const r of results) for (const fd of [r.fd, r.tmp]) if (fd >= 0) fds.push(fd);
          for (const [i, d] of files.entries()) {
            const r = results[i];
            assert(r.tmp >= 0 && r.cloneErrno === 0, JSON.stringify(r));
            assertEquals(r.fd, -1, "the diff/ file is closed once its clone is hashed");
            assertEquals(digestOfLeaves("sha512", r.leaves!, d.length), fsverityDigest(d, "sha512").hex());
            assertEquals(r.data, d, `f${i}: the bytes that were hashed, for the diff_id`);
          }
          const c = results[files.length];
          assertEquals([c.size, c.tmp, c.leaves], [5000, -1, undefined], "not cloned, not hashed");
        } finally {
          for (const fd of fds) closeFd(fd);
          closeFd(diffFd);
          await w.terminate();
        }
      }, mnt);
    } finally {
      sh(`umount ${mnt}`);
      await Deno.remove(base, { recursive: true });
    }
  },
});
