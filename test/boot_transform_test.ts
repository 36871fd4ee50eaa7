// The boot transform (--bootable) and compute-karg: boot entries found in hand-made trees (BLS entries,
// UKIs + addons, plain kernels), /boot and /sysroot emptied with /usr's mtime seconds, labels stripped
// without a policy, refusals for trees without /boot or /sysroot; karg values for every format, hash
// and security mode, cross-checked with `fsverity digest` of the image file the repository stored.
import { assert, assertEquals, assertMatch, assertThrows } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { makeBootTree, makePe } from "./helpers/boot_fixtures.ts";
import { runTool } from "./helpers/process.ts";
import { scanDirectory } from "../lib/tree/scan.ts";
import { propagateUsrToRoot } from "../lib/tree/transform.ts";
import { lookup } from "../lib/tree/tree.ts";
import { dirLeafReader, transformForBoot } from "../lib/boot/transform.ts";
import { formatKarg, parseComposefsKarg, splitCmdline } from "../lib/boot/karg.ts";
import { peSection, ukiCmdline } from "../lib/boot/uki.ts";
import { BlsEntry } from "../lib/boot/entries.ts";
import { FormatError } from "../lib/errors.ts";

function dumpLines(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const l of text.split("\n")) if (l) m.set(l.split(" ")[0], l.split(" "));
  return m;
}

Deno.test("boot transform: entries of every kind are collected before /boot and /sysroot are emptied", async () => {
  await using d = await tempDir();
  await makeBootTree(d.path);
  const root = await scanDirectory(d.path, { alg: "sha256", hardlinks: true });
  propagateUsrToRoot(root);
  const r = await transformForBoot(root, dirLeafReader(d.path));
  const kinds = r.entries.map((e) => e.kind);
  assertEquals(kinds, ["bls", "uki", "uki", "uki", "vmlinuz"]);
  const bls = r.entries[0];
  assert(bls.kind === "bls");
  assertEquals(bls.filename, "test-6.1.conf");
  assertEquals([...bls.files.keys()], ["/vmlinuz-6.1", "/initramfs-6.1.img"]);
  const ukis = r.entries.filter((e) => e.kind === "uki");
  assertEquals(
    ukis.map((u) => u.kind === "uki" && [u.kver ?? null, u.relPath, u.peType]),
    [
      [null, "test.efi", "uki"],
      [null, "test.efi.extra.d/debug.addon.efi", "addon"],
      ["6.1.0", "uki-6.1.0.efi", "uki"],
    ],
  );
  const plain = r.entries[4];
  assert(plain.kind === "vmlinuz" && plain.kver === "6.1.0" && plain.initramfs && plain.osRelease);
  // Emptied, with /usr's mtime seconds.
  const usr = lookup(root, "/usr")!;
  for (const p of ["/boot", "/sysroot"]) {
    const n = lookup(root, p)!;
    assert(n.kind === "dir");
    assertEquals(n.entries.size, 0, `${p} emptied`);
    assertEquals(n.stat.mtimeSec, usr.stat.mtimeSec, `${p} mtime seconds`);
  }
  assertEquals(r.policy, null);
});

