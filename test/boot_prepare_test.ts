// The OCI boot path: `oci pull --bootable` links boot images, `oci dump/compute-id --bootable` apply the
// transform, `oci mount --bootable` mounts the boot image, `oci prepare-boot` writes the BLS entry (or
// UKI) with the composefs karg and creates the deployment state; then setup-root boots that karg and
// the image's busybox shell runs in it. The initramfs case: a root holding only busybox-static, the
// deno executable with its libraries and the bundle, whose /init runs setup-root and chroots.
import { assert, assertEquals, assertMatch, isRoot } from "./helpers/assert.ts";
import { PROJECT_ROOT, runCli, tempDir } from "./helpers/cli.ts";
import { makeBootTree, makePe } from "./helpers/boot_fixtures.ts";
import { addImage, tarDirectory } from "./helpers/oci_builder.ts";
import { runTool } from "./helpers/process.ts";

const BUSYBOX = "/bin/busybox";
const haveBusybox = (() => {
  try {
    return Deno.statSync(BUSYBOX).isFile;
  } catch {
    return false;
  }
})();

function mountsUnder(dir: string): string[] {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").map((l) => l.split(" ")[4])
    .filter((mp) => mp && (mp === dir || mp.startsWith(dir + "/")));
}

/** A bootable OS image tree: the hand-made boot files plus a static busybox as /bin/sh. */
async function osTree(dir: string, ukiCmdline?: string): Promise<void> {
  await makeBootTree(dir, { ukiCmdline });
  await Deno.mkdir(`${dir}/bin`, { recursive: true });
  await Deno.copyFile(BUSYBOX, `${dir}/bin/busybox`);
  await Deno.chmod(`${dir}/bin/busybox`, 0o755);
  for (const t of ["sh", "cat", "touch", "echo", "ls"]) await Deno.symlink("busybox", `${dir}/bin/${t}`);
  await Deno.writeTextFile(`${dir}/etc/os-release`, 'PRETTY_NAME="Busybox Test OS"\n');
}

/** The OS tree without UKIs: its BLS entry is the first boot entry. */
async function blsOsTree(dir: string): Promise<void> {
  await osTree(dir);
  await Deno.remove(`${dir}/boot/EFI`, { recursive: true });
  await Deno.remove(`${dir}/usr/lib/modules/6.1.0/uki-6.1.0.efi`);
}

