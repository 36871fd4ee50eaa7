// "Whatever the image holds is what the dump prints" (issue 11.12): `oci dump` of a pulled image and
// `composefs-info dump` of its committed EROFS image print the same dumpfile, for xattrs that look
// like the writer's overlay bookkeeping (trusted.overlay.opaque, user.overlay.whiteout, …) and for
// mtime nanoseconds (a V2 image keeps none: PAX mtime 100.5 is 100.0 there; V1 keeps them).
import { assert, assertEquals, isRoot } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { addImage } from "./helpers/oci_builder.ts";
import { END, paxMember, tarMember } from "./helpers/tar_fixtures.ts";
import { concatBytes } from "../lib/util/bytes.ts";

const enc = new TextEncoder();

async function cfs(repo: string, args: string[]) {
  const r = await runCli(["--repo", repo, ...args]);
  assertEquals(r.code, 0, `cfsctl ${args.join(" ")}:\n${r.stderr}`);
  return r;
}

function layer(): Uint8Array {
  return concatBytes([
    paxMember([["SCHILY.xattr.trusted.overlay.opaque", "y"], ["SCHILY.xattr.user.overlay.opaque", "y"]]),
    tarMember({ name: "usr/", type: "5", mode: 0o755, mtime: 1600000000 }),
    paxMember([["SCHILY.xattr.user.overlay.whiteout", ""], ["SCHILY.xattr.user.overlay.whiteouts", ""]]),
    tarMember({ name: "usr/marked", mtime: 1600000000 }, enc.encode("x")),
    paxMember([["mtime", "1700000000.5"]]),
    tarMember({ name: "usr/half", mtime: 1700000000 }, enc.encode("y")),
    paxMember([["SCHILY.xattr.trusted.overlay.whiteouts", ""]]),
    tarMember({ name: "etc/", type: "5", mode: 0o755, mtime: 1600000000 }),
    END,
  ]);
}

function line(dump: string, path: string): string {
  const l = dump.split("\n").find((x) => x.startsWith(path + " "));
  assert(l !== undefined, `${path} in\n${dump}`);
  return l;
}

for (const version of ["2", "1"]) {
  Deno.test(`oci dump and composefs-info dump of the V${version} image agree (overlay-like xattrs, PAX .5 mtime)`, async () => {
    await using tmp = await tempDir();
    await addImage(`${tmp.path}/layout`, { tag: "t", layers: [{ tar: layer() }] });
    const repo = `${tmp.path}/repo`;
    await cfs(repo, ["init", "--insecure", "--erofs-version", version]);
    await cfs(repo, ["oci", "pull", `oci:${tmp.path}/layout:t`, "img"]);
    const ociDump = (await cfs(repo, ["oci", "dump", "img"])).stdout;
    const id = JSON.parse((await cfs(repo, ["oci", "inspect", "img"])).stdout).composefs_erofs;
    const info = await runCli(["dump", `${repo}/images/${id}`], { invokedAs: "composefs-info" });
    assertEquals(info.code, 0, info.stderr);
    assertEquals(info.stdout, ociDump);
    // The tar's xattrs are all there (the root took /usr's, as transform_for_oci says).
    const usr = line(ociDump, "/usr");
    assert(usr.includes("trusted.overlay.opaque=y") && usr.includes("user.overlay.opaque=y"), usr);
    const marked = line(ociDump, "/usr/marked");
    assert(marked.includes("user.overlay.whiteout= ") || marked.endsWith("user.overlay.whiteout="), marked);
    assert(marked.includes("user.overlay.whiteouts="), marked);
    assert(line(ociDump, "/etc").includes("trusted.overlay.whiteouts="), ociDump);
    // PAX mtime 1700000000.5 = 500000000 ns; V2 stores whole seconds only.
    const half = line(ociDump, "/usr/half").split(" ")[7];
    assertEquals(half, version === "2" ? "1700000000.0" : "1700000000.500000000");
  });
}

async function sh(cmd: string, args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!o.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  return new TextDecoder().decode(o.stdout);
}

Deno.test({
  name: "the kernel mount shows what the dump prints (xattrs, V2 mtime without nanoseconds)",
  ignore: !isRoot,
  async fn() {
    await using tmp = await tempDir();
    await addImage(`${tmp.path}/layout`, { tag: "t", layers: [{ tar: layer() }] });
    const repo = `${tmp.path}/repo`;
    await cfs(repo, ["init", "--insecure"]);
    await cfs(repo, ["oci", "pull", `oci:${tmp.path}/layout:t`, "img"]);
    const dump = (await cfs(repo, ["oci", "dump", "img"])).stdout;
    const mnt = `${tmp.path}/mnt`;
    await Deno.mkdir(mnt);
    await cfs(repo, ["oci", "mount", "img", mnt]);
    try {
      const xattrs = async (p: string) =>
        (await sh("getfattr", ["-d", "-m", "-", "--absolute-names", "-e", "text", `${mnt}${p}`]))
          .split("\n").filter((l) => l.includes("=")).map((l) => l.replace(/="(.*)"$/, "=$1")).sort();
      const fromDump = (p: string) => line(dump, p).split(" ").slice(11).sort();
      for (const p of ["/usr", "/usr/marked", "/etc"]) {
        assert(fromDump(p).length > 0, p);
        assertEquals(await xattrs(p), fromDump(p), p);
      }
      const mtime = (await sh("stat", ["-c", "%.9Y", `${mnt}/usr/half`])).trim();
      assertEquals(mtime, "1700000000.000000000");
      assertEquals(line(dump, "/usr/half").split(" ")[7], "1700000000.0");
    } finally {
      await sh("umount", [mnt]).catch(() => {});
    }
  },
});