Deno.test("create-dumpfile --bootable: /boot and /sysroot empty, security.selinux stripped without a policy", async () => {
  await using d = await tempDir();
  await makeBootTree(d.path);
  await runTool("setfattr", [
    "-n",
    "security.selinux",
    "-v",
    "system_u:object_r:bin_t:s0",
    `${d.path}/usr/bin/tool`,
  ]);
  const plainRead = await runCli(["--no-repo", "create-dumpfile", "--no-propagate-usr-to-root", d.path]);
  assertEquals(plainRead.code, 0, plainRead.stderr);
  const r = await runCli([
    "--no-repo",
    "create-dumpfile",
    "--bootable",
    "--no-propagate-usr-to-root",
    d.path,
  ]);
  assertEquals(r.code, 0, r.stderr);
  const before = dumpLines(plainRead.stdout);
  const after = dumpLines(r.stdout);
  assert(before.has("/boot/loader/entries/test-6.1.conf") && before.has("/sysroot/ostree"));
  assert(
    plainRead.stdout.includes("security.selinux=system_u:object_r:bin_t:s0"),
    "the raw reading keeps the label",
  );
  assert(![...after.keys()].some((p) => p.startsWith("/boot/") || p.startsWith("/sysroot/")));
  assert(after.has("/boot") && after.has("/sysroot"));
  const usrSec = after.get("/usr")![7].split(".")[0];
  assertEquals(after.get("/boot")![7].split(".")[0], usrSec);
  assertEquals(after.get("/sysroot")![7].split(".")[0], usrSec);
  assert(!r.stdout.includes("security.selinux"), "labels stripped");
  // Everything outside /boot and /sysroot is unchanged (apart from the stripped label and the two mtimes).
  for (const [p, f] of after) {
    if (p === "/boot" || p === "/sysroot" || p === "/") continue;
    assertEquals(f.join(" "), before.get(p)!.join(" ").replace(/ security\.selinux=\S+/, ""), p);
  }
});

Deno.test("--bootable refuses a tree without /boot or /sysroot", async () => {
  for (const missing of ["boot", "sysroot"]) {
    await using d = await tempDir();
    await makeBootTree(d.path);
    await Deno.remove(`${d.path}/${missing}`, { recursive: true });
    for (const args of [["create-dumpfile", "--bootable"], ["compute-id", "--bootable"], ["compute-karg"]]) {
      const r = await runCli(["--no-repo", ...args, d.path]);
      assertEquals(r.code, 1, `${args[0]} without /${missing}`);
      assertMatch(
        r.stderr,
        new RegExp(`/${missing} does not exist: a bootable image needs empty /boot and /sysroot`),
      );
      assertEquals(r.stdout, "");
    }
  }
});

Deno.test("compute-karg: every format, hash and security mode; the id is the fs-verity digest of the stored image", async () => {
  await using d = await tempDir();
  const tree = `${d.path}/tree`;
  await makeBootTree(tree);
  for (const alg of ["sha256", "sha512"] as const) {
    for (const version of [0, 1, 2] as const) {
      // A repository configured for this format stores the image the karg names.
      const repo = `${d.path}/repo-${alg}-${version}`;
      const init = await runCli([
        "--repo",
        repo,
        "init",
        "--insecure",
        "--algorithm",
        `fsverity-${alg}-12`,
        "--erofs-version",
        String(version),
      ]);
      assertEquals(init.code, 0, init.stderr);
      const created = await runCli(["--repo", repo, "create-image", "--bootable", tree, "--json"]);
      assertEquals(created.code, 0, created.stderr);
      const hex = JSON.parse(created.stdout).image_id as string;
      const imageFile = await Deno.realPath(`${repo}/images/${hex}`);
      const measured = new TextDecoder().decode(
        await runTool("fsverity", ["digest", `--hash-alg=${alg}`, "--compact", imageFile]),
      ).trim();
      assertEquals(measured, hex, `fsverity digest of the stored ${alg} V${version} image`);
      const prefix = version === 2 ? "composefs=" : "composefs.digest=";
      const value = version === 2 ? hex : `v1-${alg}-12:${hex}`;
      // Without a repository: only --insecure adds the "?".
      for (const insecure of [false, true]) {
        const args = ["--no-repo", "--hash", alg, "--erofs-version", String(version)];
        if (insecure) args.push("--insecure");
        const k = await runCli([...args, "compute-karg", tree]);
        assertEquals(k.code, 0, k.stderr);
        assertEquals(
          k.stdout,
          `${prefix}${insecure ? "?" : ""}${value}\n`,
          `${alg} V${version} insecure=${insecure}`,
        );
      }
      // With the (insecure) repository: the "?" is there, and the hash comes from its meta.json.
      const k = await runCli([
        "--repo",
        repo,
        "--erofs-version",
        String(version),
        "compute-karg",
        tree,
        "--json",
      ]);
      assertEquals(k.code, 0, k.stderr);
      const j = JSON.parse(k.stdout);
      assertEquals(j, {
        karg: `${prefix}?${value}`,
        image_id: hex,
        algorithm: alg,
        erofs_version: version,
        insecure: true,
      });
    }
  }
});

