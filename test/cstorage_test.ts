// containers-storage: read natively (issue 16 item 1). Podman (Debian 12: 4.3) pulls a test image from
// an OCI layout into a fresh overlay store; `oci pull containers-storage:…` must then give the same
// manifest, config and composefs image ids as the `oci:` pull of the layout. On a loop-mounted xfs
// (reflink=1) holding store and repository, the objects must share their extents with the diff/
// files (FIEMAP, and `filefrag -v` as an independent reader); a diff/ file changed behind the
// store's back must be refused unless --storage-trust-diff-ids. Root only (loop mounts, podman).
import { assert, assertEquals, assertMatch, isRoot } from "./helpers/assert.ts";
import { initInsecureRepo, ociPullJson, runCli, tempDir } from "./helpers/cli.ts";
import { addImage, tarDirectory } from "./helpers/oci_builder.ts";
import { runTool } from "./helpers/process.ts";
import { parseTarSplitLine } from "../lib/oci/transport/containers_storage/tar_split.ts";
import { bigDataFileName } from "../lib/oci/transport/containers_storage/store.ts";
import { parseStorageReference } from "../lib/oci/transport/containers_storage/source.ts";
import { FIEMAP_EXTENT_SHARED, fileExtents } from "../lib/linux/file_extents.ts";
import { closeFd, O_RDONLY, openPath } from "../lib/linux/fs.ts";

async function sh(cmd: string, args: string[]): Promise<string> {
  return new TextDecoder().decode(await runTool(cmd, args));
}