Deno.test({
  name:
    "oci pull --bootable, oci mount --bootable, oci prepare-boot (BLS) and setup-root of the written karg",
  ignore: !isRoot || !haveBusybox,
  fn: async () => {
    await using d = await tempDir();
    const tree = `${d.path}/tree`;
    await blsOsTree(tree);
    const layout = `${d.path}/layout`;
    await addImage(layout, { layers: [{ tar: await tarDirectory(tree), compression: "gzip" }], tag: "os" });
    const sysroot = `${d.path}/sysroot`;
    const repo = `${sysroot}/composefs`;
    assertEquals((await runCli(["--repo", repo, "init", "--insecure"])).code, 0);
    const pulled = await runCli(["--repo", repo, "oci", "pull", "--bootable", `oci:${layout}:os`, "os"]);
    assertEquals(pulled.code, 0, pulled.stderr);
    const bootHex = /^Boot image: ([0-9a-f]{128})$/m.exec(pulled.stdout)?.[1];
    assert(bootHex, pulled.stdout);
    // The same id from oci compute-id --bootable; the plain one differs.
    const cid = await runCli(["--repo", repo, "oci", "compute-id", "--bootable", "os"]);
    assertEquals(cid.stdout.trim(), bootHex);
    const plain = await runCli(["--repo", repo, "oci", "compute-id", "os"]);
    assert(plain.stdout.trim() !== bootHex);
    const inspect = JSON.parse((await runCli(["--repo", repo, "oci", "inspect", "os"])).stdout);
    assertEquals(inspect.composefs_boot_erofs, bootHex);
    const dump = await runCli(["--repo", repo, "oci", "dump", "--bootable", "os"]);
    assert(!/^\/boot\//m.test(dump.stdout) && /^\/boot /m.test(dump.stdout), "dump: /boot emptied");
    // A re-pull keeps the boot image.
    const again = await runCli(["--repo", repo, "oci", "pull", "--bootable", `oci:${layout}:os`, "os"]);
    assertEquals(/^Boot image: (\S+)$/m.exec(again.stdout)?.[1], bootHex);
    // oci mount --bootable mounts the boot image.
    const mnt = `${d.path}/mnt`;
    await Deno.mkdir(mnt);
    const m = await runCli(["--repo", repo, "oci", "mount", "--bootable", "os", mnt, "--json"]);
    assertEquals(m.code, 0, m.stderr);
    try {
      assertEquals([...Deno.readDirSync(`${mnt}/boot`)], []);
      assert(Deno.statSync(`${mnt}/bin/busybox`).isFile);
    } finally {
      await runTool("umount", [mnt]);
    }

    const karg = await runCli(["--repo", repo, "oci", "compute-karg", "os"]);
    assertEquals(karg.stdout.trim(), `composefs=?${bootHex}`);
    const bootdir = `${d.path}/boot`;
    const prep = await runCli([
      "--repo",
      repo,
      "oci",
      "prepare-boot",
      "os",
      "--bootdir",
      bootdir,
      "--entry-id",
      "myos",
      "--cmdline",
      "console=ttyS0",
      "--cmdline",
      "rw",
      "--json",
    ]);
    assertEquals(prep.code, 0, prep.stderr);
    const p = JSON.parse(prep.stdout);
    assertEquals(p.image_id, bootHex);
    assertEquals(p.files, ["myos/vmlinuz-6.1", "myos/initramfs-6.1.img", "loader/entries/myos.conf"]);
    const entry = await Deno.readTextFile(`${bootdir}/loader/entries/myos.conf`);
    assertEquals(
      entry,
      `title Test OS\nversion 6.1\nlinux /myos/vmlinuz-6.1\ninitrd /myos/initramfs-6.1.img\n` +
        `options quiet rw composefs=?${bootHex} console=ttyS0\n`,
    );
    assertEquals(await Deno.readTextFile(`${bootdir}/myos/vmlinuz-6.1`), "bls kernel\n".repeat(10));
    for (const s of ["var", "etc/upper", "etc/work"]) {
      assert(Deno.statSync(`${sysroot}/state/deploy/${bootHex}/${s}`).isDirectory, s);
    }

    // Boot it: the karg from the entry's options line.
    const options = /^options (.*)$/m.exec(entry)![1];
    const target = `${d.path}/newroot`;
    await Deno.mkdir(target);
    const sr = await runCli(["setup-root", "--sysroot", sysroot, "--cmdline", options, "--target", target]);
    assertEquals(sr.code, 0, sr.stderr);
    try {
      const o = await new Deno.Command("/usr/sbin/chroot", {
        args: [target, "/bin/sh", "-c", "cat /etc/os-release; touch /etc/x /var/y; ls /boot"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(o.code, 0, new TextDecoder().decode(o.stderr));
      assertMatch(new TextDecoder().decode(o.stdout), /Busybox Test OS/);
      assert(Deno.statSync(`${sysroot}/state/deploy/${bootHex}/etc/upper/x`).isFile);
      assert(Deno.statSync(`${sysroot}/state/deploy/${bootHex}/var/y`).isFile);
    } finally {
      await runTool("umount", ["-R", target]);
    }
  },
});

Deno.test({
  name: "oci prepare-boot with a UKI: copied when its .cmdline names the image, refused otherwise",
  ignore: !isRoot || !haveBusybox,
  fn: async () => {
    await using d = await tempDir();
    const sysroot = `${d.path}/sysroot`;
    const repo = `${sysroot}/composefs`;
    assertEquals((await runCli(["--repo", repo, "init", "--insecure"])).code, 0);
    // First a UKI that names some other image: refused with the karg it should carry.
    const tree = `${d.path}/tree`;
    await osTree(tree, "quiet composefs=?" + "0".repeat(128));
    await Deno.remove(`${tree}/boot/loader`, { recursive: true });
    const layout = `${d.path}/layout`;
    await addImage(layout, { layers: [{ tar: await tarDirectory(tree) }], tag: "uki" });
    assertEquals((await runCli(["--repo", repo, "oci", "pull", `oci:${layout}:uki`, "uki"])).code, 0);
    const bad = await runCli(["--repo", repo, "oci", "prepare-boot", "uki", "--bootdir", `${d.path}/boot`]);
    assertEquals(bad.code, 1);
    assertMatch(
      bad.stderr,
      /UKI \/boot\/EFI\/Linux\/test\.efi: its \.cmdline names composefs=\?0+, but this image is [0-9a-f]{128}/,
    );
    const cli = await runCli([
      "--repo",
      repo,
      "oci",
      "prepare-boot",
      "uki",
      "--cmdline",
      "rw",
      "--bootdir",
      `${d.path}/boot`,
    ]);
    assertEquals(cli.code, 2);
    assertMatch(cli.stderr, /--cmdline cannot be added to a UKI/);
    // The UKI's own karg can only name the image if /boot (where it lives) is emptied in that image: it is.
    const hex = /this image is ([0-9a-f]{128})/.exec(bad.stderr)![1];
    await Deno.writeFile(`${tree}/boot/EFI/Linux/test.efi`, makePe(`quiet composefs=?${hex}`));
    await addImage(layout, { layers: [{ tar: await tarDirectory(tree) }], tag: "uki2" });
    assertEquals((await runCli(["--repo", repo, "oci", "pull", `oci:${layout}:uki2`, "uki2"])).code, 0);
    const ok = await runCli([
      "--repo",
      repo,
      "oci",
      "prepare-boot",
      "uki2",
      "--bootdir",
      `${d.path}/boot`,
      "--entry-id",
      "os1",
    ]);
    assertEquals(ok.code, 0, ok.stderr);
    assertMatch(ok.stdout, new RegExp(`^image    ${hex}$`, "m"));
    assertEquals(await Deno.readFile(`${d.path}/boot/EFI/Linux/os1.efi`), makePe(`quiet composefs=?${hex}`));
  },
});

Deno.test({
  name:
    "initramfs: only busybox-static, deno + its libraries and the bundle; /init runs setup-root and chroots",
  ignore: !isRoot || !haveBusybox,
  fn: async () => {
    await using d = await tempDir();
    // The OS image, pulled --bootable and prepared into the sysroot.
    const tree = `${d.path}/tree`;
    await blsOsTree(tree);
    const layout = `${d.path}/layout`;
    await addImage(layout, { layers: [{ tar: await tarDirectory(tree) }], tag: "os" });
    const initramfs = `${d.path}/initramfs`;
    const sysroot = `${initramfs}/sysroot`;
    const repo = `${sysroot}/composefs`;
    assertEquals((await runCli(["--repo", repo, "init", "--insecure"])).code, 0);
    assertEquals((await runCli(["--repo", repo, "oci", "pull", `oci:${layout}:os`, "os"])).code, 0);
    const prep = await runCli([
      "--repo",
      repo,
      "oci",
      "prepare-boot",
      "os",
      "--bootdir",
      `${d.path}/esp`,
      "--json",
    ]);
    assertEquals(prep.code, 0, prep.stderr);
    const { karg } = JSON.parse(prep.stdout);

    // The initramfs: busybox, deno, deno's libraries, the bundle, /init.
    for (const dir of ["bin", "proc", "tmp", "newroot"]) {
      await Deno.mkdir(`${initramfs}/${dir}`, { recursive: true });
    }
    await Deno.copyFile(BUSYBOX, `${initramfs}/bin/busybox`);
    await Deno.chmod(`${initramfs}/bin/busybox`, 0o755);
    for (const t of ["sh", "chroot", "mount", "echo", "cat"]) {
      await Deno.symlink("busybox", `${initramfs}/bin/${t}`);
    }
    await Deno.copyFile(Deno.execPath(), `${initramfs}/bin/deno`);
    await Deno.chmod(`${initramfs}/bin/deno`, 0o755);
    const ldd = new TextDecoder().decode(await runTool("ldd", [Deno.execPath()]));
    for (const lib of ldd.split("\n").map((l) => /(\/\S+)/.exec(l)?.[1]).filter((p): p is string => !!p)) {
      await Deno.mkdir(`${initramfs}${lib.slice(0, lib.lastIndexOf("/"))}`, { recursive: true });
      await Deno.copyFile(await Deno.realPath(lib), `${initramfs}${lib}`);
    }
    const bundle = Deno.env.get("CFSCTL_TEST_BUNDLE") ?? "dist/cfsctl.js";
    await Deno.copyFile(
      bundle.startsWith("/") ? bundle : `${PROJECT_ROOT}${bundle}`,
      `${initramfs}/cfsctl.js`,
    );
    // The karg comes from the (fake) kernel command line; setup-root mounts over /newroot, then the
    // init "switches root" with chroot and runs the booted system's shell.
    await Deno.writeTextFile(`${initramfs}/cmdline`, `BOOT_IMAGE=/vmlinuz quiet ${karg}\n`);
    await Deno.writeTextFile(
      `${initramfs}/init`,
      `#!/bin/sh
set -e
mount -t proc proc /proc
CFSCTL_INVOKED_AS=composefs-setup-root HOME=/tmp DENO_DIR=/tmp/deno \\
  /bin/deno run -A --no-config /cfsctl.js --cmdline "$(cat /cmdline)" --target /newroot
exec chroot /newroot /bin/sh -c 'cat /etc/os-release; touch /etc/booted /var/booted; echo booted'
`,
    );
    await Deno.chmod(`${initramfs}/init`, 0o755);
    try {
      const o = await new Deno.Command("/usr/sbin/chroot", {
        args: [initramfs, "/init"],
        env: { PATH: "/bin" },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(o.stdout);
      const err = new TextDecoder().decode(o.stderr);
      assertEquals(o.code, 0, err);
      assertMatch(out, /Busybox Test OS[\s\S]*booted\n$/);
      assertMatch(err, /composefs-setup-root: \/etc: overlay/);
      const hex = /[0-9a-f]{128}/.exec(karg)![0];
      assert(Deno.statSync(`${sysroot}/state/deploy/${hex}/etc/upper/booted`).isFile);
      assert(Deno.statSync(`${sysroot}/state/deploy/${hex}/var/booted`).isFile);
    } finally {
      await new Deno.Command("umount", { args: ["-R", "-l", `${initramfs}/newroot`] }).output();
      await new Deno.Command("umount", { args: ["-l", `${initramfs}/proc`] }).output();
    }
    assertEquals(mountsUnder(initramfs), []);
  },
});
