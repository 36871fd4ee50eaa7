// mkcomposefs --digest-store of a real directory, checked by the kernel: the image is mounted (EROFS
// from the image file + overlayfs with the digest store as a data-only lower layer) and the mounted
// tree must equal the source in every property a scan sees: path, type, mode, owner, size, content
// (fs-verity digest), symlink target, xattrs, hard-link grouping and nanosecond mtimes.
// The source is part of /usr/share/doc plus crafted entries that exercise the writer's odd corners.
import { assert, assertEquals, isRoot } from "./helpers/assert.ts";
import { runCli } from "./helpers/cli.ts";
import { flattenTree } from "./helpers/tree_compare.ts";
import { scanDirectory } from "../lib/tree/scan.ts";
import { mountComposefs } from "../lib/mount/composefs.ts";
import { unmountComposefs } from "../lib/mount/unmount.ts";

/** Bytes of /usr/share/doc copied (whole top-level directories, in name order, up to this much). */
const DOC_BUDGET = 24 << 20;

async function sh(cmd: string, args: string[]): Promise<void> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (o.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
}

function treeBytes(path: string): number {
  let n = 0;
  const st = Deno.lstatSync(path);
  if (!st.isDirectory) return st.size;
  for (const e of Deno.readDirSync(path)) n += treeBytes(`${path}/${e.name}`);
  return n;
}

/** Copies whole top-level entries of /usr/share/doc (name order) until the budget is used. */
async function copyDocs(dst: string): Promise<number> {
  const src = "/usr/share/doc";
  let names: string[];
  try {
    names = [...Deno.readDirSync(src)].map((e) => e.name).sort();
  } catch {
    return 0; // minimal host: the crafted entries alone
  }
  let used = 0;
  const pick: string[] = [];
  for (const n of names) {
    const size = treeBytes(`${src}/${n}`);
    if (used + size > DOC_BUDGET) continue;
    used += size;
    pick.push(`${src}/${n}`);
  }
  await Deno.mkdir(dst);
  if (pick.length > 0) await sh("cp", ["-a", ...pick, dst + "/"]);
  return pick.length;
}

const enc = new TextEncoder();

/** Entries that exercise the writer: every file type, modes, owners, xattrs, hard links, sizes. */
async function craft(d: string): Promise<void> {
  const file = async (p: string, data: Uint8Array | string, mode = 0o644) => {
    await Deno.writeFile(`${d}/${p}`, typeof data === "string" ? enc.encode(data) : data);
    await Deno.chmod(`${d}/${p}`, mode);
  };
  await Deno.mkdir(`${d}/sub/deeper`, { recursive: true });
  await file("empty", "");
  await file("exactly-64", "6".repeat(64)); // largest inline file
  await file("exactly-65", "5".repeat(65)); // smallest external file
  await file("one-byte", "x");
  const big = new Uint8Array((1 << 20) + 1).map((_, i) => (i * 7 + (i >> 12)) & 0xff);
  await file("big-1MiB+1", big);
  await file(
    "setuid",
    "#!/bin/sh\necho setuid: long enough to be stored in the digest store .....\n",
    0o4755,
  );
  await file("setgid", "setgid\n", 0o2711);
  await file("mode-000", "nobody may read this (but root), and it is long enough to be external\n", 0o000);
  await file("mode-7777", "all bits\n", 0o7777);
  await Deno.mkdir(`${d}/sticky`);
  await Deno.chmod(`${d}/sticky`, 0o1777);
  await Deno.mkdir(`${d}/dir-000`);
  await file("dir-000/inside", "a file inside a mode 000 directory\n");
  await Deno.chmod(`${d}/dir-000`, 0o000);
  await file("owned", "owned by someone else, long enough to be an external object in the store\n");
  await Deno.chown(`${d}/owned`, 1234, 5678);
  await file("big-ids", "ids above 65535 need the extended inode\n");
  await Deno.chown(`${d}/big-ids`, 100000, 4000000000);
  await file("name with spaces\nand a newline", "odd name\n");
  await file("dup-content-a", "the same content twice: one object in the store, two inodes in the image\n");
  await file("dup-content-b", "the same content twice: one object in the store, two inodes in the image\n");

  // Hard links: an external and an inline group, across directories, and a lone nlink-1 file.
  await file("hard-ext", "hard-linked content, stored once, long enough to be an external object\n");
  await Deno.link(`${d}/hard-ext`, `${d}/hard-ext-2`);
  await Deno.link(`${d}/hard-ext`, `${d}/sub/deeper/hard-ext-3`);
  await file("sub/hard-inline", "tiny\n", 0o600);
  await Deno.link(`${d}/sub/hard-inline`, `${d}/hard-inline-2`);
  await Deno.symlink("target-of-a-hard-linked-symlink", `${d}/hard-symlink`);
  await sh("ln", ["-P", `${d}/hard-symlink`, `${d}/sub/hard-symlink-2`]);

  // Symlinks: relative, absolute, dangling, to a directory, long target.
  await Deno.symlink("exactly-65", `${d}/link-rel`);
  await Deno.symlink("/etc/passwd", `${d}/link-abs`);
  await Deno.symlink("does/not/exist", `${d}/link-dangling`);
  await Deno.symlink("sub/deeper", `${d}/link-dir`);
  await Deno.symlink("t/".repeat(1000) + "end", `${d}/link-long`);

  // Special files.
  await sh("mkfifo", ["-m", "0640", `${d}/fifo`]);
  await sh("mknod", ["-m", "0600", `${d}/chardev`, "c", "1", "3"]);
  await sh("mknod", ["-m", "0660", `${d}/blockdev`, "b", "7", "200"]);
  // Deno removes its socket file on close: a second link keeps the socket inode.
  const sock = Deno.listen({ transport: "unix", path: `${d}/socket.tmp` });
  await Deno.link(`${d}/socket.tmp`, `${d}/socket`);
  sock.close();

  // xattrs: user.* and trusted.*, empty and binary values, one in the overlay namespace (escaped in
  // the image, shown unescaped by overlayfs), the same pair on many files (shared xattr table).
  await sh("setfattr", ["-n", "user.comment", "-v", "hello", `${d}/exactly-65`]);
  await sh("setfattr", ["-n", "user.empty", `${d}/exactly-65`]);
  await sh("setfattr", ["-n", "trusted.bin", "-v", "0sAAEC/f7/", `${d}/exactly-64`]);
  await sh("setfattr", ["-n", "trusted.overlay.custom", "-v", "kept", `${d}/one-byte`]);
  await sh("setfattr", ["-n", "user.dir", "-v", "on a directory", `${d}/sub`]);
  await sh("setfattr", ["-n", "user.on-link-target", "-v", "x", `${d}/hard-ext`]);
  for (const f of ["empty", "setuid", "owned", "sub/deeper", "hard-inline-2"]) {
    await sh("setfattr", ["-n", "user.shared", "-v", "one value on many inodes", `${d}/${f}`]);
  }
  // user.* is for regular files and directories only; trusted.* goes anywhere.
  for (const f of ["fifo", "chardev", "link-abs"]) {
    await sh("setfattr", ["-h", "-n", "trusted.special", "-v", "on a special file", `${d}/${f}`]);
  }
  await sh("setfattr", ["-n", "user.big", "-v", "v".repeat(3000), `${d}/one-byte`]);

  // mtimes with nanoseconds, one before 1970, one past 2038; directories last (entries change them).
  const touch = (p: string, when: string) => sh("touch", ["-h", "-d", when, `${d}/${p}`]);
  await touch("empty", "@1234567890.123456789");
  await touch("exactly-65", "@1700000000.000000001");
  await touch("one-byte", "@-86400.5");
  await touch("big-1MiB+1", "@4102444800.999999999");
  await touch("link-rel", "@1000000000.25");
  await touch("fifo", "@1600000000.7");
  await touch("sub/deeper", "@1500000000.111");
  await touch("sub", "@1500000001.222");
  await touch(".", "@1500000002.333");
}