async function hasTool(name: string): Promise<boolean> {
  try {
    await new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

Deno.test("containers-storage: reference, big-data names and tar-split records parse", () => {
  assertEquals(parseStorageReference("containers-storage:busybox"), {
    driver: undefined,
    root: undefined,
    image: "busybox",
  });
  assertEquals(parseStorageReference("containers-storage:[overlay@/s+/r:opt=1]localhost/a:b"), {
    driver: "overlay",
    root: "/s",
    image: "localhost/a:b",
  });
  assertEquals(parseStorageReference("containers-storage:[/s]sha256:ab"), {
    driver: undefined,
    root: "/s",
    image: "sha256:ab",
  });
  // containers/storage keeps lowercase/digit/dot keys as they are and base64s the rest.
  assertEquals(bigDataFileName("manifest"), "manifest");
  assertEquals(bigDataFileName("sha256:ab"), "=" + btoa("sha256:ab"));
  const seg = parseTarSplitLine('{"type":2,"payload":"aGk=","position":0}', "t");
  assertEquals(seg, { type: "segment", bytes: new TextEncoder().encode("hi") });
  assertEquals(parseTarSplitLine('{"type":2,"payload":null,"position":3}', "t"), null);
  const f = parseTarSplitLine(
    '{"type":1,"name":"./etc/motd","size":47,"payload":"cm6SNxa3TSo=","position":5}',
    "t",
  );
  assertEquals(f, { type: "file", name: new TextEncoder().encode("./etc/motd"), size: 47 });
  // name_raw (non-UTF-8 names) wins over the lossy name.
  const raw = parseTarSplitLine('{"type":1,"name":"a\\ufffd","name_raw":"Yf8=","size":0}', "t");
  assertEquals(raw, { type: "file", name: Uint8Array.of(0x61, 0xff), size: 0 });
  for (const bad of ['{"type":3}', '{"type":1,"size":-1,"name":"x"}', '{"type":2,"payload":"!!"}', "nope"]) {
    let threw = false;
    try {
      parseTarSplitLine(bad, "t");
    } catch (e) {
      threw = (e as Error).name === "FormatError";
    }
    assert(threw, `refused: ${bad}`);
  }
});

const canRun = isRoot && await hasTool("podman") && await hasTool("mkfs.xfs");

Deno.test({
  name: "containers-storage: podman's overlay store imported by reflink, same ids as oci:, tamper refused",
  ignore: !canRun,
  sanitizeResources: false,
  fn: async (t) => {
    await using tmp = await tempDir("cfsctl-cstorage-");
    const mnt = `${tmp.path}/xfs`;
    await Deno.mkdir(mnt);
    await sh("truncate", ["-s", "1G", `${tmp.path}/xfs.img`]);
    await sh("mkfs.xfs", ["-q", "-f", "-m", "reflink=1", `${tmp.path}/xfs.img`]);
    await sh("mount", ["-o", "loop", `${tmp.path}/xfs.img`, mnt]);
    try {
      // Two layers: files of many sizes (inline ≤ 64 B, objects above), a hard link, a symlink,
      // a whiteout in the second layer.
      const l1 = `${tmp.path}/l1`;
      await Deno.mkdir(`${l1}/usr/bin`, { recursive: true });
      await Deno.mkdir(`${l1}/etc`, { recursive: true });
      // Over 4 MiB: its ranges are hashed on several import threads, and it does not fit a
      // batch's data buffer (the diff_id reads it again).
      const big = new Uint8Array(5 * 1024 * 1024 + 17).map((_, i) => (i * 7919) & 0xff);
      await Deno.writeFile(`${l1}/usr/bin/big`, big);
      await Deno.chmod(`${l1}/usr/bin/big`, 0o4755); // set-uid: never hard-linked into objects/
      for (const n of [1, 64, 65, 4096, 4097, 100000]) {
        await Deno.writeFile(`${l1}/etc/f${n}`, new Uint8Array(n).fill(n & 0xff));
      }
      await Deno.writeTextFile(`${l1}/etc/gone`, "x".repeat(200));
      await Deno.link(`${l1}/etc/f4096`, `${l1}/etc/hardlink`);
      await Deno.symlink("../usr/bin/big", `${l1}/etc/sym`);
      const l2 = `${tmp.path}/l2`;
      await Deno.mkdir(`${l2}/etc`, { recursive: true });
      await Deno.writeTextFile(`${l2}/etc/.wh.gone`, "");
      await Deno.writeTextFile(`${l2}/etc/new`, "second layer ".repeat(50));
      const layout = `${tmp.path}/layout`;
      const built = await addImage(layout, {
        tag: "v1",
        layers: [
          { tar: await tarDirectory(l1, { rootOwner: true }), compression: "gzip" },
          { tar: await tarDirectory(l2, { rootOwner: true }), compression: "zstd" },
        ],
      });

      const storage = `${mnt}/storage`;
      const podman = ["--root", storage, "--runroot", `${mnt}/run`, "--storage-driver", "overlay"];
      await sh("podman", [...podman, "pull", "-q", `oci:${layout}:v1`]);
      const imageId = built.configDigest.slice(7);
      // podman 4.3 names an oci: pull after the layout's path (tag "latest" whatever the ref said).
      const stored = JSON.parse(await Deno.readTextFile(`${storage}/overlay-images/images.json`));
      assertEquals(stored.map((i: { id: string }) => i.id), [imageId]);
      const imageName: string = stored[0].names[0];
      assertMatch(imageName, /^localhost\//);

      const pull = (repo: string, ref: string, ...flags: string[]) => ociPullJson(repo, ref, flags);
      const newRepo = (name: string) => initInsecureRepo(`${mnt}/${name}`);

      const ociRepo = await newRepo("repo-oci");
      const ref = await pull(ociRepo, `oci:${layout}:v1`);
      assertEquals(ref.code, 0, ref.stderr);

      await t.step("zerocopy import on xfs: same ids as the oci: pull, objects reflinked", async () => {
        const repo = await newRepo("repo-cs");
        const r = await pull(
          repo,
          `containers-storage:${imageName}`,
          "--local-fetch",
          "zerocopy",
          "--storage-root",
          storage,
        );
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.json.manifest, built.manifestDigest);
        assertEquals(r.json.config, built.configDigest);
        assertEquals(r.json.images, ref.json.images, "composefs image ids");
        assertEquals(r.json.manifest_verity, ref.json.manifest_verity);
        const lf = r.json.stats.local_fetch;
        // > 64-byte files: big, f65, f4096, f4097, f100000, gone (hardlink shares f4096), new
        assertEquals(lf.reflinked + lf.present, 7, JSON.stringify(lf));
        assertEquals(lf.copied, 0);
        assertEquals(lf.hardlinked, 0);

        // The object of usr/bin/big shares every extent with the diff/ file podman wrote.
        const diffBig = (await sh("find", [`${storage}/overlay`, "-path", "*/diff/usr/bin/big"])).trim();
        assert(diffBig, "diff/usr/bin/big in the store");
        const objs = (await sh("find", [`${repo}/objects`, "-type", "f", "-size", `${big.length}c`])).trim()
          .split("\n");
        assertEquals(objs.length, 1, "one object of big's size");
        const ext = (p: string) => {
          const fd = openPath(p, O_RDONLY);
          try {
            return fileExtents(fd);
          } finally {
            closeFd(fd);
          }
        };
        const a = ext(diffBig);
        const b = ext(objs[0]);
        assert(a.length > 0);
        assertEquals(
          b.map((e) => [e.logical, e.physical, e.length]),
          a.map((e) => [e.logical, e.physical, e.length]),
        );
        assert(b.every((e) => e.flags & FIEMAP_EXTENT_SHARED), "extents flagged shared");
        // Independently: filefrag (e2fsprogs) sees the same physical start and the shared flag.
        const ff = await sh("filefrag", ["-v", objs[0]]);
        assertMatch(ff, /shared/);
        const phys = (s: string) => /^\s*0:\s+\d+\.\.\s*\d+:\s+(\d+)\.\./m.exec(s)?.[1];
        assertEquals(phys(ff), phys(await sh("filefrag", ["-v", diffBig])));
        const fsck = await runCli(["--repo", repo, "fsck"]);
        assertEquals(fsck.code, 0, fsck.stdout + fsck.stderr);
        // Content reassembles to the original tars (the layer streams rebuild the diff_ids).
        const again = await pull(repo, `oci:${layout}:v1`);
        assertEquals(again.code, 0, again.stderr);
        assertEquals(again.json.stats.layers_skipped, 2);
      });

      await t.step("auto with the repository on another filesystem copies; zerocopy refuses", async () => {
        const other = `${tmp.path}/repo-ext`;
        assertEquals((await runCli(["--repo", other, "init", "--insecure"])).code, 0);
        const z = await pull(
          other,
          `containers-storage:${imageId}`,
          "--local-fetch",
          "zerocopy",
          "--storage-root",
          storage,
        );
        assertEquals(z.code, 2, z.stderr);
        assertMatch(z.stderr, /zerocopy: .* can be neither reflinked nor hard-linked/);
        const a = await pull(other, `containers-storage:${imageId}`, "--storage-root", storage);
        assertEquals(a.code, 0, a.stderr);
        assertEquals(a.json.images, ref.json.images);
        assert(a.json.stats.local_fetch.copied > 0, JSON.stringify(a.json.stats.local_fetch));
      });

      await t.step(
        "store and repository on one filesystem without reflinks: hard links where safe",
        async () => {
          // The temporary directory is not on the xfs (ext4 here, no reflinks).
          const extStorage = `${tmp.path}/ext-storage`;
          await sh("podman", [
            "--root",
            extStorage,
            "--runroot",
            `${tmp.path}/ext-run`,
            "--storage-driver",
            "overlay",
            "pull",
            "-q",
            `oci:${layout}:v1`,
          ]);
          const repo = `${tmp.path}/repo-hardlink`;
          assertEquals((await runCli(["--repo", repo, "init", "--insecure"])).code, 0);
          const r = await pull(repo, `containers-storage:${imageId}`, "--storage-root", extStorage);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(r.json.images, ref.json.images);
          const lf = r.json.stats.local_fetch;
          assertEquals(lf.reflinked, 0, JSON.stringify(lf));
          assertEquals(lf.copied, 1, "the set-uid file is copied: " + JSON.stringify(lf));
          assertEquals(lf.hardlinked + lf.present, 6, JSON.stringify(lf));
          const diffNew = (await sh("find", [`${extStorage}/overlay`, "-path", "*/diff/etc/new"])).trim();
          const diffBig = (await sh("find", [`${extStorage}/overlay`, "-path", "*/diff/usr/bin/big"])).trim();
          const ino = async (p: string) => (await Deno.stat(p)).ino;
          const inodes = new Set<number | null>();
          for (const line of (await sh("find", [`${repo}/objects`, "-type", "f"])).trim().split("\n")) {
            inodes.add(await ino(line));
          }
          assert(inodes.has(await ino(diffNew)), "etc/new's object is podman's inode");
          assert(!inodes.has(await ino(diffBig)), "the set-uid file's object is a copy");
        },
      );

      await t.step("a tampered diff/ file is refused unless --storage-trust-diff-ids", async () => {
        const diffF = (await sh("find", [`${storage}/overlay`, "-path", "*/diff/etc/f4097"])).trim();
        const data = await Deno.readFile(diffF);
        data[100] ^= 0xff; // same size: only the content hash can tell
        await Deno.writeFile(diffF, data);
        const repo = await newRepo("repo-tampered");
        const r = await pull(repo, `containers-storage:${imageId}`, "--storage-root", storage);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /diff_id mismatch/);
        assertMatch(r.stderr, /was a file in diff\/ changed/);
        const tags = await runCli(["--repo", repo, "oci", "images", "--json"]);
        assertEquals(JSON.parse(tags.stdout).images.length, 0, "nothing tagged");
        const trusted = await pull(
          repo,
          `containers-storage:${imageId}`,
          "--storage-root",
          storage,
          "--storage-trust-diff-ids",
        );
        assertEquals(trusted.code, 0, trusted.stderr);
        assert(
          JSON.stringify(trusted.json.images) !== JSON.stringify(ref.json.images),
          "the trusted import took the changed file",
        );
      });

      await t.step("a tar-split record cannot make the import read outside diff/", async () => {
        // The record for etc/f4097 now names escape/f4097, and diff/escape is a symlink to a
        // directory outside the store holding a file with f4097's original bytes: following it
        // would import a layer with a valid diff_id. openat2(RESOLVE_BENEATH) refuses.
        const { gunzipSync, gzipSync } = await import("node:zlib");
        const layersDir = `${storage}/overlay-layers`;
        let found = "";
        for await (const e of Deno.readDir(layersDir)) {
          if (!e.name.endsWith(".tar-split.gz")) continue;
          const text = new TextDecoder().decode(gunzipSync(await Deno.readFile(`${layersDir}/${e.name}`)));
          if (!text.includes('"name":"./etc/f4097"')) continue;
          found = e.name.replace(".tar-split.gz", "");
          await Deno.writeFile(
            `${layersDir}/${e.name}`,
            gzipSync(
              new TextEncoder().encode(text.replace('"name":"./etc/f4097"', '"name":"./escape/f4097"')),
            ),
          );
        }
        assert(found, "layer with etc/f4097");
        const outside = `${tmp.path}/outside`;
        await Deno.mkdir(outside);
        await Deno.writeFile(`${outside}/f4097`, new Uint8Array(4097).fill(4097 & 0xff));
        await Deno.symlink(outside, `${storage}/overlay/${found}/diff/escape`);
        const repo = await newRepo("repo-escape");
        const r = await pull(repo, `containers-storage:${imageId}`, "--storage-root", storage);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /escape\/f4097: cannot open the content of a layer file \(EXDEV\)/);
      });

      await t.step("missing image: zerocopy says so; unknown image in auto goes to skopeo", async () => {
        const repo = await newRepo("repo-missing");
        const z = await pull(
          repo,
          "containers-storage:no-such-image",
          "--local-fetch",
          "zerocopy",
          "--storage-root",
          storage,
        );
        assertEquals(z.code, 1, z.stderr);
        assertMatch(z.stderr, /no-such-image.* is not in containers-storage/);
        // auto: the store does not have it, so skopeo (which knows more stores) is asked: absent here.
        const a = await runCli([
          "--repo",
          repo,
          "oci",
          "pull",
          "--progress",
          "none",
          "--storage-root",
          storage,
          "containers-storage:no-such-image",
          "x",
        ], { env: { PATH: `${tmp.path}/no-such-bin` } });
        assertEquals(a.code, 2, a.stderr);
        assertMatch(a.stderr, /skopeo is not installed/);
      });

      await t.step("a vfs-driver store goes through the skopeo proxy, same ids", async () => {
        const vfs = `${tmp.path}/vfs`;
        await sh("podman", [
          "--root",
          vfs,
          "--runroot",
          `${tmp.path}/vfs-run`,
          "--storage-driver",
          "vfs",
          "pull",
          "-q",
          `oci:${layout}:v1`,
        ]);
        const repo = await newRepo("repo-vfs");
        const r = await pull(repo, `containers-storage:[vfs@${vfs}+${tmp.path}/vfs-run]${imageId}`);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.json.images, ref.json.images);
        assertEquals(r.json.stats.local_fetch, undefined, "not read natively");
        const z = await pull(
          repo,
          `containers-storage:[vfs@${vfs}+${tmp.path}/vfs-run]${imageId}`,
          "--local-fetch",
          "zerocopy",
        );
        assertEquals(z.code, 2, z.stderr);
        assertMatch(z.stderr, /storage driver vfs .* is not overlay/);
      });
    } finally {
      // podman bind-mounts each store's overlay/ onto itself: -R takes those too.
      await sh("umount", ["-R", mnt]).catch(async () =>
        await sh("umount", ["-l", "-R", mnt]).catch(() => {})
      );
      await sh("umount", [`${tmp.path}/ext-storage/overlay`]).catch(() => {});
    }
  },
});
