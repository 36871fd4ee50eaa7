// Issue 12 item 1: gc killed by SIGKILL at seeded points, then a re-pull. gc unlinks references before
// the objects they reach, and pull re-imports whatever a stored image lacks, so after the pull every
// tag names a complete image and both fsck and oci fsck are clean.
import { assert, assertEquals } from "./helpers/assert.ts";
import { DENO, killIfRunning, MAIN, runCli, tempDir } from "./helpers/cli.ts";
import { addImage, tarDirectory } from "./helpers/oci_builder.ts";
import { Rng } from "./helpers/random_tree.ts";

const RUN_FLAGS = MAIN.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"];

async function cfs(repo: string, args: string[]) {
  const r = await runCli(["--repo", repo, ...args]);
  if (r.code !== 0) throw new Error(`cfsctl ${args.join(" ")} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r;
}

async function objectCount(repo: string): Promise<number> {
  let n = 0;
  for await (const d of Deno.readDir(`${repo}/objects`)) {
    if (!d.isDirectory || !/^[0-9a-f]{2}$/.test(d.name)) continue;
    for await (const _ of Deno.readDir(`${repo}/objects/${d.name}`)) n++;
  }
  return n;
}

/** A layer of `n` distinct files big enough to be stored as objects (not inlined). */
async function manyFilesLayer(dir: string, tag: string, n: number): Promise<Uint8Array> {
  const src = `${dir}/src-${tag}`;
  await Deno.mkdir(`${src}/usr/share/${tag}`, { recursive: true });
  for (let i = 0; i < n; i++) {
    await Deno.writeTextFile(`${src}/usr/share/${tag}/f${i}`, `${tag} file ${i}\n`.repeat(20));
  }
  return await tarDirectory(src, { rootOwner: true });
}

/** Runs gc and SIGKILLs it after `delayMs`; returns whether it was killed before finishing. */
async function gcKilledAfter(repo: string, delayMs: number): Promise<boolean> {
  const child = new Deno.Command(DENO, {
    args: [...RUN_FLAGS, MAIN, "--repo", repo, "gc"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let done = false;
  const status = child.status.then((s) => {
    done = true;
    return s;
  });
  await new Promise((r) => setTimeout(r, delayMs));
  if (!done) killIfRunning(child, "SIGKILL");
  const s = await status;
  return s.signal === "SIGKILL";
}

Deno.test("gc killed at seeded points, then pull: every tag complete, fsck and oci fsck clean", async () => {
  await using t = await tempDir();
  const layout = `${t.path}/layout`;
  await addImage(layout, { layers: [{ tar: await manyFilesLayer(t.path, "keep", 50) }], tag: "keep" });
  await addImage(layout, { layers: [{ tar: await manyFilesLayer(t.path, "drop", 1500) }], tag: "drop" });
  const repo = `${t.path}/repo`;
  await cfs(repo, ["init", "--insecure"]);
  await cfs(repo, ["oci", "pull", `oci:${layout}:keep`, "keep"]);
  const keepOnly = await objectCount(repo);

  // Calibrate: how long one full gc of the dropped image takes here.
  await cfs(repo, ["oci", "pull", `oci:${layout}:drop`, "drop"]);
  const full = await objectCount(repo);
  await cfs(repo, ["oci", "untag", "drop"]);
  const t0 = performance.now();
  await cfs(repo, ["gc"]);
  const gcMs = performance.now() - t0;
  assertEquals(await objectCount(repo), keepOnly);

  const rng = new Rng(Number(Deno.env.get("CFSCTL_TEST_SEED") ?? 12));
  let midway = 0;
  const trials = 10;
  for (let i = 0; i < trials; i++) {
    await cfs(repo, ["oci", "pull", `oci:${layout}:drop`, "drop"]);
    await cfs(repo, ["oci", "untag", "drop"]);
    const delay = Math.floor(gcMs * (0.3 + 0.8 * rng.next()));
    const killed = await gcKilledAfter(repo, delay);
    const left = await objectCount(repo);
    if (killed && left > keepOnly && left < full) midway++;
    // The kill point is arbitrary; the re-pull must repair whatever it left.
    await cfs(repo, ["oci", "pull", `oci:${layout}:drop`, "drop"]);
    await cfs(repo, ["oci", "pull", `oci:${layout}:keep`, "keep"]);
    const fsck = await runCli(["--repo", repo, "fsck", "--json"]);
    assertEquals(JSON.parse(fsck.stdout).errors, [], `trial ${i} (kill after ${delay} ms): fsck`);
    const ociFsck = await runCli(["--repo", repo, "oci", "fsck"]);
    assertEquals(ociFsck.code, 0, `trial ${i}: oci fsck: ${ociFsck.stdout}${ociFsck.stderr}`);
    assertEquals(await objectCount(repo), full, `trial ${i}: every object back after the pull`);
  }
  // The seeded delays must really have cut gc in the middle of its deletions, or the test proves nothing.
  assert(midway >= 3, `only ${midway}/${trials} kills landed while gc was deleting (gc took ${gcMs} ms)`);
});