Deno.test("compute-karg ids change with the boot transform (not the plain compute-id)", async () => {
  await using d = await tempDir();
  await makeBootTree(d.path);
  const plain = await runCli(["--no-repo", "--hash", "sha256", "compute-id", d.path]);
  const boot = await runCli(["--no-repo", "--hash", "sha256", "compute-id", "--bootable", d.path]);
  const karg = await runCli(["--no-repo", "--hash", "sha256", "compute-karg", d.path]);
  assertEquals(karg.stdout, `composefs=${boot.stdout.trim()}\n`);
  assert(plain.stdout !== boot.stdout, "the transform changes the image");
});

Deno.test("karg parsing: kernel quoting, first matching composefs.digest, then composefs=, malformed values", () => {
  assertEquals(splitCmdline(' a  "b c" d="e f"\tg '), ["a", '"b c"', 'd="e f"', "g"]);
  const h256 = "ab".repeat(32);
  const h512 = "cd".repeat(64);
  const both =
    `quiet composefs=${h512} composefs.digest=v1-sha256-12:${h256} composefs.digest=?v1-sha512-12:${h512}`;
  assertEquals(parseComposefsKarg(both)!.form, "composefs.digest");
  assertEquals(parseComposefsKarg(both)!.alg, "sha256");
  const k512 = parseComposefsKarg(both, "sha512")!;
  assertEquals([k512.form, k512.hex, k512.insecure], ["composefs.digest", h512, true]);
  const legacy = parseComposefsKarg(`root=/dev/sda composefs=?${h256}`)!;
  assertEquals([legacy.form, legacy.alg, legacy.insecure], ["composefs", "sha256", true]);
  assertEquals(parseComposefsKarg("quiet rw"), null);
  assertEquals(parseComposefsKarg('x="composefs=abc" rw'), null, "quoted words are not the karg");
  assertThrows(() => parseComposefsKarg("composefs=abc"), /64 \(sha256\) or 128 \(sha512\)/);
  assertThrows(() => parseComposefsKarg(`composefs=${h256.toUpperCase()}`), FormatError);
  assertThrows(() => parseComposefsKarg("composefs.digest=v2-sha256-12:00"), /expected composefs.digest=/);
  assertThrows(
    () => parseComposefsKarg(`composefs.digest=v1-sha512-12:${h256}`),
    /128 lowercase hex digits \(sha512\)/,
  );
  assertEquals(formatKarg(h256, "sha256", 1, true), `composefs.digest=?v1-sha256-12:${h256}`);
  assertEquals(formatKarg(h256, "sha256", 2, false), `composefs=${h256}`);
});

Deno.test("UKI .cmdline section and BLS option editing", () => {
  const pe = makePe("quiet composefs=?1234");
  assertEquals(ukiCmdline(pe, "test.efi"), "quiet composefs=?1234");
  assertEquals(peSection(pe, ".osrel", "test.efi"), null);
  assertThrows(
    () => ukiCmdline(new Uint8Array(100), "junk.efi"),
    /junk\.efi is not a PE image: no MZ header/,
  );
  const e = new BlsEntry("title X\nlinux /a/b/vmlinuz\ninitrd /a/b/initrd\noptions quiet composefs=old rw\n");
  e.addOption("composefs=new");
  e.addOption("console=ttyS0");
  e.relocate("/myid");
  assertEquals(
    e.toString(),
    "title X\nlinux /myid/vmlinuz\ninitrd /myid/initrd\noptions quiet composefs=new rw console=ttyS0\n",
  );
  const bare = new BlsEntry("title Y\n");
  bare.addOption("rw");
  assertEquals(bare.toString(), "title Y\noptions rw\n");
});
