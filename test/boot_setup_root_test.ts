// setup-root end to end, as root: a repository under a temporary sysroot holds the bootable image of a
// real Debian minbase root (debootstrap, cached under /var/tmp/cfsctl-boot-rootfs); setup-root mounts
// it at a target, `chroot` runs the image's own /bin/sh, and writes to /etc and /var land in the
// deployment's state directories. Every configuration mount type, --root-fs, the composefs-setup-root
// personality, and each refusal (which must leave no mount behind).
import { assert, assertEquals, assertMatch, isRoot } from "./helpers/assert.ts";
import { runCli } from "./helpers/cli.ts";
import { debianRootfs } from "./helpers/boot_fixtures.ts";

const ignore = !isRoot;
if (ignore) console.error("SKIP: setup-root tests need root (mounts)");

function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp && (mp === dir || mp.startsWith(dir + "/"))) out.push(mp);
  }
  return out;
}

async function umountAll(dir: string): Promise<void> {
  if (mountsUnder(dir).length === 0) return;
  await new Deno.Command("umount", { args: ["-R", "-l", dir] }).output();
}

async function chrootSh(
  root: string,
  script: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const o = await new Deno.Command("/usr/sbin/chroot", {
    args: [root, "/bin/sh", "-c", script],
    env: { PATH: "/usr/bin:/bin:/usr/sbin:/sbin" },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: o.code,
    stdout: new TextDecoder().decode(o.stdout),
    stderr: new TextDecoder().decode(o.stderr),
  };
}

interface Fixture {
  base: string;
  sysroot: string;
  repo: string;
  hex: string;
  karg: string;
  state: string;
}

let fixture: Fixture | undefined;

async function setup(): Promise<Fixture> {
  if (fixture) return fixture;
  const rootfs = await debianRootfs();
  const base = await Deno.makeTempDir({ prefix: "cfsctl-setup-root-" });
  const sysroot = `${base}/sysroot`;
  const repo = `${sysroot}/composefs`;
  const init = await runCli(["--repo", repo, "init", "--insecure"]);
  assertEquals(init.code, 0, init.stderr);
  const created = await runCli(["--repo", repo, "create-image", "--bootable", rootfs, "debian", "--json"]);
  assertEquals(created.code, 0, created.stderr);
  const hex = JSON.parse(created.stdout).image_id;
  const k = await runCli(["--repo", repo, "compute-karg", rootfs]);
  assertEquals(k.code, 0, k.stderr);
  const karg = k.stdout.trim();
  assertEquals(karg, `composefs=?${hex}`, "an insecure repository's karg carries the ?");
  const state = `${sysroot}/state/deploy/${hex}`;
  await Deno.mkdir(`${state}/etc`, { recursive: true });
  await Deno.mkdir(`${state}/var`, { recursive: true });
  fixture = { base, sysroot, repo, hex, karg, state };
  return fixture;
}

async function freshTarget(f: Fixture, name: string): Promise<string> {
  const t = `${f.base}/${name}`;
  await umountAll(t);
  await Deno.remove(t, { recursive: true }).catch(() => {});
  await Deno.mkdir(t);
  return t;
}

async function resetState(f: Fixture): Promise<void> {
  await Deno.remove(f.state, { recursive: true });
  await Deno.mkdir(`${f.state}/etc`, { recursive: true });
  await Deno.mkdir(`${f.state}/var`, { recursive: true });
}

Deno.test({
  name:
    "setup-root: mounts the Debian image as root; the image's /bin/sh runs; /etc and /var writes land in state",
  ignore,
  fn: async () => {
    const f = await setup();
    await resetState(f);
    const target = await freshTarget(f, "newroot");
    try {
      const r = await runCli([
        "setup-root",
        "--sysroot",
        f.sysroot,
        "--cmdline",
        `BOOT_IMAGE=/vmlinuz root=UUID=1234 ro quiet ${f.karg}`,
        "--target",
        target,
        "--config",
        `${f.base}/no-such-config.toml`,
        "--json",
      ]);
      assertEquals(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assertEquals([j.image_id, j.etc, j.var, j.verity, j.digest_checked_by], [
        f.hex,
        "overlay",
        "bind",
        "none",
        "userspace",
      ]);
      assertMatch(r.stderr, /composefs-setup-root: root: composefs image [0-9a-f]{128} mounted read-only/);
      assertMatch(r.stderr, /composefs-setup-root: \/etc: overlay, changes in .*\/etc\/upper/);
      const mounts = mountsUnder(target);
      assertEquals(mounts.sort(), [target, `${target}/etc`, `${target}/sysroot`, `${target}/var`].sort());

      const sh = await chrootSh(target, "cat /etc/os-release; touch /etc/x /var/y; echo ok");
      assertEquals(sh.code, 0, sh.stderr);
      assertMatch(sh.stdout, /PRETTY_NAME="Debian GNU\/Linux 12 \(bookworm\)"/);
      assertMatch(sh.stdout, /ok\n$/);
      assert(Deno.statSync(`${f.state}/etc/upper/x`).isFile, "/etc/x is in the etc overlay's upper dir");
      assert(Deno.statSync(`${f.state}/var/y`).isFile, "/var/y is in the state var dir");
      // The root itself is read-only; /sysroot is the physical root.
      const ro = await chrootSh(target, "touch /usr/z");
      assert(ro.code !== 0 && /Read-only file system/.test(ro.stderr), ro.stderr);
      assert(Deno.lstatSync(`${target}/sysroot/composefs/images/${f.hex}`).isSymlink);
    } finally {
      await umountAll(target);
    }
    assertEquals(mountsUnder(target), []);
    // The image and its objects are unchanged.
    const fsck = await runCli(["--repo", f.repo, "fsck"]);
    assertEquals(fsck.code, 0, fsck.stdout + fsck.stderr);
    const again = await runCli(["--repo", f.repo, "compute-karg", await debianRootfs()]);
    assertEquals(again.stdout.trim(), f.karg);
  },
});

Deno.test({
  name: "setup-root: each configuration mount type (etc/var none, bind, overlay, transient; transient root)",
  ignore,
  fn: async () => {
    const f = await setup();
    const cases: { config: string; script: string; check: (sh: { code: number; stderr: string }) => void }[] =
      [
        {
          config: '[etc]\nmount = "none"\n[var]\nmount = "none"\n',
          script: "cat /usr/lib/os-release >/dev/null && touch /etc/x",
          check: (sh) => {
            assert(sh.code !== 0 && /Read-only file system/.test(sh.stderr), "no /etc overlay: read-only");
            assertEquals([...Deno.readDirSync(`${f.state}/etc`)].length, 0);
          },
        },
        {
          config: '[etc]\nmount = "bind"   # the state dir itself\n[var]\nmount = "overlay"\n',
          script: "touch /etc/x /var/y",
          check: (sh) => {
            assertEquals(sh.code, 0, sh.stderr);
            assert(Deno.statSync(`${f.state}/etc/x`).isFile, "etc bind");
            assert(Deno.statSync(`${f.state}/var/upper/y`).isFile, "var overlay upper");
          },
        },
        {
          config: "[etc]\ntransient = true\n[var]\nmount = 'transient'\n",
          script: "touch /etc/x /var/y && test -e /etc/os-release",
          check: (sh) => {
            assertEquals(sh.code, 0, sh.stderr);
            assertEquals([...Deno.readDirSync(`${f.state}/etc`)].length, 0, "nothing written to state");
            assertEquals([...Deno.readDirSync(`${f.state}/var`)].length, 0, "nothing written to state");
          },
        },
        {
          config: "[root]\ntransient = true\n",
          script: "touch /usr/z /etc/x && test -e /usr/z",
          check: (sh) => {
            assertEquals(sh.code, 0, sh.stderr);
            assert(Deno.statSync(`${f.state}/etc/upper/x`).isFile, "etc still the state overlay");
          },
        },
      ];
    for (const c of cases) {
      await resetState(f);
      const target = await freshTarget(f, "cfg");
      const config = `${f.base}/setup-root-conf.toml`;
      await Deno.writeTextFile(config, c.config);
      try {
        const r = await runCli([
          "setup-root",
          "--sysroot",
          f.sysroot,
          "--cmdline",
          f.karg,
          "--target",
          target,
          "--config",
          config,
        ]);
        assertEquals(r.code, 0, `${c.config}: ${r.stderr}`);
        c.check(await chrootSh(target, c.script));
      } finally {
        await umountAll(target);
      }
      assertEquals(mountsUnder(target), [], c.config);
      // Transient writes are gone with the mount.
      if (c.config.includes("transient")) assertEquals([...Deno.readDirSync(target)], []);
    }
  },
});

Deno.test({
  name:
    "setup-root refuses wrong, missing or unverifiable kargs, missing images or state, tampered images: no mount",
  ignore,
  fn: async () => {
    const f = await setup();
    await resetState(f);
    const other = "ab".repeat(64);
    // An image link whose name is not the file's digest (a tampered or substituted image).
    await Deno.symlink(await Deno.realPath(`${f.repo}/images/${f.hex}`), `${f.repo}/images/${other}`);
    const cases: [string, string[], RegExp][] = [
      ["no karg", ["--cmdline", "quiet ro"], /the kernel command line names no composefs image/],
      ["malformed karg", ["--cmdline", "composefs=xyz"], /malformed composefs argument.*composefs=xyz/],
      [
        "karg demands verity, repository insecure",
        ["--cmdline", `composefs=${f.hex}`],
        /requires fs-verity .*has no "\?" after "=".*not fs-verity protected/,
      ],
      [
        "image not in the repository",
        ["--cmdline", `composefs=?${"ef".repeat(64)}`],
        /image (ef)+ is not in the repository/,
      ],
      [
        "digest differs from the karg",
        ["--cmdline", `composefs=?${other}`],
        /does not match the kernel command line/,
      ],
      ["hash differs", ["--cmdline", `composefs=?${"01".repeat(32)}`], /names a sha256 image .* uses sha512/],
      ["no deployment state", ["--cmdline", f.karg], /deployment state .* does not exist/],
      [
        "no sysroot",
        ["--cmdline", f.karg, "--sysroot", `${f.base}/nowhere`],
        /sysroot .*nowhere is not a directory/,
      ],
    ];
    for (const [what, args, re] of cases) {
      const target = await freshTarget(f, "refused");
      if (what === "no deployment state") await Deno.rename(f.state, `${f.state}.away`);
      try {
        const r = await runCli(["setup-root", "--sysroot", f.sysroot, "--target", target, ...args]);
        assertEquals(r.code, 1, `${what}: ${r.stderr}`);
        assertMatch(r.stderr, re, what);
        assertMatch(r.stderr, /composefs-setup-root: nothing was mounted/, what);
        assertEquals(mountsUnder(target), [], `${what}: no mount left`);
        assertEquals(r.stdout, "");
      } finally {
        if (what === "no deployment state") await Deno.rename(`${f.state}.away`, f.state);
        await umountAll(target);
      }
    }
    await Deno.remove(`${f.repo}/images/${other}`);
  },
});

Deno.test({
  name: "composefs-setup-root personality and --root-fs (a directory as the root, for testing)",
  ignore,
  fn: async () => {
    const f = await setup();
    await resetState(f);
    const target = await freshTarget(f, "personality");
    try {
      const r = await runCli(
        [
          "--sysroot",
          f.sysroot,
          `--cmdline=${f.karg}`,
          "--target",
          target,
          "--root-fs",
          await debianRootfs(),
        ],
        { invokedAs: "composefs-setup-root" },
      );
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stderr, /root: bind mount of .*rootfs \(testing\)/);
      const sh = await chrootSh(target, "touch /etc/x && cat /etc/debian_version");
      assertEquals(sh.code, 0, sh.stderr);
      assertMatch(sh.stdout, /^12\./);
      assert(Deno.statSync(`${f.state}/etc/upper/x`).isFile);
    } finally {
      await umountAll(target);
    }
    const bad = await runCli(["--bogus"], { invokedAs: "composefs-setup-root" });
    assertEquals(bad.code, 2);
    assertMatch(bad.stderr, /unknown argument --bogus/);
    const help = await runCli(["--help"], { invokedAs: "composefs-setup-root" });
    assertEquals(help.code, 0);
    assertMatch(help.stderr, /Usage: composefs-setup-root/);
  },
});

Deno.test({
  name: "setup-root fixture cleanup",
  ignore,
  fn: async () => {
    if (!fixture) return;
    await umountAll(fixture.base);
    await Deno.remove(fixture.base, { recursive: true });
  },
});
