// Issue 12 item 8 and the mount attributes of issue 11: a mounted image keeps its objects through
// `oci untag` + `gc` (a mount ref under images/refs/mounts/, removed by `cfsctl unmount`, cleaned by
// fsck when the mount is gone), and `--nosuid --nodev --noexec` reach the kernel's mount flags.
import { assert, assertEquals, isRoot } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { addImage, tarDirectory } from "./helpers/oci_builder.ts";

async function cfs(repo: string, args: string[], code = 0) {
  const r = await runCli(["--repo", repo, ...args]);
  assertEquals(r.code, code, `cfsctl ${args.join(" ")}:\n${r.stderr}${r.stdout}`);
  return r;
}

async function objectCount(repo: string): Promise<number> {
  let n = 0;
  for await (const d of Deno.readDir(`${repo}/objects`)) {
    if (d.isDirectory) { for await (const _ of Deno.readDir(`${repo}/objects/${d.name}`)) n++; }
  }
  return n;
}

function mountOptions(mountpoint: string): string[] | null {
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n").reverse()) {
    const f = line.split(" ");
    if (f[4] === mountpoint) return f[5].split(",");
  }
  return null;
}

async function setup(dir: string) {
  const src = `${dir}/src`;
  await Deno.mkdir(`${src}/usr/bin`, { recursive: true });
  for (let i = 0; i < 40; i++) await Deno.writeTextFile(`${src}/usr/f${i}`, `content ${i}\n`.repeat(50));
  await Deno.copyFile("/bin/true", `${src}/usr/bin/true`);
  await Deno.chmod(`${src}/usr/bin/true`, 0o755);
  await addImage(`${dir}/layout`, {
    layers: [{ tar: await tarDirectory(src, { rootOwner: true }) }],
    tag: "t",
  });
  const repo = `${dir}/repo`;
  await cfs(repo, ["init", "--insecure"]);
  await cfs(repo, ["oci", "pull", `oci:${dir}/layout:t`, "img"]);
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  return { repo, mnt: await Deno.realPath(mnt) };
}

async function mountRefs(repo: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(`${repo}/images/refs/mounts`))).map((e) => e.name);
  } catch {
    return [];
  }
}

Deno.test({
  name: "a mounted image keeps its objects through untag + gc; unmount drops the ref, then gc collects",
  ignore: !isRoot,
  fn: async () => {
    await using t = await tempDir();
    const { repo, mnt } = await setup(t.path);
    const before = await objectCount(repo);
    let mid = 0;
    await cfs(repo, ["oci", "mount", "img", mnt]);
    try {
      const refs = await mountRefs(repo);
      assertEquals(refs.length, 1, "one mount ref per mount");
      assert(refs[0].endsWith(`@${mnt.replaceAll("/", "%2F")}`), refs[0]);
      await cfs(repo, ["oci", "untag", "img"]);
      await cfs(repo, ["gc"]);
      // The layer, config and manifest streams may go; the image and every object it references stay.
      mid = await objectCount(repo);
      assert(mid >= 41 && mid < before, `${mid} objects left of ${before}`);
      // Files never opened before the gc are still readable through the mount.
      for (let i = 0; i < 40; i++) {
        assertEquals(await Deno.readTextFile(`${mnt}/usr/f${i}`), `content ${i}\n`.repeat(50));
      }
      const fsck = JSON.parse((await cfs(repo, ["fsck", "--json"])).stdout);
      assertEquals([fsck.errors, fsck.stale_mount_refs_removed], [[], undefined]);
    } finally {
      await runCli(["--repo", repo, "unmount", mnt]);
    }
    assertEquals(mountOptions(mnt)?.includes("ro") ?? false, false, "unmounted");
    assertEquals(await mountRefs(repo), []);
    await cfs(repo, ["gc"]);
    assertEquals(await objectCount(repo), 0, `after unmount all ${mid} objects are collectable`);
  },
});

Deno.test({
  name: "a mount ref whose mount is gone (umount(8)) is removed by fsck and is no gc root",
  ignore: !isRoot,
  fn: async () => {
    await using t = await tempDir();
    const { repo, mnt } = await setup(t.path);
    const before = await objectCount(repo);
    await cfs(repo, ["oci", "mount", "img", mnt]);
    await cfs(repo, ["oci", "untag", "img"]);
    const u = await new Deno.Command("umount", { args: [mnt] }).output();
    assert(u.success);
    const [ref] = await mountRefs(repo);
    assert(ref !== undefined);
    const fsck = JSON.parse((await cfs(repo, ["fsck", "--json"])).stdout);
    assertEquals(fsck.stale_mount_refs_removed, [ref]);
    assertEquals(fsck.errors, []);
    assertEquals(await mountRefs(repo), []);
    // Another stale one, this time left for gc: it is not a root and goes with the image.
    await cfs(repo, [
      "mount",
      (await Array.fromAsync(Deno.readDir(`${repo}/images`))).find((e) => e.isSymlink)!.name,
      mnt,
    ]);
    assert((await new Deno.Command("umount", { args: [mnt] }).output()).success);
    assertEquals((await mountRefs(repo)).length, 1);
    await cfs(repo, ["gc"]);
    assertEquals(await mountRefs(repo), []);
    assert((await objectCount(repo)) < before);
  },
});

Deno.test({
  name: "oci mount and mount: --nosuid --nodev --noexec become mount flags (and execution fails)",
  ignore: !isRoot,
  fn: async () => {
    await using t = await tempDir();
    const { repo, mnt } = await setup(t.path);
    await cfs(repo, ["oci", "mount", "img", mnt]);
    try {
      const opts = mountOptions(mnt)!;
      assert(!opts.includes("noexec") && !opts.includes("nosuid"), opts.join(","));
      const ok = await new Deno.Command(`${mnt}/usr/bin/true`).output();
      assert(ok.success, "executable without --noexec");
    } finally {
      await runCli(["--repo", repo, "unmount", mnt]);
    }
    await cfs(repo, ["oci", "mount", "img", mnt, "--nosuid", "--nodev", "--noexec"]);
    try {
      const opts = mountOptions(mnt)!;
      for (const o of ["ro", "nosuid", "nodev", "noexec"]) {
        assert(opts.includes(o), `${o} in ${opts.join(",")}`);
      }
      let refused = false;
      try {
        await new Deno.Command(`${mnt}/usr/bin/true`).output();
      } catch (e) {
        refused = e instanceof Deno.errors.PermissionDenied;
      }
      assert(refused, "execution must fail on a noexec mount");
    } finally {
      await runCli(["--repo", repo, "unmount", mnt]);
    }
    const id = (await Array.fromAsync(Deno.readDir(`${repo}/images`))).find((e) => e.isSymlink)!.name;
    await cfs(repo, ["mount", id, mnt, "--noexec"]);
    try {
      const opts = mountOptions(mnt)!;
      assert(opts.includes("noexec") && !opts.includes("nodev"), opts.join(","));
    } finally {
      await runCli(["--repo", repo, "unmount", mnt]);
    }
  },
});
