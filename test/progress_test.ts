// Progress output during a real pull: JSON events (`--progress json`, also on --progress-fd) and the
// terminal bars under a pseudo-terminal (`script`).
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { DENO, MAIN, PROJECT_ROOT, runCli } from "./helpers/cli.ts";
import { addImage } from "./helpers/oci_builder.ts";

async function bigLayerImage(dir: string): Promise<string> {
  // Three layers of a few MiB (random data, so compression cannot shrink them) for real progress.
  const layers = [];
  for (let i = 0; i < 3; i++) {
    const src = `${dir}/src${i}`;
    await Deno.mkdir(`${src}/usr/lib${i}`, { recursive: true });
    const data = new Uint8Array((i + 2) * 1024 * 1024);
    for (let o = 0; o < data.length; o += 65536) crypto.getRandomValues(data.subarray(o, o + 65536));
    await Deno.writeFile(`${src}/usr/lib${i}/blob.bin`, data);
    const tar = await new Deno.Command("tar", { args: ["-c", "-f", "-", "-C", src, "."], stdout: "piped" })
      .output();
    layers.push({ tar: tar.stdout, compression: "gzip" as const });
  }
  await addImage(`${dir}/layout`, { tag: "t", layers });
  return `oci:${dir}/layout:t`;
}

Deno.test("progress: --progress json gives a plan with totals, monotonic bytes and one done per layer", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const image = await bigLayerImage(dir);
    const repo = `${dir}/repo`;
    assertEquals((await runCli(["--repo", repo, "init", "--insecure"])).code, 0);
    const r = await runCli(["--repo", repo, "oci", "pull", "--progress", "json", image, "img"]);
    assertEquals(r.code, 0, r.stderr);
    const events = r.stderr.trim().split("\n").map((l) => JSON.parse(l));
    const plan = events.find((e) => e.type === "plan");
    assert(plan, "a plan event comes first");
    assertEquals(events[0].type, "plan");
    assertEquals(plan.components.length, 3);
    for (const c of plan.components) assert(c.total > 1024 * 1024, "totals known from the start");
    for (const c of plan.components) {
      const mine = events.filter((e) => e.id === c.id);
      assertEquals(mine.filter((e) => e.type === "started").length, 1);
      assertEquals(mine.filter((e) => e.type === "done").length, 1);
      const done = mine.filter((e) => e.type === "progress").map((e) => e.done);
      for (let i = 1; i < done.length; i++) assert(done[i] >= done[i - 1], "bytes never go backwards");
      assertEquals(done.at(-1), c.total);
      assertEquals(mine.find((e) => e.type === "done").transferred, c.total);
      assert(mine.findIndex((e) => e.type === "started") < mine.findIndex((e) => e.type === "done"));
    }
    // A second pull of the same image reports no layer work.
    const again = await runCli(["--repo", repo, "oci", "pull", "--progress", "json", image, "img"]);
    assertEquals(again.code, 0);
    assert(!again.stderr.includes('"type":"started"'), again.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("progress: --progress-fd writes the JSON events to another descriptor", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const repo = `${dir}/repo`;
    assertEquals((await runCli(["--repo", repo, "init", "--insecure"])).code, 0);
    const image = `oci:${PROJECT_ROOT}examples/demo-image:latest`;
    const o = await new Deno.Command("sh", {
      args: [
        "-c",
        `"${DENO}" run -A --no-check "${MAIN}" --repo "${repo}" oci pull --progress json --progress-fd 3 ${image} d 3>"${dir}/events"`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(o.code, 0, new TextDecoder().decode(o.stderr));
    assertEquals(new TextDecoder().decode(o.stderr), "");
    const events = (await Deno.readTextFile(`${dir}/events`)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(events.filter((e) => e.type === "done").length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("progress: on a terminal, bars are drawn in place and cleared at the end", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const image = await bigLayerImage(dir);
    const repo = `${dir}/repo`;
    assertEquals((await runCli(["--repo", repo, "init", "--insecure"])).code, 0);
    const cmd = `"${DENO}" run -A --no-check "${MAIN}" --repo "${repo}" oci pull ${image} img`;
    const o = await new Deno.Command("script", { args: ["-qec", cmd, "/dev/null"], stdout: "piped" })
      .output();
    assertEquals(o.code, 0);
    const text = new TextDecoder().decode(o.stdout);
    assertMatch(text, /\[#+-*\]/, "a bar was drawn");
    assertMatch(text, /total/);
    // deno-lint-ignore no-control-regex
    assertMatch(text, /\x1b\[\d+A\x1b\[J/, "redrawn in place");
    // After the last clear, only the result remains: no bar fragments left on screen.
    const tail = text.slice(text.lastIndexOf("\x1b[J") + 3);
    assertMatch(tail, /^manifest sha256:/);
    assert(!/\[#|total/.test(tail), tail);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
