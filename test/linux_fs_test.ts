// Raw-fd primitives (lib/linux/fs.ts) and the fs-verity ioctls (lib/linux/fsverity_ioctl.ts) against
// the real kernel: this one has no fs-verity, so the "unsupported" paths are exercised for real and
// the ETXTBSY retry/copy procedure through its test seam.
import { assert, assertEquals, assertRejects, assertThrows, isRoot } from "./helpers/assert.ts";
import { KernelError } from "../lib/errors.ts";
import { tempDir } from "./helpers/cli.ts";
import { Errno } from "../lib/linux/libc.ts";
import {
  closeFd,
  ficlone,
  flock,
  flockAsync,
  fstatSize,
  fsync,
  isWritableFs,
  linkTmpfile,
  linkTmpfileAt,
  O_CREAT,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  openDir,
  openPath,
  openTmpfile,
  openTmpfileAt,
  pread,
  preadCached,
  read,
  renameNoReplace,
  reopenReadOnly,
  syncfs,
  writeAll,
} from "../lib/linux/fs.ts";
import {
  buildEnableArg,
  buildMeasureBuffer,
  enableErrorKind,
  enableVerity,
  enableVerityOnTmpfile,
  FS_IOC_ENABLE_VERITY,
  FS_IOC_MEASURE_VERITY,
  measureErrorKind,
  parseMeasureBuffer,
  VerityError,
  verityErrorFor,
} from "../lib/linux/fsverity_ioctl.ts";
import { measureFileWithFallback, measureVerity } from "../lib/fsverity/measure.ts";
import { fsverityDigestFd } from "../lib/fsverity/digest_fd.ts";
import type { HashAlgorithm } from "../lib/fsverity/object_id.ts";

const enc = new TextEncoder();

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  return out;
}

function readAllFd(fd: number): Uint8Array {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  for (let off = 0;;) {
    const n = pread(fd, buf, off);
    if (n === 0) break;
    chunks.push(buf.slice(0, n));
    off += n;
  }
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

function haveTool(name: string): boolean {
  return new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" }).outputSync().success;
}

async function cDigest(path: string, alg: HashAlgorithm): Promise<string> {
  const out = await new Deno.Command("fsverity", { args: ["digest", `--hash-alg=${alg}`, path] }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).split(" ")[0].split(":")[1];
}

async function withTempDir(fn: (dir: string) => Promise<void> | void, base?: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "linux-fs-test-", dir: base });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function sh(cmd: string): Deno.CommandOutput {
  return new Deno.Command("sh", { args: ["-c", cmd], stdout: "piped", stderr: "piped" }).outputSync();
}

/** A loop-mounted filesystem image for root-only tests; null when it cannot be made. */
async function mountScratch(fs: "xfs" | "btrfs", dir: string): Promise<string | null> {
  const img = `${dir}/${fs}.img`;
  const mnt = `${dir}/${fs}`;
  await Deno.mkdir(mnt);
  const mk = fs === "xfs" ? `mkfs.xfs -q -m reflink=1 ${img}` : `mkfs.btrfs -q ${img}`;
  const r = sh(`truncate -s 320M ${img} && ${mk} && mount -o loop ${img} ${mnt}`);
  if (!r.success) {
    console.log(`(skipping ${fs}: ${new TextDecoder().decode(r.stderr).trim()})`);
    return null;
  }
  return mnt;
}

// ---- tmpfile, link, read/write ------------------------------------------------------------------

