// Issue 13 item 5: fsck opens the repository as strictly as every other command: a disagreeing --hash
// and --no-upgrade on an old-format repository are refused (not reported as findings), and only an
// unreadable meta.json is opened leniently so that fsck can report it.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";

async function makeImage(dir: string, repo: string): Promise<void> {
  await Deno.mkdir(`${dir}/src/usr`, { recursive: true });
  await Deno.writeTextFile(`${dir}/src/usr/file`, "some content that is stored as an object ".repeat(4));
  const r = await runCli(["--repo", repo, "create-image", `${dir}/src`, "img"]);
  assertEquals(r.code, 0, r.stderr);
}

Deno.test("fsck: --hash disagreeing with meta.json is refused like for every other command", async () => {
  await using t = await tempDir();
  const p = `${t.path}/repo`;
  assertEquals((await runCli(["init", "--insecure", p])).code, 0);
  await makeImage(t.path, p);
  for (const args of [["fsck"], ["fsck", "--json"], ["oci", "images"]]) {
    const r = await runCli(["--repo", p, "--hash", "sha256", ...args]);
    assertEquals(r.code, 1, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
    assertMatch(
      r.stderr,
      /repository is configured for fsverity-sha512-12 \(from meta\.json\) but --hash sha256/,
    );
    assert(!/fsck:/.test(r.stdout), r.stdout);
  }
  const ok = await runCli(["--repo", p, "--hash", "sha512", "fsck"]);
  assertEquals(ok.code, 0, ok.stdout + ok.stderr);
});

Deno.test("fsck: --no-upgrade on an old-format repository says it must be initialized; without it, upgraded", async () => {
  await using t = await tempDir();
  const p = `${t.path}/repo`;
  assertEquals((await runCli(["init", "--insecure", p])).code, 0);
  await makeImage(t.path, p);
  await Deno.remove(`${p}/meta.json`); // what a repository made before meta.json looks like
  const r = await runCli(["--repo", p, "--no-upgrade", "fsck"]);
  assertEquals(r.code, 1, r.stdout + r.stderr);
  assertMatch(r.stderr, /meta\.json not found in .*must be initialized with `cfsctl init`/);
  assertEquals(r.stdout, "");
  assert(!(await Deno.lstat(`${p}/meta.json`).then(() => true, () => false)), "nothing written");
  const up = await runCli(["--repo", p, "fsck"]);
  assertEquals(up.code, 0, up.stdout + up.stderr);
  assertMatch(up.stdout, /^meta\.json: ok\n/);
  assertMatch(up.stdout, /status: ok/);
});

Deno.test("fsck: an unparsable meta.json is still a finding (lenient only there)", async () => {
  await using t = await tempDir();
  const p = `${t.path}/repo`;
  assertEquals((await runCli(["init", "--insecure", p])).code, 0);
  await Deno.writeTextFile(`${p}/meta.json`, "{");
  const r = await runCli(["--repo", p, "fsck", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert(j.errors.some((e: string) => e.startsWith("fsck: metadata-parse-failed: meta.json:")), r.stdout);
});
