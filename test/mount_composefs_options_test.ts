// mount.composefs options as mount(8) passes them (issue 13 item 7, issue 11 mount attributes):
// `-t composefs`, `tryverity`, `idmap=PATH` (MOUNT_ATTR_IDMAP on the EROFS layer, with a user
// namespace made here), and `nosuid,nodev,noexec` — each checked in /proc/self/mountinfo or by what the
// mount shows, against the real kernel.
import { assert, assertEquals, assertMatch, isRoot } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";

const mc = (args: string[]) => runCli(args, { invokedAs: "mount.composefs" });

function mountLine(mountpoint: string): string | null {
  const lines = Deno.readTextFileSync("/proc/self/mountinfo").split("\n");
  for (const line of lines.reverse()) if (line.split(" ")[4] === mountpoint) return line;
  return null;
}

async function umount(p: string) {
  await new Deno.Command("umount", { args: [p] }).output();
}

async function fixture(dir: string) {
  const src = `${dir}/src`;
  await Deno.mkdir(`${src}/usr`, { recursive: true });
  await Deno.writeTextFile(`${src}/usr/f`, "external content ".repeat(10));
  await Deno.chown(`${src}/usr/f`, 0, 0);
  const repo = `${dir}/repo`;
  assertEquals((await runCli(["--repo", repo, "init", "--insecure"])).code, 0);
  const r = await runCli(["--repo", repo, "create-image", src, "img"]);
  assertEquals(r.code, 0, r.stderr);
  const image = await Deno.realPath(`${repo}/images/refs/img`);
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  return { image, objects: `${repo}/objects`, mnt: await Deno.realPath(mnt) };
}

Deno.test("mount.composefs -t: composefs accepted (as mount(8) passes it), other types refused", async () => {
  await using t = await tempDir();
  const r = await mc(["-t", "ext4", "img", t.path, "-o", "basedir=/x"]);
  assertEquals(r.code, 2);
  assertMatch(r.stderr, /unsupported file system type "ext4"/);
  // -f: everything but the mount, so this part runs without root.
  const ok = await mc([
    "-f",
    "-t",
    "composefs",
    "img",
    t.path,
    "-o",
    "basedir=/x,tryverity,nosuid,nodev,noexec",
  ]);
  assertEquals(ok.code, 0, ok.stderr);
  const glued = await mc(["-f", "-tcomposefs", "img", t.path, "-o", "basedir=/x,idmap=/proc/self/ns/user"]);
  assertEquals(glued.code, 0, glued.stderr);
  assertMatch(
    (await mc(["-f", "img", t.path, "-o", "basedir=/x,idmap"])).stderr,
    /option idmap needs a value/,
  );
});

Deno.test({
  name: "mount.composefs -o nosuid,nodev,noexec and tryverity reach the kernel",
  ignore: !isRoot,
  fn: async () => {
    await using t = await tempDir();
    const { image, objects, mnt } = await fixture(t.path);
    const r = await mc(["-t", "composefs", image, mnt, "-o", `basedir=${objects},nosuid,nodev,noexec`]);
    assertEquals(r.code, 0, r.stderr);
    try {
      const line = mountLine(mnt)!;
      assertMatch(line.split(" ")[5], /^ro,nosuid,nodev,noexec\b/);
      assertEquals(await Deno.readTextFile(`${mnt}/usr/f`), "external content ".repeat(10));
    } finally {
      await umount(mnt);
    }
    // tryverity: verity=require where the kernel's overlayfs has the option (this one does), as C does.
    const tv = await mc([image, mnt, "-o", `basedir=${objects},tryverity`]);
    assertEquals(tv.code, 0, tv.stderr);
    try {
      const line = mountLine(mnt)!;
      assertMatch(line, / - overlay composefs .*verity=require/);
    } finally {
      await umount(mnt);
    }
    const plain = await mc([image, mnt, "-o", `basedir=${objects}`]);
    assertEquals(plain.code, 0, plain.stderr);
    try {
      assert(!/verity=/.test(mountLine(mnt)!), mountLine(mnt)!);
    } finally {
      await umount(mnt);
    }
  },
});

Deno.test({
  name: "mount.composefs -o idmap=/proc/PID/ns/user: ownership shown through the namespace's mapping",
  ignore: !isRoot,
  fn: async () => {
    await using t = await tempDir();
    const { image, objects, mnt } = await fixture(t.path);
    // A user namespace mapping 0 → 1000 (uid) and 0 → 2000 (gid), written by us as root.
    const ns = new Deno.Command("unshare", { args: ["--user", "sleep", "60"] }).spawn();
    try {
      for (let i = 0; i < 50; i++) {
        const self = await Deno.readLink(`/proc/self/ns/user`);
        const theirs = await Deno.readLink(`/proc/${ns.pid}/ns/user`).catch(() => self);
        if (theirs !== self) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await Deno.writeTextFile(`/proc/${ns.pid}/uid_map`, "0 1000 1\n");
      await Deno.writeTextFile(`/proc/${ns.pid}/gid_map`, "0 2000 1\n");
      for (const layers of ["fd", "string"]) {
        const r = await runCli([image, mnt, "-o", `basedir=${objects},idmap=/proc/${ns.pid}/ns/user`], {
          invokedAs: "mount.composefs",
          env: { CFSCTL_MOUNT_LAYERS: layers },
        });
        assertEquals(r.code, 0, r.stderr);
        try {
          const st = await Deno.stat(`${mnt}/usr/f`);
          assertEquals([st.uid, st.gid], [1000, 2000], `layers as ${layers}`);
          assertEquals(await Deno.readTextFile(`${mnt}/usr/f`), "external content ".repeat(10));
        } finally {
          await umount(mnt);
        }
      }
      const bad = await mc([image, mnt, "-o", `basedir=${objects},idmap=${t.path}/nope`]);
      assertEquals(bad.code, 2);
      assertMatch(bad.stderr, /idmap=.*nope: cannot open the user namespace/);
    } finally {
      ns.kill("SIGKILL");
      await ns.status;
    }
  },
});