Deno.test({
  name: "mkcomposefs --digest-store of a real tree: the kernel mounts exactly the source tree",
  ignore: !isRoot,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "cfsctl-mkcfs-kernel-" });
    const mnt = `${dir}/mnt`;
    let mounted = false;
    try {
      const src = `${dir}/src`;
      await Deno.mkdir(src);
      const copied = await copyDocs(`${src}/doc`);
      await craft(src);

      const img = `${dir}/image.cfs`, store = `${dir}/store`;
      const r = await runCli(["mkcomposefs", "--digest-store", store, "--hardlinks", src, img]);
      assertEquals(r.code, 0, r.stderr);
      const fsck = await new Deno.Command("fsck.erofs", { args: [img], stdout: "null", stderr: "piped" })
        .output();
      assertEquals(fsck.code, 0, new TextDecoder().decode(fsck.stderr));

      await Deno.mkdir(mnt);
      await mountComposefs({ imagePath: img, objectsDir: store, mountpoint: mnt, verity: "none" });
      mounted = true;

      const scan = async (p: string) =>
        flattenTree(await scanDirectory(p, { alg: "sha256", hardlinks: true }));
      const want = await scan(src);
      const got = await scan(mnt);
      assertEquals(got, want);

      // The comparison covered what it should: the copied docs, every crafted kind, the hard links.
      assert(copied > 0 || !Deno.statSync("/usr/share/doc").isDirectory, "some of /usr/share/doc copied");
      const text = want.join("\n");
      for (
        const kind of [" fifo ", " socket ", " chardev ", " blockdev ", " symlink ", " inline ", " external "]
      ) {
        assert(text.includes(kind), `source has${kind}`);
      }
      // hard-ext: 3 paths, hard-inline: 2, hard-symlink: 2 → 4 "hardlink" lines outside /doc.
      assertEquals(want.filter((l) => !l.startsWith('"/doc') && l.includes(" hardlink ")).length, 4);
      assert(text.includes('"trusted.overlay.custom"'), "overlay-namespace xattr round trip");
      assert(/ mtime=-\d/.test(text), "pre-1970 mtime");
      // Every external file's object is in the store under its digest.
      for (const l of want) {
        const m = / external sha256:([0-9a-f]{64}) /.exec(l);
        if (m) assert(Deno.statSync(`${store}/${m[1].slice(0, 2)}/${m[1].slice(2)}`).isFile, l);
      }
    } finally {
      if (mounted) unmountComposefs(mnt, { lazy: true });
      await sh("chmod", ["-R", "u+rwx", dir]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
