// Stands in for an initramfs: a chroot holding only the deno executable, the shared libraries `ldd`
// lists for it (no libcrypto, no /usr/share, no node_modules), the bundle, an empty /tmp, /proc and a
// test OCI layout. The whole main job must work in there.
import { assert, assertEquals, assertMatch, isRoot } from "./helpers/assert.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";

async function sh(cmd: string, args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (o.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  return new TextDecoder().decode(o.stdout);
}

async function copyInto(root: string, path: string): Promise<void> {
  const real = await Deno.realPath(path);
  await Deno.mkdir(`${root}${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
  await Deno.copyFile(real, `${root}${path}`);
  await Deno.chmod(`${root}${path}`, 0o755);
}

Deno.test({
  name:
    "minimal host: the bundle runs pull, images, compute-id, mkcomposefs, composefs-info, mount in a bare chroot",
  ignore: !isRoot,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "cfsctl-chroot-" });
    let procMounted = false;
    const mnt = "/mnt-img";
    let imgMounted = false;
    try {
      // The bundle: built by `deno task test` (CFSCTL_TEST_BUNDLE) or here.
      const bundle = `${PROJECT_ROOT}dist/cfsctl.js`;
      if (!Deno.env.get("CFSCTL_TEST_BUNDLE")) {
        await sh(Deno.execPath(), ["run", "-A", `${PROJECT_ROOT}scripts/build.ts`, "bundle"]);
      }
      await Deno.mkdir(`${root}/bin`, { recursive: true });
      await Deno.copyFile(Deno.execPath(), `${root}/bin/deno`);
      await Deno.chmod(`${root}/bin/deno`, 0o755);
      const libs = (await sh("ldd", [Deno.execPath()])).split("\n")
        .map((l) => /(\/\S+)/.exec(l)?.[1]).filter((p): p is string => !!p);
      assert(!libs.some((l) => l.includes("libcrypto")), "deno itself does not need libcrypto");
      for (const l of libs) await copyInto(root, l);
      await Deno.copyFile(bundle, `${root}/cfsctl.js`);
      for (const d of ["tmp", "proc", "image", mnt.slice(1)]) {
        await Deno.mkdir(`${root}/${d}`, { recursive: true });
      }
      await Deno.chmod(`${root}/tmp`, 0o1777);
      await sh("cp", ["-a", `${PROJECT_ROOT}examples/demo-image/.`, `${root}/image/`]);
      await Deno.writeTextFile(
        `${root}/tree.dump`,
        "/ 0 40755 2 0 0 0 0.0 - - -\n/hello 5 100644 1 0 0 0 0.0 - hello -\n",
      );
      await sh("mount", ["-t", "proc", "proc", `${root}/proc`]);
      procMounted = true;

      const inChroot = async (args: string[], env: Record<string, string> = {}) => {
        const o = await new Deno.Command("/usr/sbin/chroot", {
          args: [root, "/bin/deno", "run", "-A", "--no-config", "/cfsctl.js", ...args],
          env: { HOME: "/tmp", DENO_DIR: "/tmp/deno", PATH: "/bin", ...env },
          clearEnv: true,
          stdout: "piped",
          stderr: "piped",
        }).output();
        return {
          code: o.code,
          stdout: new TextDecoder().decode(o.stdout),
          stderr: new TextDecoder().decode(o.stderr),
        };
      };
      const ok = async (args: string[], env?: Record<string, string>) => {
        const r = await inChroot(args, env);
        assertEquals(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
        return r.stdout;
      };
      await ok(["--repo", "/repo", "init", "--insecure"]);
      assertMatch(
        await ok(["--repo", "/repo", "oci", "pull", "oci:/image:latest", "demo"]),
        /^tagged {3}demo$/m,
      );
      assertMatch(await ok(["--repo", "/repo", "oci", "images"]), /demo/);
      const id = (await ok(["--repo", "/repo", "oci", "compute-id", "demo"])).trim();
      assertMatch(id, /^[0-9a-f]{128}$/);
      assertMatch(
        await ok(["mkcomposefs", "--from-file", "--print-digest-only", "/tree.dump"]),
        /^[0-9a-f]{64}$/m,
      );
      await ok(["mkcomposefs", "--from-file", "/tree.dump", "/tmp/img.cfs"]);
      assertMatch(await ok(["composefs-info", "ls", "/tmp/img.cfs"]), /hello/);
      await ok(["--repo", "/repo", "oci", "mount", "demo", mnt]);
      imgMounted = true;
      assertEquals(
        await Deno.readTextFile(`${root}${mnt}/etc/motd`),
        "Welcome to the composefs demo image (layer 2 replaced this file).\n",
      );
    } finally {
      if (imgMounted) await sh("umount", [`${root}${mnt}`]).catch(() => {});
      if (procMounted) await sh("umount", [`${root}/proc`]).catch(() => {});
      await Deno.remove(root, { recursive: true });
    }
  },
});