Deno.test("fs: O_TMPFILE + linkat makes the file appear atomically; EEXIST gives false", async () => {
  await withTempDir((dir) => {
    const data = randomBytes(10000);
    const fd = openTmpfile(dir, 0o600);
    assert(fd !== null, "O_TMPFILE should work on the test filesystem");
    try {
      writeAll(fd, data);
      assertEquals([...Deno.readDirSync(dir)], [], "an unnamed file has no directory entry");
      assertEquals(fstatSize(fd), data.length);
      assertEquals(linkTmpfile(fd, `${dir}/obj`), true);
      assertEquals(Deno.readFileSync(`${dir}/obj`), data);
      assertEquals(Deno.statSync(`${dir}/obj`).mode! & 0o777, 0o600);
    } finally {
      closeFd(fd);
    }
    // A second file under the same name: not linked, the first one is untouched.
    const dirFd = openDir(dir);
    const fd2 = openTmpfileAt(dirFd);
    assert(fd2 !== null);
    try {
      writeAll(fd2, enc.encode("other"));
      assertEquals(linkTmpfile(fd2, `${dir}/obj`), false);
      assertEquals(linkTmpfileAt(fd2, dirFd, "obj"), false);
      assertEquals(Deno.readFileSync(`${dir}/obj`), data);
      assertEquals(linkTmpfileAt(fd2, dirFd, "obj2"), true);
      assertEquals(Deno.readTextFileSync(`${dir}/obj2`), "other");
    } finally {
      closeFd(fd2);
      closeFd(dirFd);
    }
  });
});

Deno.test("fs: openTmpfile returns null where O_TMPFILE is unsupported, throws on real errors", () => {
  assertEquals(openTmpfile("/proc"), null);
  const e = assertThrows(() => openTmpfile("/nonexistent-dir-for-test"), KernelError) as KernelError;
  assertEquals(e.code, "ENOENT");
  assertEquals(e.context, ["/nonexistent-dir-for-test"]);
});

Deno.test("fs: reopenReadOnly gives a read-only fd of the same file", async () => {
  await withTempDir((dir) => {
    const fd = openTmpfile(dir)!;
    writeAll(fd, enc.encode("hello"));
    const ro = reopenReadOnly(fd);
    closeFd(fd);
    try {
      assertEquals(new TextDecoder().decode(readAllFd(ro)), "hello");
      const e = assertThrows(() => writeAll(ro, enc.encode("x")), KernelError) as KernelError;
      assertEquals(e.errno, Errno.EBADF);
    } finally {
      closeFd(ro);
    }
  });
});

Deno.test("fs: read, pread, writeAll, fsync, syncfs, fstatSize; errors carry the path", async () => {
  await withTempDir((dir) => {
    const data = randomBytes(3 << 20);
    const fd = openPath(`${dir}/f`, O_WRONLY | O_CREAT, 0o644);
    writeAll(fd, data);
    fsync(fd);
    syncfs(fd);
    closeFd(fd);
    const r = openPath(`${dir}/f`, O_RDONLY);
    try {
      assertEquals(fstatSize(r), data.length);
      const buf = new Uint8Array(1000);
      assertEquals(pread(r, buf, 5000), 1000);
      assertEquals(buf, data.subarray(5000, 6000));
      assertEquals(read(r, buf), 1000, "read starts at 0: pread left the position alone");
      assertEquals(buf, data.subarray(0, 1000));
      assertEquals(pread(r, buf, data.length - 10), 10);
      assertEquals(pread(r, buf, data.length), 0);
    } finally {
      closeFd(r);
    }
    const e = assertThrows(() => openPath(`${dir}/missing`, O_RDONLY), KernelError) as KernelError;
    assertEquals([e.syscall, e.code, e.context], ["open", "ENOENT", [`${dir}/missing`]]);
    assertThrows(() => closeFd(r), KernelError);
  });
});

Deno.test("fs: byte-string (non-UTF-8) paths", async () => {
  await withTempDir((dir) => {
    const name = new Uint8Array([...enc.encode(dir + "/"), 0x66, 0xff, 0xfe]);
    const fd = openPath(name, O_RDWR | O_CREAT, 0o644);
    writeAll(fd, enc.encode("bytes"));
    closeFd(fd);
    const entries = [...Deno.readDirSync(dir)];
    assertEquals(entries.length, 1);
    const fd2 = openPath(name, O_RDONLY);
    assertEquals(fstatSize(fd2), 5);
    closeFd(fd2);
  });
});

