// `cfsctl images [--json] [--no-trunc]`: the named image refs of a repository.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";

async function cfs(repo: string, args: string[], expectCode = 0) {
  const r = await runCli(["--repo", repo, ...args]);
  if (r.code !== expectCode) {
    throw new Error(
      `cfsctl ${args.join(" ")} exited ${r.code} (wanted ${expectCode}):\n${r.stderr}${r.stdout}`,
    );
  }
  return r;
}

Deno.test("images: lists images/refs names with their ids (table, --no-trunc, --json, empty)", async () => {
  await using d = await tempDir();
  const repo = `${d.path}/repo`;
  await cfs(repo, ["init", "--insecure"]);
  assertEquals((await cfs(repo, ["images"])).stdout, "No images found\n");
  assertEquals(JSON.parse((await cfs(repo, ["images", "--json"])).stdout), { images: [] });

  const src = `${d.path}/src`;
  await Deno.mkdir(`${src}/usr`, { recursive: true });
  await Deno.writeTextFile(
    `${src}/usr/a`,
    "a file with more than sixty-four bytes of content, stored as an object\n",
  );
  const idA = (await cfs(repo, ["create-image", src, "os/alpha"])).stdout.trim().replace(/^sha512:/, "");
  await Deno.writeTextFile(`${src}/usr/b`, "another\n");
  const idB = (await cfs(repo, ["create-image", src, "beta"])).stdout.trim().replace(/^sha512:/, "");
  await cfs(repo, ["create-image", src]); // unnamed: not listed
  assertMatch(idA, /^[0-9a-f]{128}$/);
  assert(idA !== idB, "two different images");

  const json = JSON.parse((await cfs(repo, ["images", "--json"])).stdout);
  assertEquals(json, { images: [{ name: "beta", image_id: idB }, { name: "os/alpha", image_id: idA }] });

  const table = (await cfs(repo, ["images"])).stdout.split("\n");
  assertMatch(table[1], /^│ NAME +│ IMAGE ID +│$/);
  assert(table[3].includes(`│ beta     │ ${idB.slice(0, 12)} │`), table.join("\n"));
  assert(table[4].includes(`│ os/alpha │ ${idA.slice(0, 12)} │`), table.join("\n"));
  assert(!table.join("\n").includes(idA.slice(0, 13)), "ids are truncated to 12 digits");
  const full = (await cfs(repo, ["images", "--no-trunc"])).stdout;
  assert(full.includes(idA) && full.includes(idB), full);

  // A dangling ref is shown, not fatal.
  await Deno.symlink("../0000", `${repo}/images/refs/dangling`);
  const withBroken = JSON.parse((await cfs(repo, ["images", "--json"])).stdout);
  assertEquals(withBroken.images.find((i: { name: string }) => i.name === "dangling"), {
    name: "dangling",
    image_id: null,
  });
  assert((await cfs(repo, ["images"])).stdout.includes("(broken link)"));
});
