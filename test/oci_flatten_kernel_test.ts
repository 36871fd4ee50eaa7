// Independent check of layer flattening: the same layers extracted with GNU tar and merged by the
// kernel's overlayfs (OCI whiteouts turned into overlay whiteouts) must show the same tree as our
// composefs image of the pulled image, mounted by the kernel.
import { assertEquals, isRoot } from "./helpers/assert.ts";
import { runCli } from "./helpers/cli.ts";
import { addImage, tarDirectory } from "./helpers/oci_builder.ts";
import { flattenTree } from "./helpers/tree_compare.ts";
import { scanDirectory } from "../lib/tree/scan.ts";

async function sh(cmd: string, args: string[], cwd?: string): Promise<void> {
  const o = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (o.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
}

/** OCI whiteouts → overlayfs whiteouts in an extracted layer, keeping directory mtimes. */
async function convertWhiteouts(dir: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) await convertWhiteouts(p);
  }
  const st = await Deno.stat(dir);
  let changed = false;
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.startsWith(".wh.")) continue;
    changed = true;
    await Deno.remove(`${dir}/${e.name}`);
    if (e.name === ".wh..wh..opq") await sh("setfattr", ["-n", "trusted.overlay.opaque", "-v", "y", dir]);
    else await sh("mknod", [`${dir}/${e.name.slice(4)}`, "c", "0", "0"]);
  }
  if (changed) await Deno.utime(dir, st.atime!, st.mtime!);
}

Deno.test({
  name: "flatten: our mounted image equals GNU tar + kernel overlayfs of the same layers",
  ignore: !isRoot,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const mounts: string[] = [];
    try {
      // Three layers: base, changes with whiteouts/opaque/type changes, then more on top.
      const mk = async (p: string, text: string, mode = 0o644) => {
        await Deno.mkdir(p.slice(0, p.lastIndexOf("/")), { recursive: true });
        await Deno.writeTextFile(p, text);
        await Deno.chmod(p, mode);
      };
      const L = [`${dir}/s0`, `${dir}/s1`, `${dir}/s2`];
      await mk(
        `${L[0]}/usr/bin/a`,
        "binary a, long enough to be an external object in the image...\n",
        0o755,
      );
      await mk(`${L[0]}/usr/lib/libx.so`, "x".repeat(5000));
      await mk(`${L[0]}/etc/keep`, "keep\n");
      await mk(`${L[0]}/etc/drop`, "drop\n");
      await mk(`${L[0]}/srv/data/one`, "one\n");
      await mk(`${L[0]}/srv/data/deep/two`, "two\n");
      await mk(`${L[0]}/swap/file-to-dir`, "file\n");
      await Deno.mkdir(`${L[0]}/swap/dir-to-file/inner`, { recursive: true });
      await Deno.symlink("../usr/bin/a", `${L[0]}/etc/link`);
      await sh("setfattr", ["-n", "user.origin", "-v", "layer0", `${L[0]}/etc/keep`]);
      await mk(`${L[1]}/etc/.wh.drop`, "");
      await mk(`${L[1]}/srv/data/.wh..wh..opq`, "");
      await mk(`${L[1]}/srv/data/three`, "three, written in the same layer as the opaque marker\n");
      await mk(`${L[1]}/swap/file-to-dir/now`, "dir now\n");
      await mk(`${L[1]}/swap/dir-to-file`, "file now\n");
      await mk(
        `${L[1]}/usr/bin/b`,
        "binary b, also long enough to be stored outside the image ......\n",
        0o750,
      );
      await Deno.link(`${L[1]}/usr/bin/b`, `${L[1]}/usr/bin/b-again`);
      await mk(`${L[2]}/etc/keep`, "keep, version 2\n", 0o600);
      await mk(`${L[2]}/usr/bin/.wh.a`, "");
      await mk(`${L[2]}/srv/data/deep/four`, "four: re-creating a directory hidden by an opaque marker\n");
      const tars = [];
      for (const l of L) tars.push(await tarDirectory(l, { xattrs: true }));
      await addImage(`${dir}/layout`, {
        tag: "t",
        layers: tars.map((tar) => ({ tar, compression: "gzip" })),
      });

      // Our side: pull and mount.
      const repo = `${dir}/repo`;
      for (const args of [["init", "--insecure"], ["oci", "pull", `oci:${dir}/layout:t`, "img"]]) {
        const r = await runCli(["--repo", repo, ...args]);
        assertEquals(r.code, 0, r.stderr);
      }
      const ours = `${dir}/mnt-ours`;
      await Deno.mkdir(ours);
      const m = await runCli(["--repo", repo, "oci", "mount", "img", ours]);
      assertEquals(m.code, 0, m.stderr);
      mounts.push(ours);

      // Kernel side: extract each layer, convert whiteouts, overlay them.
      const lowers: string[] = [];
      for (let i = 0; i < tars.length; i++) {
        const x = `${dir}/x${i}`;
        await Deno.mkdir(x);
        await Deno.writeFile(`${dir}/l${i}.tar`, tars[i]);
        await sh("tar", [
          "-x",
          "-f",
          `${dir}/l${i}.tar`,
          "--xattrs",
          "--xattrs-include=*",
          "--same-owner",
          "-p",
          "-C",
          x,
        ]);
        await convertWhiteouts(x);
        lowers.unshift(x);
      }
      const theirs = `${dir}/mnt-overlay`;
      await Deno.mkdir(theirs);
      await sh("mount", ["-t", "overlay", "overlay", "-o", `ro,lowerdir=${lowers.join(":")}`, theirs]);
      mounts.push(theirs);

      const scan = async (p: string) =>
        flattenTree(await scanDirectory(p, { alg: "sha256", hardlinks: true })).filter((l) =>
          // The root takes /usr's metadata and /run is emptied by design (docs/image-root-metadata.md).
          !l.startsWith('"/" ') && !l.startsWith('"/run')
        );
      assertEquals(await scan(ours), await scan(theirs));
    } finally {
      for (const m of mounts.reverse()) await sh("umount", [m]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