Deno.test("fs: renameNoReplace renames, refuses to replace", async () => {
  await withTempDir((dir) => {
    Deno.writeTextFileSync(`${dir}/a`, "A");
    Deno.writeTextFileSync(`${dir}/b`, "B");
    assertEquals(renameNoReplace(`${dir}/a`, `${dir}/b`), false);
    assertEquals(Deno.readTextFileSync(`${dir}/a`), "A");
    assertEquals(Deno.readTextFileSync(`${dir}/b`), "B");
    assertEquals(renameNoReplace(`${dir}/a`, `${dir}/c`), true);
    assertEquals(Deno.readTextFileSync(`${dir}/c`), "A");
    assertThrows(() => renameNoReplace(`${dir}/a`, `${dir}/d`), KernelError);
  });
});

Deno.test("fs: isWritableFs", async () => {
  assertEquals(isWritableFs("/tmp"), true);
  assertThrows(() => isWritableFs("/nonexistent-dir-for-test"), KernelError);
  if (!isRoot) return;
  // Root passes access(W_OK) everywhere: only the ST_RDONLY check can say no.
  await withTempDir((dir) => {
    const r = sh(`mount -t tmpfs -o ro tmpfs ${dir}`);
    assert(r.success, new TextDecoder().decode(r.stderr));
    try {
      assertEquals(isWritableFs(dir), false);
    } finally {
      sh(`umount ${dir}`);
    }
  });
});

Deno.test("fs: flock shared/exclusive between two processes", async () => {
  await withTempDir(async (dir) => {
    const lockPath = `${dir}/lock`;
    Deno.writeTextFileSync(lockPath, "");
    const fsUrl = new URL("../lib/linux/fs.ts", import.meta.url).href;
    const holder = (mode: string) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          `import { openPath, flock, O_RDONLY } from ${JSON.stringify(fsUrl)};
           const fd = openPath(${JSON.stringify(lockPath)}, O_RDONLY);
           flock(fd, ${JSON.stringify(mode)});
           console.log("locked");
           await Deno.stdin.read(new Uint8Array(1));`,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
    const waitLocked = async (child: Deno.ChildProcess) => {
      const r = child.stdout.getReader();
      const { value } = await r.read();
      r.releaseLock();
      assertEquals(new TextDecoder().decode(value).trim(), "locked");
    };
    const release = async (child: Deno.ChildProcess) => {
      await child.stdin.close();
      await child.stdout.cancel();
      assert((await child.status).success);
    };

    const fd = openPath(lockPath, O_RDONLY);
    try {
      // Child holds a shared lock: we may share, not take exclusive.
      const sharedChild = holder("sh");
      await waitLocked(sharedChild);
      assertEquals(flock(fd, "ex", { nonBlocking: true }), false);
      assertEquals(flock(fd, "sh", { nonBlocking: true }), true);
      assertEquals(flock(fd, "un"), true);
      await release(sharedChild);
      // Child holds an exclusive lock: neither shared nor exclusive is possible until it exits.
      const exChild = holder("ex");
      await waitLocked(exChild);
      assertEquals(flock(fd, "sh", { nonBlocking: true }), false);
      assertEquals(flock(fd, "ex", { nonBlocking: true }), false);
      const waited = flockAsync(fd, "ex");
      await new Promise((r) => setTimeout(r, 50));
      await release(exChild);
      await waited; // granted once the child is gone
      assertEquals(flock(fd, "un"), true);
    } finally {
      closeFd(fd);
    }
  });
});

