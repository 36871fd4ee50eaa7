// Mounting composefs images for real (root only): the kernel's view of the mounted tree must equal the
// source directory, and every failure must leave no mount, loop device, temporary directory or fd behind.
// Images come from Debian mkfs.erofs (an independent EROFS writer): external files are sparse stubs
// carrying trusted.overlay.metacopy/redirect, their content lives in an objects dir as XX/rest.
import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch, assertRejects, isRoot } from "./helpers/assert.ts";
import { DENO, MAIN, runCli } from "./helpers/cli.ts";
import {
  FormatError,
  IntegrityError,
  InvalidArgumentError,
  KernelError,
  NotFoundError,
  UsageError,
} from "../lib/errors.ts";
import { fsverityDigestFile } from "../lib/fsverity/digest_file.ts";
import {
  buildLoopConfig,
  LO_FLAGS_AUTOCLEAR,
  LO_FLAGS_DIRECT_IO,
  LO_FLAGS_READ_ONLY,
} from "../lib/linux/loop.ts";
import { closeFd, fsconfigSetString } from "../lib/linux/mount_api.ts";
import { mountComposefs, type MountComposefsOptions } from "../lib/mount/composefs.ts";
import { openFsContext } from "../lib/mount/open_context.ts";
import { explainOverlayCreateError, explainOverlayOptionError } from "../lib/mount/overlay.ts";
import { unmountComposefs } from "../lib/mount/unmount.ts";
import { parseMountComposefsArgs } from "../lib/cli/mount_composefs.ts";
import { writeErofs } from "../lib/erofs/writer.ts";
import type { ObjectId } from "../lib/fsverity/object_id.ts";
import { readXattrs } from "../lib/linux/xattr.ts";
import { writeImage } from "../lib/repository/images.ts";
import { Repository } from "../lib/repository/repository.ts";
import {
  type Directory,
  type Inode,
  type Leaf,
  newDirectory,
  newLeaf,
  newStat,
  type Stat,
} from "../lib/tree/tree.ts";
import { mountRepositoryImage } from "../lib/mount/repository_image.ts";

const INLINE_MAX = 64;

// ---- small process helpers ---------------------------------------------------------------------

