// Benchmark: `cfsctl fsck` of a repository of 100,000 objects against checking the same objects with
// the C tool, `find objects -type f -print0 | xargs -0 fsverity digest`, with the objects evicted from the
// page cache before each run (posix_fadvise DONTNEED, as scripts/bench_create_image.ts does), or with
// --cached left in it.
//
//   deno run -A scripts/bench_fsck.ts [--runs 3] [--repo REPO] [--cached]
//
// Without --repo, the repository is made once (kept under /var/tmp/cfsctl-bench-fsck) by create-image of
// the nodemodules tree of scripts/bench_create_image.ts. Ours runs from the bundle with the launchers'
// V8 flags. Prints per run and the medians, with the load average.
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import { V8_FLAGS } from "./build.ts";
import { ensureNodeModules, evict, median, timed as sh } from "./bench_create_image.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();
const CLI = `${DENO} run -A --no-config --v8-flags=${V8_FLAGS} ${ROOT}dist/cfsctl.js`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
      repo: { type: "string" },
      cached: { type: "boolean", default: false },
    },
  });
  try {
    await Deno.stat(`${ROOT}dist/cfsctl.js`);
  } catch {
    await sh(`cd ${ROOT} && ${DENO} run -A scripts/build.ts bundle`);
  }
  let repo = values.repo;
  if (!repo) {
    repo = "/var/tmp/cfsctl-bench-fsck/repo";
    try {
      await Deno.stat(`${repo}/images`);
    } catch {
      const tree = await ensureNodeModules();
      await Deno.mkdir("/var/tmp/cfsctl-bench-fsck", { recursive: true });
      await sh(`${CLI} --repo ${repo} init --insecure --algorithm fsverity-sha256-12`);
      await sh(`${CLI} --repo ${repo} create-image --no-propagate-usr-to-root ${tree} bench`);
    }
  }
  const cases = [
    { name: "cfsctl fsck", cmd: `${CLI} --repo ${repo} fsck` },
    {
      name: "find objects | xargs fsverity digest",
      cmd: `find ${repo}/objects -type f -print0 | xargs -0 fsverity digest > /dev/null`,
    },
  ];
  const walls = cases.map(() => [] as number[]);
  const rss = cases.map(() => [] as number[]);
  for (let r = 0; r < Number(values.runs); r++) {
    for (const [i, c] of cases.entries()) {
      const files = values.cached ? 0 : evict(`${repo}/objects`);
      const s = await sh(c.cmd);
      walls[i].push(s.wall);
      rss[i].push(s.rssMiB);
      console.error(
        `run ${r + 1} ${c.name}: ${s.wall.toFixed(2)} s, ${s.rssMiB.toFixed(0)} MiB` +
          (values.cached ? " (cached)" : ` (${files} objects evicted)`) + `, load ${loadavg()[0].toFixed(2)}`,
      );
    }
  }
  const ours = median(walls[0]);
  const peer = median(walls[1]);
  console.log(`| command | median wall s | peak RSS MiB |\n|---|---|---|`);
  for (const [i, c] of cases.entries()) {
    console.log(`| ${c.name} | ${median(walls[i]).toFixed(2)} | ${Math.max(...rss[i]).toFixed(0)} |`);
  }
  console.log(`fsck / fsverity digest: ${(ours / peer).toFixed(2)}×`);
  for (const c of cases) console.log(`- ${c.name}: \`${c.cmd}\``);
}

if (import.meta.main) await main();