Deno.test({
  name: "fs: ficlone is refused on ext4/tmpfs, works on reflink xfs (root)",
  ignore: !isRoot || !haveTool("mkfs.xfs"),
  async fn() {
    await withTempDir(async (dir) => {
      const src = openPath(`${dir}/src`, O_RDWR | O_CREAT, 0o644);
      writeAll(src, randomBytes(100000));
      const dst = openPath(`${dir}/dst`, O_RDWR | O_CREAT, 0o644);
      try {
        const onShm = await Deno.makeTempDir({ dir: "/dev/shm" });
        const shmFd = openPath(`${onShm}/x`, O_RDWR | O_CREAT, 0o644);
        const e = assertThrows(() => ficlone(shmFd, src), KernelError) as KernelError;
        assert(e.errno === Errno.EXDEV || e.errno === Errno.EOPNOTSUPP, e.code);
        closeFd(shmFd);
        await Deno.remove(onShm, { recursive: true });
      } finally {
        closeFd(src);
        closeFd(dst);
      }
      const mnt = await mountScratch("xfs", dir);
      if (mnt === null) return;
      try {
        const data = randomBytes(1 << 20);
        Deno.writeFileSync(`${mnt}/a`, data);
        const a = openPath(`${mnt}/a`, O_RDONLY);
        const b = openPath(`${mnt}/b`, O_RDWR | O_CREAT, 0o644);
        ficlone(b, a);
        closeFd(a);
        closeFd(b);
        assertEquals(Deno.readFileSync(`${mnt}/b`), data);
      } finally {
        sh(`umount ${mnt}`);
      }
    });
  },
});

// ---- fs-verity ioctls: pure parts -----------------------------------------------------------------

Deno.test("verity: ioctl numbers", () => {
  // _IOW('f', 133, 128) and _IOWR('f', 134, 4)
  const ioc = (dir: number, type: number, nr: number, size: number) =>
    ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
  assertEquals(FS_IOC_ENABLE_VERITY, ioc(1, 0x66, 133, 128));
  assertEquals(FS_IOC_MEASURE_VERITY, ioc(3, 0x66, 134, 4));
});

Deno.test("verity: fsverity_enable_arg bytes", () => {
  for (const [alg, id] of [["sha256", 1], ["sha512", 2]] as const) {
    const arg = buildEnableArg(alg);
    const expected = new Uint8Array(128);
    expected.set([1, 0, 0, 0, id, 0, 0, 0, 0x00, 0x10, 0, 0], 0); // version, alg, block_size 4096
    assertEquals(arg, expected);
  }
});

Deno.test("verity: measure buffer build and parse", () => {
  assertEquals([...buildMeasureBuffer("sha256")], [1, 0, 32, 0, ...new Array(32).fill(0)]);
  assertEquals(buildMeasureBuffer("sha512").length, 68);
  assertEquals([...buildMeasureBuffer("sha512").subarray(0, 4)], [2, 0, 64, 0]);

  const digest = randomBytes(32);
  const b = new Uint8Array(36);
  b.set([1, 0, 32, 0]);
  b.set(digest, 4);
  const id = parseMeasureBuffer(b, "sha256");
  assertEquals([id.alg, id.bytes], ["sha256", digest]);

  // The file was made with SHA-256 but SHA-512 is expected.
  const b2 = new Uint8Array(68);
  b2.set([1, 0, 32, 0]);
  assertEquals(
    (assertThrows(() => parseMeasureBuffer(b2, "sha512"), VerityError) as VerityError).kind,
    "wrong-algorithm",
  );
  const b3 = new Uint8Array(68);
  b3.set([2, 0, 48, 0]);
  assertEquals(
    (assertThrows(() => parseMeasureBuffer(b3, "sha512"), VerityError) as VerityError).kind,
    "wrong-size",
  );
});