async function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  const o = await new Deno.Command(cmd, { args, cwd: opts.cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(o.stdout);
  if (!o.success) throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(o.stderr)}`);
  return text;
}

/** Everything a failed mount could leave behind, to compare before/after. */
async function leftovers(): Promise<{ mounts: string[]; loops: string; tmp: string[]; fds: number }> {
  const mounts = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
    .filter((l) => / - (overlay|erofs) /.test(l) || l.includes("cfsctl"));
  const loops = await sh("losetup", ["-a"]);
  const tmpRoot = Deno.env.get("TMPDIR") ?? "/tmp";
  const tmp = [...Deno.readDirSync(tmpRoot)].map((e) => e.name).filter((n) => n.startsWith(".cfsctl-erofs-"));
  const fds = [...Deno.readDirSync("/proc/self/fd")].length;
  return { mounts, loops, tmp, fds };
}

async function assertNothingLeft<T>(what: string, fn: () => Promise<T>): Promise<void> {
  const before = await leftovers();
  try {
    await fn();
  } finally {
    const after = await leftovers();
    assertEquals(after, before, `${what}: leftovers after a failed mount`);
  }
}

// ---- fixtures ------------------------------------------------------------------------------------

/** A real directory with every kind of entry composefs must reproduce. */
async function makeSourceTree(src: string): Promise<void> {
  const w = (p: string, data: Uint8Array | string) =>
    Deno.writeFileSync(`${src}/${p}`, typeof data === "string" ? new TextEncoder().encode(data) : data);
  const rnd = (n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
    return b;
  };
  w("small.txt", "hello\n");
  w("empty", "");
  w("exactly64", rnd(INLINE_MAX));
  w("just65", rnd(INLINE_MAX + 1));
  w("big.bin", rnd(300_000));
  w("page.bin", rnd(4096));
  Deno.mkdirSync(`${src}/sub/deeper`, { recursive: true });
  w("sub/nested.dat", rnd(5000));
  w("sub/deeper/tiny", "x");
  w("sub/ünïcode näme", rnd(100));
  Deno.linkSync(`${src}/big.bin`, `${src}/sub/big-hardlink`);
  Deno.linkSync(`${src}/small.txt`, `${src}/sub/small-hardlink`);
  Deno.symlinkSync("small.txt", `${src}/link`);
  Deno.symlinkSync("../nowhere/dangling", `${src}/sub/dangling`);
  w("setuid", rnd(200));
  Deno.chmodSync(`${src}/setuid`, 0o4755);
  Deno.chmodSync(`${src}/sub`, 0o750);
  Deno.chmodSync(`${src}/small.txt`, 0o600);
  Deno.chownSync(`${src}/sub`, 1000, 100);
  Deno.chownSync(`${src}/just65`, 1234, 5678);
  await sh("chown", ["-h", "4321:8765", `${src}/link`]);
  await sh("mkfifo", ["-m", "0640", `${src}/fifo`]);
  await sh("mknod", ["-m", "0666", `${src}/null-dev`, "c", "1", "3"]);
  await sh("setfattr", ["-n", "user.comment", "-v", "composefs", `${src}/big.bin`]);
  await sh("setfattr", ["-n", "user.empty", `${src}/small.txt`]);
  await sh("setfattr", ["-n", "user.dir", "-v", "0x00ff10", `${src}/sub`]);
  await sh("setfattr", ["-n", "trusted.private", "-v", "t", `${src}/sub/nested.dat`]);
  for (const p of ["small.txt", "big.bin", "sub/nested.dat", "sub", "setuid"]) {
    Deno.utimeSync(`${src}/${p}`, 1_600_000_000, 1_500_000_000 + p.length);
  }
}

async function walk(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of [...Deno.readDirSync(root + rel)].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = `${rel}/${e.name}`;
    out.push(p);
    if (e.isDirectory) out.push(...await walk(root, p));
  }
  return out;
}

/**
 * Builds a composefs-style image of `src` with mkfs.erofs: a copy of the tree where every regular
 * file larger than 64 bytes is a sparse stub with the overlay redirect/metacopy xattrs, its content
 * stored in `objects/XX/rest` under its fs-verity SHA-256 digest.
 */
async function buildImage(src: string, work: string): Promise<{ image: string; objects: string }> {
  const stage = `${work}/stage`, objects = `${work}/objects`, image = `${work}/image.erofs`;
  Deno.mkdirSync(objects);
  await sh("cp", ["-a", src, stage]);
  for (const p of await walk(stage)) {
    const st = Deno.lstatSync(stage + p);
    if (!st.isFile || st.size <= INLINE_MAX) continue;
    const id = await fsverityDigestFile(src + p, "sha256");
    const h = id.hex();
    Deno.mkdirSync(`${objects}/${h.slice(0, 2)}`, { recursive: true });
    try {
      Deno.copyFileSync(src + p, `${objects}/${id.objectPath()}`);
    } catch { /* hard link seen before */ }
    Deno.truncateSync(stage + p, 0);
    Deno.truncateSync(stage + p, st.size);
    await sh("setfattr", ["-n", "trusted.overlay.redirect", "-v", `/${id.objectPath()}`, stage + p]);
    // struct ovl_metacopy: version 0, len 4+32, flags 0, algo 1 (sha256), digest.
    await sh("setfattr", ["-n", "trusted.overlay.metacopy", "-v", `0x00240001${h}`, stage + p]);
    Deno.utimeSync(stage + p, st.atime!, st.mtime!);
  }
  await sh("mkfs.erofs", ["--quiet", image, stage]);
  return { image, objects };
}

interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  content?: string;
  target?: string;
  rdev?: number;
  links?: string;
}

/** The observable tree: per path its stat, content hash, link target; hard links as groups. */
async function snapshot(root: string): Promise<{ entries: Record<string, Entry>; xattrs: string }> {
  const entries: Record<string, Entry> = {};
  const byIno = new Map<number, string[]>();
  for (const p of ["", ...await walk(root)]) {
    const st = Deno.lstatSync(root + p);
    const e: Entry = {
      type: st.isFile
        ? "file"
        : st.isDirectory
        ? "dir"
        : st.isSymlink
        ? "symlink"
        : `other:${st.mode! >> 12}`,
      mode: st.mode! & 0o7777,
      uid: st.uid!,
      gid: st.gid!,
      size: st.isDirectory ? 0 : st.size,
      mtime: st.mtime!.getTime(),
    };
    if (st.isFile) e.content = createHash("sha256").update(Deno.readFileSync(root + p)).digest("hex");
    if (st.isSymlink) e.target = Deno.readLinkSync(root + p);
    if (!st.isFile && !st.isDirectory && !st.isSymlink) e.rdev = st.rdev!;
    if (!st.isDirectory && st.nlink! > 1) byIno.set(st.ino!, [...byIno.get(st.ino!) ?? [], p]);
    entries[p || "/"] = e;
  }
  for (const group of byIno.values()) for (const p of group) entries[p].links = group.join(" ");
  // getfattr lists files in readdir order: regroup per file, sorted.
  const dump = await sh("getfattr", ["-R", "-h", "-d", "-m", "-", "-e", "hex", "."], { cwd: root });
  const xattrs = dump.split("\n\n").map((block) => block.trim()).filter(Boolean)
    .map((block) => block.split("\n").filter((l) => !l.startsWith("trusted.overlay.")).join("\n"))
    .filter((block) => block.includes("\n")).sort().join("\n\n");
  return { entries, xattrs };
}

interface Fixture {
  dir: string;
  src: string;
  image: string;
  objects: string;
  mnt: string;
  expected: Awaited<ReturnType<typeof snapshot>>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-mount-test-" });
  const src = `${dir}/src`, mnt = `${dir}/mnt`;
  Deno.mkdirSync(src);
  Deno.mkdirSync(mnt);
  await makeSourceTree(src);
  const { image, objects } = await buildImage(src, dir);
  const expected = await snapshot(src);
  return {
    dir,
    src,
    image,
    objects,
    mnt,
    expected,
    async [Symbol.asyncDispose]() {
      for (let i = 0; i < 4 && isMounted(mnt); i++) unmountComposefs(mnt, { lazy: true });
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function mountinfoLine(path: string): string | undefined {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").find((l) => l.split(" ")[4] === path);
}
function isMounted(path: string): boolean {
  return mountinfoLine(Deno.realPathSync(path)) !== undefined;
}

async function objectsDigest(objects: string): Promise<string> {
  const h = createHash("sha256");
  for (const p of await walk(objects)) {
    const st = Deno.statSync(objects + p);
    h.update(`${p} ${st.mode} ${st.size} ${st.mtime?.getTime()}\n`);
    if (st.isFile) h.update(Deno.readFileSync(objects + p));
  }
  return h.digest("hex");
}

/** Whether the file system holding `dir` supports fs-verity (enabling it on a scratch file works). */
async function hasFsVerity(dir: string): Promise<boolean> {
  const probe = `${dir}/.verity-probe`;
  Deno.writeTextFileSync(probe, "probe");
  try {
    const o = await new Deno.Command("fsverity", { args: ["enable", probe], stderr: "null" }).output();
    return o.success;
  } finally {
    Deno.removeSync(probe);
  }
}

function assertWriteFails(mnt: string): void {
  for (
    const attempt of [
      () => Deno.writeTextFileSync(`${mnt}/new-file`, "x"),
      () => Deno.openSync(`${mnt}/big.bin`, { write: true }),
    ]
  ) {
    try {
      attempt();
      assert(false, "write on a read-only composefs mount succeeded");
    } catch (e) {
      assertEquals((e as { code?: string }).code, "EROFS");
    }
  }
}

// ---- tests ---------------------------------------------------------------------------------------

Deno.test("struct loop_config layout matches <linux/loop.h> (x86_64, offsets from gcc offsetof)", () => {
  const flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
  assertEquals(flags, 1 | 4 | 16);
  const b = buildLoopConfig(0x01020304, {
    blockSize: 4096,
    flags,
    fileName: new TextEncoder().encode("img"),
  });
  const v = new DataView(b.buffer);
  assertEquals(b.length, 304); // sizeof(struct loop_config)
  assertEquals(v.getUint32(0, true), 0x01020304); // fd
  assertEquals(v.getUint32(4, true), 4096); // block_size
  assertEquals(v.getUint32(8 + 52, true), flags); // info.lo_flags
  assertEquals(new TextDecoder().decode(b.subarray(8 + 56, 8 + 59)), "img"); // info.lo_file_name
  // everything else zero (lo_offset at 8+24, lo_sizelimit at 8+32: whole file)
  const nonZero = [...b.keys()].filter((i) =>
    b[i] !== 0 && !(i < 8) && !(i >= 60 && i < 64) && !(i >= 64 && i < 67)
  );
  assertEquals(nonZero, []);
  const long = buildLoopConfig(3, { fileName: new Uint8Array(100).fill(0x61) });
  assertEquals(long[8 + 56 + 62], 0x61);
  assertEquals(long[8 + 56 + 63], 0, "lo_file_name must stay NUL-terminated");
});

Deno.test("overlay errors on older kernels name the missing feature (data-only layers, verity=)", () => {
  const einval = () =>
    new KernelError("fsconfig", 22, "EINVAL", "fsconfig(create) failed: EINVAL (errno 22)");
  assertMatch(
    explainOverlayCreateError(einval(), true, [6, 1]).message,
    /data-only lower layer .* Linux 6\.5\+/,
  );
  // a new enough kernel, or the fd form, keeps the kernel's own error
  assertEquals(explainOverlayCreateError(einval(), true, [6, 5]).message, einval().message);
  assertEquals(explainOverlayCreateError(einval(), false, [5, 15]).message, einval().message);
  assertMatch(
    explainOverlayOptionError("verity", "require", einval()).message,
    /verity=require \(needs Linux 6\.6\+\)/,
  );
  assertMatch(
    explainOverlayOptionError("metacopy", "on", einval()).message,
    /refused metacopy=on, which composefs needs/,
  );
  const eperm = new KernelError("fsconfig", 1, "EPERM");
  assertEquals(explainOverlayOptionError("verity", "require", eperm), eperm);
});

Deno.test("mount.composefs option parsing (C-compatible, mount(8) argument order)", () => {
  const a = parseMountComposefsArgs(["img", "/mnt", "-o", "basedir=/a:/b,digest=ab,verity,ro", "-v"]);
  assertEquals([a.image, a.mountpoint, a.basedirs, a.digest, a.verity, a.readOnly, a.verbose], [
    "img",
    "/mnt",
    ["/a", "/b"],
    "ab",
    true,
    true,
    true,
  ]);
  const b = parseMountComposefsArgs(["-obasedir=/o,upperdir=/u,workdir=/w,ro,rw", "img", "mnt"]);
  assertEquals([b.upperdir, b.workdir, b.readOnly], ["/u", "/w", false]);
  const thrown = (args: string[]) => {
    try {
      parseMountComposefsArgs(args);
    } catch (e) {
      assert(e instanceof UsageError);
      return e.message;
    }
    throw new Error("no error");
  };
  assertMatch(thrown(["img", "mnt"]), /basedir=DIR is required/);
  assertMatch(thrown(["img", "mnt", "-o", "basedir=/o,bogus"]), /unsupported option "bogus"/);
  assertEquals(parseMountComposefsArgs(["-s", "img", "mnt", "-o", "basedir=/o,bogus"]).basedirs, ["/o"]);
  assertMatch(thrown(["img", "mnt", "-o", "basedir=/o,upperdir=/u"]), /together/);
  assertMatch(thrown(["img", "-o", "basedir=/o"]), /expected IMAGE and MOUNTPOINT/);
});

Deno.test({
  name: "mount: read-only composefs mount reproduces the source tree (fd layers, string layers, loop device)",
  ignore: !isRoot,
  async fn() {
    await using f = await fixture();
    const variants: { layerMode: "fd" | "string"; forceLoop: boolean }[] = [
      { layerMode: "fd", forceLoop: false },
      { layerMode: "string", forceLoop: false },
      { layerMode: "fd", forceLoop: true },
      { layerMode: "string", forceLoop: true },
    ];
    for (const v of variants) {
      const before = await leftovers();
      const r = await mountComposefs({
        imagePath: f.image,
        objectsDir: f.objects,
        mountpoint: f.mnt,
        name: "test-image",
        verity: "none",
        ...v,
      });
      try {
        assertEquals(r.layerMode, v.layerMode);
        assertEquals(r.loopDevice !== undefined, v.forceLoop);
        const line = mountinfoLine(f.mnt)!;
        assertMatch(line, / - overlay composefs:test-image ro,/, line);
        assert(line.split(" ")[5].split(",").includes("ro"), `mount options not ro: ${line}`);
        if (r.loopDevice) {
          const loops = await sh("losetup", ["-a"]);
          assert(loops.includes(r.loopDevice) && loops.includes(f.image), `loop device not listed: ${loops}`);
        }
        const got = await snapshot(f.mnt);
        assertEquals(got.entries, f.expected.entries);
        assertEquals(got.xattrs, f.expected.xattrs);
        assertWriteFails(f.mnt);
      } finally {
        unmountComposefs(f.mnt);
      }
      assertEquals(await leftovers(), before, `after unmount (${JSON.stringify(v)})`);
    }
  },
});

Deno.test({
  name: "mount: upperdir/workdir read-write: writes land in the upper dir, objects untouched",
  ignore: !isRoot,
  async fn() {
    await using f = await fixture();
    const upper = `${f.dir}/upper`, work = `${f.dir}/work`;
    Deno.mkdirSync(upper);
    Deno.mkdirSync(work);
    const objectsBefore = await objectsDigest(f.objects);
    const victim = { fd: "sub/nested.dat", string: "sub/deeper/tiny" };
    for (const layerMode of ["fd", "string"] as const) {
      await mountComposefs({
        imagePath: f.image,
        objectsDir: f.objects,
        mountpoint: f.mnt,
        verity: "none",
        upperdir: upper,
        workdir: work,
        readWrite: true,
        layerMode,
      });
      try {
        assertMatch(mountinfoLine(f.mnt)!, / - overlay composefs rw,/);
        Deno.writeTextFileSync(`${f.mnt}/new-${layerMode}`, "new file");
        const big = Deno.openSync(`${f.mnt}/big.bin`, { write: true });
        big.writeSync(new TextEncoder().encode(`changed by ${layerMode}`));
        big.close();
        Deno.removeSync(`${f.mnt}/${victim[layerMode]}`);
      } finally {
        unmountComposefs(f.mnt);
      }
      assertEquals(Deno.readTextFileSync(`${upper}/new-${layerMode}`), "new file");
      const copied = Deno.readFileSync(`${upper}/big.bin`);
      assertEquals(
        new TextDecoder().decode(copied.subarray(0, 9 + layerMode.length + 2)),
        `changed by ${layerMode}`,
      );
      assertEquals(copied.length, 300_000);
      assert(Deno.lstatSync(`${upper}/${victim[layerMode]}`).isCharDevice, "whiteout expected in upper dir");
    }
    assertEquals(await objectsDigest(f.objects), objectsBefore, "objects dir changed");
    // Read-only again without the upper dir: the image is as it was.
    await mountComposefs({ imagePath: f.image, objectsDir: f.objects, mountpoint: f.mnt, verity: "none" });
    try {
      assertEquals((await snapshot(f.mnt)).entries, f.expected.entries);
    } finally {
      unmountComposefs(f.mnt);
    }
  },
});

Deno.test({
  name: "mount.composefs personality: C options, digest=, upperdir/workdir, ro",
  ignore: !isRoot,
  async fn() {
    await using f = await fixture();
    const digest = (await sh("fsverity", ["digest", "--compact", f.image])).trim();
    Deno.mkdirSync(`${f.dir}/empty-objects`);
    let r = await runCli([
      f.image,
      f.mnt,
      "-o",
      `basedir=${f.dir}/empty-objects:${f.objects},digest=${digest}`,
    ], {
      invokedAs: "mount.composefs",
    });
    assertEquals(r.code, 0, r.stderr);
    try {
      assertMatch(mountinfoLine(f.mnt)!, / - overlay composefs ro,/);
      // digest checked in userspace here (no fs-verity in this kernel): said so on stderr
      assertMatch(r.stderr, /no fs-verity/);
      assertEquals((await snapshot(f.mnt)).entries, f.expected.entries);
    } finally {
      unmountComposefs(f.mnt);
    }
    const upper = `${f.dir}/u`, work = `${f.dir}/w`;
    Deno.mkdirSync(upper);
    Deno.mkdirSync(work);
    r = await runCli([f.image, f.mnt, "-o", `basedir=${f.objects},upperdir=${upper},workdir=${work},ro`], {
      invokedAs: "mount.composefs",
    });
    assertEquals(r.code, 0, r.stderr);
    try {
      // read-only mount (MOUNT_ATTR_RDONLY) over a writable overlay superblock, as composefs-rs does
      const line = mountinfoLine(f.mnt)!;
      assert(line.split(" ")[5].split(",").includes("ro"), line);
      assertMatch(line, / - overlay composefs rw,.*upperdir=/);
      assertWriteFails(f.mnt);
    } finally {
      unmountComposefs(f.mnt);
    }
    r = await runCli(["-o", `basedir=${f.objects},upperdir=${upper},workdir=${work}`, f.image, f.mnt], {
      invokedAs: "mount.composefs",
    });
    assertEquals(r.code, 0, r.stderr);
    try {
      Deno.writeTextFileSync(`${f.mnt}/written`, "rw");
    } finally {
      unmountComposefs(f.mnt);
    }
    assertEquals(Deno.readTextFileSync(`${upper}/written`), "rw");
    // the loop device path, forced through the environment
    const before = await leftovers();
    r = await runCli([f.image, f.mnt, "-v", "-o", `basedir=${f.objects}`], {
      invokedAs: "mount.composefs",
      env: { CFSCTL_MOUNT_FORCE_LOOP: "1", CFSCTL_MOUNT_LAYERS: "string" },
    });
    assertEquals(r.code, 0, r.stderr);
    try {
      assertMatch(r.stderr, /layers as string, through \/dev\/loop\d+/);
      assertEquals((await snapshot(f.mnt)).entries, f.expected.entries);
    } finally {
      unmountComposefs(f.mnt);
    }
    assertEquals(await leftovers(), before);
    // `verity`: overlay verity=require; without fs-verity on the objects (this kernel has none) every
    // external file read fails with EIO while inline files still read
    r = await runCli([f.image, f.mnt, "-o", `basedir=${f.objects},verity`], { invokedAs: "mount.composefs" });
    assertEquals(r.code, 0, r.stderr);
    try {
      assertMatch(mountinfoLine(f.mnt)!, /,verity=require/);
      assertEquals(Deno.readTextFileSync(`${f.mnt}/small.txt`), "hello\n");
      let code: string | undefined;
      try {
        Deno.readFileSync(`${f.mnt}/big.bin`);
      } catch (e) {
        code = (e as { code?: string }).code;
      }
      const verityAvailable = await hasFsVerity(f.objects);
      if (!verityAvailable) assertEquals(code, "EIO");
    } finally {
      unmountComposefs(f.mnt);
    }
    // wrong digest: refused, nothing mounted
    await assertNothingLeft("digest mismatch (CLI)", async () => {
      const bad = (digest[0] === "0" ? "1" : "0") + digest.slice(1);
      const r2 = await runCli([f.image, f.mnt, "-o", `basedir=${f.objects},digest=${bad}`], {
        invokedAs: "mount.composefs",
      });
      assertEquals(r2.code, 1);
      assertMatch(r2.stderr, new RegExp(`has fs-verity digest ${digest}, expected ${bad}`));
    });
  },
});

Deno.test({
  name: "mount -t composefs runs /sbin/mount.composefs (mount(8) helper protocol)",
  ignore: !isRoot,
  async fn() {
    const helper = "/sbin/mount.composefs";
    let existing = false;
    try {
      Deno.lstatSync(helper);
      existing = true;
    } catch { /* absent: we install a temporary one */ }
    if (existing) {
      console.log(`  skipped: ${helper} already exists and is not ours`);
      return;
    }
    await using f = await fixture();
    Deno.writeTextFileSync(
      helper,
      `#!/bin/sh\nCFSCTL_INVOKED_AS=mount.composefs exec ${DENO} run -A --no-check ${MAIN} "$@"\n`,
      { mode: 0o755 },
    );
    try {
      await sh("mount", ["-t", "composefs", f.image, f.mnt, "-o", `basedir=${f.objects}`]);
      try {
        assertMatch(mountinfoLine(f.mnt)!, / - overlay composefs ro,/);
        assertEquals((await snapshot(f.mnt)).entries, f.expected.entries);
      } finally {
        await sh("umount", [f.mnt]);
      }
    } finally {
      Deno.removeSync(helper);
    }
  },
});

