// scanDirectory on a real temporary directory, checked field by field against `stat`, `getfattr`
// and `fsverity digest` (independent tools).
import { assert, assertEquals, assertMatch, assertRejects, isRoot } from "./helpers/assert.ts";
import { tempDir } from "./helpers/cli.ts";
import { scanDirectory } from "../lib/tree/scan.ts";
import { type Directory, fileTypeBits, type Inode, type Leaf, lookup } from "../lib/tree/tree.ts";
import { walkTree } from "../lib/tree/walk.ts";
import { describeError, KernelError } from "../lib/errors.ts";
import { type HashAlgorithm, ObjectId } from "../lib/fsverity/object_id.ts";
import type { ObjectStore, ObjectWriter } from "../lib/objects/store.ts";
import { fsverityDigest } from "../lib/fsverity/hasher.ts";
import { bytesToBstr, concatBytes, toHex, utf8ToBstr } from "../lib/util/bytes.ts";

async function sh(cmd: string, ...args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", env: { TZ: "UTC" } })
    .output();
  if (!o.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  return new TextDecoder().decode(o.stdout);
}

/** What `stat` says about a path. */
async function statTool(path: string) {
  const [raw, uid, gid, size, maj, min, sec, date, time] =
    (await sh("stat", "-c", "%f %u %g %s %t %T %Y %y", path))
      .trim().split(" ");
  const mode = parseInt(raw, 16);
  return {
    type: mode & 0o170000,
    perm: mode & 0o7777,
    uid: Number(uid),
    gid: Number(gid),
    size: Number(size),
    major: parseInt(maj, 16),
    minor: parseInt(min, 16),
    sec: Number(sec),
    nsec: Number(time.split(".")[1] ?? 0),
    date,
  };
}

/** xattrs as `getfattr` dumps them (hex values). */
async function getfattr(path: string): Promise<Map<string, string>> {
  const out = await sh("getfattr", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", path);
  const m = new Map<string, string>();
  for (const line of out.split("\n")) {
    const eq = line.indexOf("=");
    if (line.startsWith("#") || eq < 0) continue;
    m.set(line.slice(0, eq), line.slice(eq + 1).replace(/^0x/, ""));
  }
  return m;
}

async function fsverityTool(path: string, alg: HashAlgorithm): Promise<string> {
  return (await sh("fsverity", "digest", "--compact", `--hash-alg=${alg}`, path)).trim();
}

async function buildFixture(dir: string): Promise<void> {
  const w = (p: string, data: Uint8Array | string) =>
    Deno.writeFile(`${dir}/${p}`, typeof data === "string" ? new TextEncoder().encode(data) : data);
  await Deno.mkdir(`${dir}/sub/deeper`, { recursive: true });
  await w("empty", "");
  await w("small", "hello");
  await w("exact64", "x".repeat(64));
  await w("just65", "y".repeat(65));
  const big = new Uint8Array(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
  await w("big", big);
  // several 1 MiB read chunks: exercises the prefetching stream path
  await w("huge", new Uint8Array(2_621_447).map((_, i) => (i * 13 + (i >> 20)) & 0xff));
  await w("sub/deeper/file", "z".repeat(5000));
  await Deno.link(`${dir}/big`, `${dir}/sub/big-hardlink`);
  await Deno.symlink("../some where/\x7f", `${dir}/sub/link`);
  await sh("mkfifo", `${dir}/fifo`);
  await sh(
    "python3",
    "-c",
    `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(dir + "/sock")})`,
  );
  await Deno.chmod(`${dir}/small`, 0o4755);
  await Deno.chmod(`${dir}/sub/deeper`, 0o1777);
  await Deno.chmod(`${dir}/empty`, 0o000);
  await sh("touch", "-h", "-d", "2001-02-03 04:05:06.123456789", `${dir}/small`);
  await sh("touch", "-h", "-d", "1960-01-01 00:00:00.5", `${dir}/exact64`); // negative mtime
  await sh("setfattr", "-n", "user.plain", "-v", "value", `${dir}/small`);
  await sh("setfattr", "-n", "user.binary", "-v", "0x00ff3d20", `${dir}/small`);
  await sh("setfattr", "-n", "user.empty", `${dir}/sub`);
  // a non-UTF-8 name
  await sh("sh", "-c", `touch "${dir}/$(printf 'bad\\377name')"`);
  if (isRoot) {
    await sh("mknod", `${dir}/chr`, "c", "4", "5");
    await sh("mknod", `${dir}/blk`, "b", "259", "70000");
    await sh("setfattr", "-h", "-n", "trusted.on-symlink", "-v", "s", `${dir}/sub/link`);
    await sh(
      "setfattr",
      "-n",
      "security.capability",
      "-v",
      "0x0100000200000000000000000000000000000000",
      `${dir}/big`,
    );
    await Deno.chown(`${dir}/just65`, 1234, 5678);
  }
}

function leafAt(root: Directory, p: string): Leaf {
  const n = lookup(root, p);
  assert(n && n.kind === "leaf", `${p} is a leaf`);
  return n;
}

Deno.test("scanDirectory: every field matches stat, getfattr and fsverity digest", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path + "/root";
  await Deno.mkdir(dir);
  await buildFixture(dir);
  const root = await scanDirectory(dir, { alg: "sha256" });

  let checked = 0;
  for (const { path, node } of walkTree(root)) {
    if (path.includes("\xff")) continue; // not expressible as a Deno string path: checked below
    const real = dir +
      (path === "/" ? "" : new TextDecoder().decode(Uint8Array.from(path, (c) => c.charCodeAt(0))));
    const st = await statTool(real);
    assertEquals(fileTypeBits(node), st.type, path);
    assertEquals(node.stat.mode, st.perm, `${path} mode`);
    assertEquals([node.stat.uid, node.stat.gid], [st.uid, st.gid], `${path} owner`);
    assertEquals([node.stat.mtimeSec, node.stat.mtimeNsec], [st.sec, st.nsec], `${path} mtime`);
    const x = await getfattr(real);
    assertEquals(
      new Map([...node.stat.xattrs].map(([k, v]) => [k, toHex(v)])),
      x,
      `${path} xattrs`,
    );
    if (node.kind === "leaf") {
      const c = node.content;
      switch (c.type) {
        case "inline":
          assert(st.size <= 64, `${path} inline only up to 64 bytes`);
          assertEquals(c.data, await Deno.readFile(real));
          break;
        case "external":
          assert(st.size > 64);
          assertEquals(c.size, st.size);
          assertEquals(c.id.hex(), await fsverityTool(real, "sha256"), `${path} digest`);
          break;
        case "symlink":
          assertEquals(c.target, utf8ToBstr(await Deno.readLink(real)));
          break;
        case "chardev":
        case "blockdev": {
          // glibc makedev of (major, minor), computed independently here
          const { major, minor } = st;
          const want = (major & 0xfff) * 256 + (minor & 0xff) + (minor >>> 8) * 1048576 +
            (major >>> 12) * 2 ** 32 * 4096;
          assertEquals(c.rdev, want, `${path} rdev`);
          break;
        }
      }
    }
    checked++;
  }
  assert(checked >= (isRoot ? 15 : 13), `checked ${checked} entries`);
  assertEquals(leafAt(root, "/exact64").content.type, "inline");
  assertEquals(leafAt(root, "/just65").content.type, "external");
  assertEquals(leafAt(root, "/fifo").content.type, "fifo");
  assertEquals(leafAt(root, "/sock").content.type, "socket");
  assert(leafAt(root, "/exact64").stat.mtimeSec < 0, "negative mtime kept");
  assertEquals(leafAt(root, "/small").stat.mtimeNsec, 123456789);
  const bad = leafAt(root, "/bad\xffname");
  assertEquals(bad.content, { type: "inline", data: new Uint8Array(0) });
  // default: hard links are separate leaves with equal content (C behaviour)
  const a = leafAt(root, "/big"), b = leafAt(root, "/sub/big-hardlink");
  assert(a !== b);
  assertEquals(
    a.content.type === "external" && b.content.type === "external" && a.content.id.equals(b.content.id),
    true,
  );
  if (isRoot) {
    assertEquals(leafAt(root, "/chr").content, { type: "chardev", rdev: 4 * 256 + 5 });
    assertEquals(bytesToBstr(leafAt(root, "/sub/link").stat.xattrs.get("trusted.on-symlink")!), "s");
  }
});

Deno.test("scanDirectory: hardlinks option shares leaves; xattr filter and skip options", async () => {
  await using tmp = await tempDir();
  await buildFixture(tmp.path);
  const root = await scanDirectory(tmp.path, { alg: "sha512", hardlinks: true, concurrency: 1 });
  assert(leafAt(root, "/big") === leafAt(root, "/sub/big-hardlink"));
  const c = leafAt(root, "/big").content;
  assert(c.type === "external");
  assertEquals(c.id.hex(), await fsverityTool(tmp.path + "/big", "sha512"));

  const user = await scanDirectory(tmp.path, {
    alg: "sha256",
    xattrFilter: (n) => n.startsWith("user."),
    skipDevices: true,
  });
  assertEquals([...leafAt(user, "/small").stat.xattrs.keys()].sort(), ["user.binary", "user.plain"]);
  assertEquals([...(lookup(user, "/sub") as Inode).stat.xattrs.keys()], ["user.empty"]);
  assertEquals(leafAt(user, "/big").stat.xattrs.size, 0);
  assertEquals(lookup(user, "/chr"), undefined);
  const none = await scanDirectory(tmp.path, { alg: "sha256", skipXattrs: true });
  assertEquals(leafAt(none, "/small").stat.xattrs.size, 0);
  assertEquals((lookup(none, "/sub") as Inode).stat.xattrs.size, 0);
});

/** A store in memory computing ids independently of the writer (fsverityDigest of the whole data). */
class MemStore implements ObjectStore {
  objects = new Map<string, Uint8Array>();
  constructor(readonly alg: HashAlgorithm) {}
  ensureObject(data: Uint8Array): Promise<ObjectId> {
    const id = fsverityDigest(data, this.alg);
    this.objects.set(id.hex(), data.slice());
    return Promise.resolve(id);
  }
  createObjectWriter(): ObjectWriter {
    const parts: Uint8Array[] = [];
    return {
      write: (c) => {
        parts.push(c.slice());
        return Promise.resolve();
      },
      finish: async () => {
        const data = concatBytes(parts);
        const present = this.objects.has(fsverityDigest(data, this.alg).hex());
        return { id: await this.ensureObject(data), size: data.length, alreadyPresent: present };
      },
      abort: () => Promise.resolve(),
    };
  }
}

Deno.test("scanDirectory with a store: objects hold the file bytes, ids match fsverity", async () => {
  await using tmp = await tempDir();
  await buildFixture(tmp.path);
  const store = new MemStore("sha256");
  const root = await scanDirectory(tmp.path, { alg: "sha256", store, concurrency: 4 });
  const ids = new Set<string>();
  for (const { node } of walkTree(root)) {
    if (node.kind === "leaf" && node.content.type === "external") ids.add(node.content.id.hex());
  }
  assertEquals(new Set(store.objects.keys()), ids);
  assertEquals(
    store.objects.get(await fsverityTool(tmp.path + "/big", "sha256")),
    await Deno.readFile(tmp.path + "/big"),
  );
  assertEquals(ids.size, 4); // big (twice, one object), huge, just65, sub/deeper/file
  assertEquals(
    store.objects.get(await fsverityTool(tmp.path + "/huge", "sha256")),
    await Deno.readFile(tmp.path + "/huge"),
  );
  await assertRejects(() => scanDirectory(tmp.path, { alg: "sha512", store }), /store uses sha256/);
});

Deno.test("scanDirectory: errors carry the path", async () => {
  const e = await assertRejects(() => scanDirectory("/nonexistent-cfs-dir", { alg: "sha256" }), KernelError);
  assertEquals((e as KernelError).code, "ENOENT");
  assertMatch(describeError(e), /nonexistent-cfs-dir/);
});

Deno.test({
  name: "scanDirectory: unreadable file fails the scan (not root only)",
  ignore: isRoot,
  fn: async () => {
    await using tmp = await tempDir();
    await Deno.writeFile(tmp.path + "/secret", new Uint8Array(100));
    await Deno.chmod(tmp.path + "/secret", 0);
    await assertRejects(() => scanDirectory(tmp.path, { alg: "sha256" }), /secret/);
  },
});