Deno.test("verity: errno mapping", () => {
  const enable: [number, string][] = [
    [Errno.ENOTTY, "unsupported"],
    [Errno.EOPNOTSUPP, "unsupported"],
    [Errno.EEXIST, "already-enabled"],
    [Errno.ETXTBSY, "file-busy"],
    [Errno.EKEYREJECTED, "signature-rejected"],
    [Errno.ENODATA, "other"],
    [Errno.EINVAL, "other"],
    [Errno.EPERM, "other"],
  ];
  for (const [e, kind] of enable) assertEquals(enableErrorKind(e), kind, `enable errno ${e}`);
  const measure: [number, string][] = [
    [Errno.ENODATA, "missing"],
    [Errno.ENOTTY, "unsupported"],
    [Errno.EOPNOTSUPP, "unsupported"],
    [Errno.EOVERFLOW, "wrong-size"],
    [Errno.EEXIST, "other"],
    [Errno.ETXTBSY, "other"],
    [Errno.EINVAL, "other"],
  ];
  for (const [e, kind] of measure) assertEquals(measureErrorKind(e), kind, `measure errno ${e}`);
  const err = verityErrorFor("enable", Errno.ETXTBSY, ["objects/ab"]);
  assert(err instanceof KernelError);
  assertEquals([err.kind, err.errno, err.code, err.syscall, err.context], [
    "file-busy",
    Errno.ETXTBSY,
    "ETXTBSY",
    "ioctl(FS_IOC_ENABLE_VERITY)",
    ["objects/ab"],
  ]);
});

// ---- fs-verity ioctls: against this kernel (no fs-verity) ----------------------------------------

function expectUnsupported(dir: string): void {
  const path = `${dir}/v`;
  Deno.writeFileSync(path, randomBytes(5000));
  const fd = openPath(path, O_RDONLY);
  try {
    for (const alg of ["sha256", "sha512"] as const) {
      const m = assertThrows(() => measureVerity(fd, alg), VerityError) as VerityError;
      assertEquals(m.kind, "unsupported", `measure ${m.code}`);
      const e = assertThrows(() => enableVerity(fd, alg), VerityError) as VerityError;
      assertEquals(e.kind, "unsupported", `enable ${e.code}`);
      assert(["ENOTTY", "EOPNOTSUPP"].includes(e.code));
    }
  } finally {
    closeFd(fd);
  }
  // The tmpfile procedure reports "not enabled" and hands back a readable fd of the data.
  const w = openTmpfile(dir);
  if (w !== null) {
    writeAll(w, enc.encode("tmp data"));
    const { fd: ro, enabled } = enableVerityOnTmpfile(w, dir, "sha256");
    try {
      assertEquals(enabled, false);
      assertEquals(new TextDecoder().decode(readAllFd(ro)), "tmp data");
    } finally {
      closeFd(ro);
    }
  }
}

Deno.test("verity: enable/measure are 'unsupported' on ext4 (/tmp) and tmpfs (/dev/shm)", async () => {
  await withTempDir(expectUnsupported);
  await withTempDir(expectUnsupported, "/dev/shm");
});

Deno.test({
  name: "verity: enable/measure are 'unsupported' on xfs and btrfs (root, loop mounts)",
  ignore: !isRoot || !haveTool("mkfs.xfs"),
  async fn() {
    await withTempDir(async (dir) => {
      for (const fs of ["xfs", "btrfs"] as const) {
        const mnt = await mountScratch(fs, dir);
        if (mnt === null) continue;
        try {
          expectUnsupported(mnt);
        } finally {
          sh(`umount ${mnt}`);
        }
      }
    });
  },
});

Deno.test("verity: ETXTBSY is retried twice, then the data is copied to a fresh tmpfile", async () => {
  await withTempDir((dir) => {
    const data = randomBytes(3 << 20);
    const w = openTmpfile(dir)!;
    writeAll(w, data);
    const seenFds: number[] = [];
    const sleeps: number[] = [];
    let calls = 0;
    const { fd, enabled } = enableVerityOnTmpfile(w, dir, "sha256", {
      enable(fd) {
        seenFds.push(fd);
        if (++calls <= 3) throw verityErrorFor("enable", Errno.ETXTBSY);
      },
      sleep: (ms) => sleeps.push(ms),
    });
    try {
      assertEquals(enabled, true);
      assertEquals(calls, 4, "three tries on the original, one on the copy");
      assertEquals(new Set(seenFds.slice(0, 3)).size, 1);
      assert(seenFds[3] !== seenFds[0] && seenFds[3] === fd, "the copy is a different fd, and is returned");
      assertEquals(sleeps, [1, 1]);
      assertEquals(readAllFd(fd), data, "the copy holds the same bytes");
      // The copy is read-only too.
      assertThrows(() => writeAll(fd, enc.encode("x")), KernelError);
    } finally {
      closeFd(fd);
    }
  });
});