Deno.test({
  name: "mount errors: typed, explained, and nothing left behind",
  ignore: !isRoot,
  async fn() {
    await using f = await fixture();
    const base: MountComposefsOptions = {
      imagePath: f.image,
      objectsDir: f.objects,
      mountpoint: f.mnt,
      verity: "none",
    };
    // warm up (libc symbols, lazily opened fds) so fd counts compare
    await mountComposefs(base);
    unmountComposefs(f.mnt);

    const expectError = (opts: Partial<MountComposefsOptions>, cls: new (...a: any[]) => Error, re: RegExp) =>
      assertNothingLeft(JSON.stringify(opts), async () => {
        const e = await assertRejects(() => mountComposefs({ ...base, ...opts }), cls);
        assertMatch(String((e as Error).message), re);
      });

    await expectError(
      { imagePath: `${f.dir}/no-such-image` },
      NotFoundError,
      /image .*no-such-image not found/,
    );
    await expectError({ imagePath: f.dir }, InvalidArgumentError, /is not a regular file/);
    await expectError({ mountpoint: `${f.dir}/no-such-dir` }, NotFoundError, /mountpoint .* does not exist/);
    await expectError({ mountpoint: f.image }, InvalidArgumentError, /mountpoint .* is not a directory/);
    await expectError(
      { objectsDir: `${f.dir}/no-objects` },
      NotFoundError,
      /objects directory .* does not exist/,
    );
    await expectError(
      { upperdir: f.dir },
      InvalidArgumentError,
      /upperdir and workdir must be given together/,
    );
    await expectError({ readWrite: true }, InvalidArgumentError, /read-write mount needs an upperdir/);

    // not EROFS: random bytes, an empty file, a short file
    const junk = `${f.dir}/junk.img`;
    Deno.writeFileSync(junk, crypto.getRandomValues(new Uint8Array(8192)));
    await expectError(
      { imagePath: junk },
      FormatError,
      /junk\.img is not an EROFS image: no EROFS superblock magic/,
    );
    Deno.writeFileSync(`${f.dir}/empty.img`, new Uint8Array());
    await expectError(
      { imagePath: `${f.dir}/empty.img` },
      FormatError,
      /not an EROFS image: the file is too short/,
    );

    // right magic, broken superblock: the kernel refuses with EINVAL (loop device path too)
    const broken = `${f.dir}/broken.img`;
    const bytes = Deno.readFileSync(f.image);
    bytes.fill(0xff, 1024 + 4, 1024 + 128);
    Deno.writeFileSync(broken, bytes);
    for (const forceLoop of [false, true]) {
      await assertNothingLeft(`broken superblock, loop ${forceLoop}`, async () => {
        const e = await assertRejects(
          () => mountComposefs({ ...base, imagePath: broken, forceLoop }),
          KernelError,
        );
        assertEquals((e as KernelError).errno, 22);
        assertMatch(e.message, /fsconfig\(create\) failed: EINVAL.*see dmesg/);
      });
    }

    // a digest the image does not have
    const actual = await fsverityDigestFile(f.image, "sha256");
    const wrong = await fsverityDigestFile(junk, "sha256");
    await expectError(
      { digest: wrong },
      IntegrityError,
      new RegExp(`digest ${actual.hex()}, expected ${wrong.hex()}`),
    );

    // overlay refuses the layers at create time (upper and work on different file systems),
    // in both layer modes: the temporary EROFS attachment of the string mode must be gone too
    const shm = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "cfsctl-work-" });
    try {
      const upper = `${f.dir}/upper`;
      Deno.mkdirSync(upper);
      for (const layerMode of ["fd", "string"] as const) {
        for (const forceLoop of [false, true]) {
          await assertNothingLeft(`overlay create failure (${layerMode}, loop ${forceLoop})`, async () => {
            const e = await assertRejects(
              () =>
                mountComposefs({
                  ...base,
                  upperdir: upper,
                  workdir: shm,
                  readWrite: true,
                  layerMode,
                  forceLoop,
                }),
              KernelError,
            );
            assertMatch(e.message, /fsconfig\(create\) failed: EINVAL .*see dmesg/);
          });
        }
      }
    } finally {
      await Deno.remove(shm, { recursive: true });
    }

    // a file system type the kernel does not have: named, with /proc/filesystems consulted
    const e = assertThrowsKernel(() => openFsContext("cfsnosuchfs", "testing"));
    assertMatch(
      e.message,
      /kernel does not support cfsnosuchfs file systems \(testing\): not in \/proc\/filesystems/,
    );
    // fs context log: the kernel's reason for a refused option ends up in the message
    const fd = openFsContext("overlay", "testing");
    try {
      const e2 = assertThrowsKernel(() => fsconfigSetString(fd, "redirect_dir", "bogus"));
      assertMatch(e2.message, /fsconfig\(redirect_dir=bogus\) failed: EINVAL .*kernel says: .*redirect_dir/);
    } finally {
      closeFd(fd);
    }
  },
});

function assertThrowsKernel(fn: () => unknown): KernelError {
  try {
    fn();
  } catch (e) {
    assert(e instanceof KernelError, `expected KernelError, got ${e}`);
    return e;
  }
  throw new Error("expected a KernelError");
}

Deno.test({
  name: "mount without CAP_SYS_ADMIN names the capability (CLI, capability dropped with setpriv)",
  ignore: !isRoot,
  async fn() {
    await using f = await fixture();
    const o = await new Deno.Command("setpriv", {
      args: [
        "--bounding-set",
        "-sys_admin",
        "--inh-caps",
        "-sys_admin",
        DENO,
        "run",
        "-A",
        "--no-check",
        MAIN,
        f.image,
        f.mnt,
        "-o",
        `basedir=${f.objects}`,
      ],
      env: { CFSCTL_INVOKED_AS: "mount.composefs" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(o.stderr);
    assertEquals(o.code, 1, stderr);
    assertMatch(stderr, /needs CAP_SYS_ADMIN \(run as root\)/);
    assert(!isMounted(f.mnt));
  },
});

// ---- images from our own writer, through a repository -------------------------------------------

function statOf(path: string, st: Deno.FileInfo): Stat {
  const ms = st.mtime!.getTime();
  return newStat({
    mode: st.mode! & 0o7777,
    uid: st.uid!,
    gid: st.gid!,
    mtimeSec: Math.floor(ms / 1000),
    mtimeNsec: (ms % 1000) * 1_000_000,
    xattrs: readXattrs(new TextEncoder().encode(path)),
  });
}

/** Reads a real directory into a composefs tree, storing files > 64 bytes with `store`. */
async function scanTree(src: string, store: (data: Uint8Array) => Promise<ObjectId>): Promise<Directory> {
  const byIno = new Map<number, Leaf>();
  const scanDir = async (path: string, dir: Directory) => {
    for (const e of Deno.readDirSync(path)) {
      const p = `${path}/${e.name}`;
      const st = Deno.lstatSync(p);
      let node: Inode;
      if (st.isDirectory) {
        node = newDirectory(statOf(p, st));
        await scanDir(p, node);
      } else if (st.nlink! > 1 && byIno.has(st.ino!)) {
        node = byIno.get(st.ino!)!;
      } else {
        const stat = statOf(p, st);
        const fmt = st.mode! & 0o170000;
        if (st.isFile) {
          const data = Deno.readFileSync(p);
          node = newLeaf(
            stat,
            data.length > INLINE_MAX
              ? { type: "external", id: await store(data), size: data.length }
              : { type: "inline", data },
          );
        } else if (st.isSymlink) node = newLeaf(stat, { type: "symlink", target: Deno.readLinkSync(p) });
        else if (fmt === 0o020000) node = newLeaf(stat, { type: "chardev", rdev: st.rdev! });
        else if (fmt === 0o060000) node = newLeaf(stat, { type: "blockdev", rdev: st.rdev! });
        else if (fmt === 0o010000) node = newLeaf(stat, { type: "fifo" });
        else node = newLeaf(stat, { type: "socket" });
        if (st.nlink! > 1) byIno.set(st.ino!, node);
      }
      // Tree names are byte strings.
      dir.entries.set(String.fromCharCode(...new TextEncoder().encode(e.name)), node);
    }
  };
  const root = newDirectory(statOf(src, Deno.lstatSync(src)));
  await scanDir(src, root);
  return root;
}

/** V2 images store whole seconds only (mtime_nsec is always 0, docs/erofs.md). */
function wholeSeconds(entries: Record<string, Entry>): Record<string, Entry> {
  return Object.fromEntries(
    Object.entries(entries).map(([p, e]) => [p, { ...e, mtime: Math.floor(e.mtime / 1000) * 1000 }]),
  );
}

Deno.test({
  name: "cfsctl mount: images of our writer (V0, V1, V2) from a repository reproduce the source tree",
  ignore: !isRoot,
  async fn() {
    await using f = await fixture();
    const repoPath = `${f.dir}/repo`;
    await Repository.init(repoPath, { algorithm: "fsverity-sha256-12", insecure: true });
    const ids: Record<number, string> = {};
    {
      using repo = await Repository.open(repoPath);
      const tree = await scanTree(f.src, (d) => repo.ensureObject(d));
      for (const version of [0, 1, 2] as const) {
        ids[version] = (await writeImage(repo, writeErofs(tree, { version }), `v${version}`)).hex();
      }
      // in-process library call, as `oci mount` will use it
      const r = await mountRepositoryImage(repo, ids[2], f.mnt);
      try {
        assertEquals(r.verity, "none"); // insecure repository, image without fs-verity
        assertMatch(mountinfoLine(f.mnt)!, new RegExp(` - overlay composefs:${ids[2]} ro,`));
        assertEquals((await snapshot(f.mnt)).entries, wholeSeconds(f.expected.entries));
      } finally {
        unmountComposefs(f.mnt);
      }
    }
    for (const version of [0, 1, 2]) {
      for (const name of [ids[version], `refs/v${version}`]) {
        const r = await runCli(["--repo", repoPath, "mount", name, f.mnt]);
        assertEquals(r.code, 0, r.stderr);
        try {
          assertMatch(
            mountinfoLine(f.mnt)!,
            new RegExp(` - overlay composefs:${name.replace("/", "\\/")} ro,`),
          );
          const got = await snapshot(f.mnt);
          const expected = version === 2 ? wholeSeconds(f.expected.entries) : f.expected.entries;
          assertEquals(got.entries, expected, `V${version} ${name}`);
          assertEquals(got.xattrs, f.expected.xattrs, `V${version} ${name}`);
          assertWriteFails(f.mnt);
        } finally {
          unmountComposefs(f.mnt);
        }
      }
    }
    // read-write with an upper dir
    const upper = `${f.dir}/upper`, work = `${f.dir}/work`;
    Deno.mkdirSync(upper);
    Deno.mkdirSync(work);
    let r = await runCli([
      "--repo",
      repoPath,
      "mount",
      "refs/v2",
      f.mnt,
      "--upperdir",
      upper,
      "--workdir",
      work,
      "--read-write",
    ]);
    assertEquals(r.code, 0, r.stderr);
    try {
      Deno.writeTextFileSync(`${f.mnt}/sub/added`, "upper");
    } finally {
      unmountComposefs(f.mnt);
    }
    assertEquals(Deno.readTextFileSync(`${upper}/sub/added`), "upper");
    // errors: usage, unknown image, an image whose content no longer matches its name
    r = await runCli(["--repo", repoPath, "mount", "refs/v2", f.mnt, "--read-write"]);
    assertEquals(r.code, 2);
    assertMatch(r.stderr, /--read-write requires --upperdir/);
    r = await runCli(["--repo", repoPath, "mount", "refs/nope", f.mnt]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /image refs\/nope not found/);
    const imagePath = Deno.realPathSync(`${repoPath}/images/${ids[1]}`);
    const bytes = Deno.readFileSync(imagePath);
    bytes[bytes.length - 1] ^= 1;
    Deno.chmodSync(imagePath, 0o644);
    Deno.writeFileSync(imagePath, bytes);
    await assertNothingLeft("tampered image", async () => {
      const r2 = await runCli(["--repo", repoPath, "mount", ids[1], f.mnt]);
      assertEquals(r2.code, 1);
      assertMatch(
        r2.stderr,
        new RegExp(`image ${ids[1]}: fs-verity digest is [0-9a-f]{64}, expected ${ids[1]}`),
      );
    });
  },
});