Deno.test("verity: a file that stays busy fails with file-busy; other errors pass through", async () => {
  await withTempDir((dir) => {
    const w = openTmpfile(dir)!;
    writeAll(w, enc.encode("x"));
    const e = assertThrows(
      () =>
        enableVerityOnTmpfile(w, dir, "sha512", {
          enable() {
            throw verityErrorFor("enable", Errno.ETXTBSY);
          },
          sleep() {},
        }),
      VerityError,
    ) as VerityError;
    assertEquals(e.kind, "file-busy");

    const w2 = openTmpfile(dir)!;
    const e2 = assertThrows(
      () =>
        enableVerityOnTmpfile(w2, dir, "sha256", {
          enable() {
            throw verityErrorFor("enable", Errno.EKEYREJECTED);
          },
          sleep() {},
        }),
      VerityError,
    ) as VerityError;
    assertEquals(e2.kind, "signature-rejected");
    // Enabling on an already-verity file is the caller's business: it is reported, not hidden.
    const w3 = openTmpfile(dir)!;
    const e3 = assertThrows(
      () =>
        enableVerityOnTmpfile(w3, dir, "sha256", {
          enable() {
            throw verityErrorFor("enable", Errno.EEXIST);
          },
          sleep() {},
        }),
      VerityError,
    ) as VerityError;
    assertEquals(e3.kind, "already-enabled");
  });
});

Deno.test({
  name: "verity: measureFileWithFallback and fsverityDigestFd equal C fsverity digest",
  ignore: !haveTool("fsverity"),
  async fn() {
    for (const base of [undefined, "/dev/shm"]) {
      await withTempDir(async (dir) => {
        for (const size of [0, 1, 4096, 1048577, 5 << 20]) {
          const path = `${dir}/f${size}`;
          Deno.writeFileSync(path, randomBytes(size));
          for (const alg of ["sha256", "sha512"] as const) {
            const expected = await cDigest(path, alg);
            assertEquals((await measureFileWithFallback(path, alg)).hex(), expected, `${path} ${alg}`);
            const fd = openPath(path, O_RDONLY);
            try {
              assertEquals((await fsverityDigestFd(fd, alg)).hex(), expected);
            } finally {
              closeFd(fd);
            }
          }
        }
      }, base);
    }
    await assertRejects(() => measureFileWithFallback("/nonexistent-file-for-test", "sha256"), KernelError);
  },
});

Deno.test("fs: preadCached reads what the page cache holds and says null for what it does not", async () => {
  await using t = await tempDir();
  const path = `${t.path}/f`;
  const data = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
  await Deno.writeFile(path, data);
  const fd = openPath(path, O_RDONLY);
  try {
    fsync(fd);
    const buf = new Uint8Array(256 * 1024);
    pread(fd, buf.subarray(0, data.length), 0); // now cached
    buf.fill(0);
    assertEquals(preadCached(fd, buf.subarray(0, data.length), 0), data.length);
    assertEquals(buf.subarray(0, data.length), data);
    assertEquals(preadCached(fd, buf.subarray(0, 10), data.length - 4), 4, "short at the end of the file");
    // Evicted (clean pages, fsync'd): RWF_NOWAIT refuses to wait for the disk.
    const libc = Deno.dlopen("libc.so.6", {
      posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
    });
    try {
      assertEquals(libc.symbols.posix_fadvise(fd, 0n, 0n, 4 /* POSIX_FADV_DONTNEED */), 0);
    } finally {
      libc.close();
    }
    assertEquals(preadCached(fd, buf.subarray(0, data.length), 0), null);
  } finally {
    closeFd(fd);
  }
});
