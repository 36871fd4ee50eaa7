// Memory at the phase boundaries of the last step of a pull (docs/performance.md#memory): the flatten of
// stored layers into a tree, then one EROFS image per configured format. Prints RSS, its high-water mark
// and V8's heap figures after each phase (and after a full GC when run with --v8-flags=--expose-gc).
//
//   deno run -A --v8-flags=--expose-gc scripts/rss_phases.ts REPO DIFF_ID... [--write]
//
// REPO is a repository that already holds the layers (e.g. after `cfsctl oci pull`); --write also stores
// the images (their ids must not change: a new entry under REPO/images/ means different bytes).
//
//   deno run -A scripts/rss_phases.ts --pull SOURCE REPO [--every-ms 500]
//
// --pull: the whole pull in this process (REPO is made, insecure, and must not exist), with the same
// figures every --every-ms and at each layer's start and end: where the import's memory grows.
import { Repository } from "../lib/repository/repository.ts";
import { pullImage } from "../lib/oci/pull.ts";
import { parseImageReference } from "../lib/oci/reference.ts";
import { openImageSource } from "../lib/oci/transport/open_source.ts";
import { buildImageTree } from "../lib/oci/image_tree.ts";
import { writeErofs } from "../lib/erofs/writer.ts";

const mib = (n: number) => (n / 1048576).toFixed(1);

function status(field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

let last = performance.now();
function report(tag: string): void {
  const m = Deno.memoryUsage();
  const now = performance.now();
  const ms = (now - last).toFixed(0);
  last = now;
  console.log(
    `${tag} (${ms} ms): rss ${mib(status("VmRSS"))} hwm ${mib(status("VmHWM"))} heapUsed ${
      mib(m.heapUsed)
    } ` +
      `heapTotal ${mib(m.heapTotal)} external ${mib(m.external)} (MiB)`,
  );
}

if (Deno.args[0] === "--pull") {
  const [, src, repoPath] = Deno.args;
  const i = Deno.args.indexOf("--every-ms");
  const every = i > 0 ? Number(Deno.args[i + 1]) : 500;
  await Repository.init(repoPath, { insecure: true });
  const repo = await Repository.open(repoPath);
  const source = await openImageSource(parseImageReference(src));
  report("start");
  const timer = setInterval(() => report("  pulling"), every);
  const t0 = performance.now();
  await pullImage(repo, source, {
    reporter: {
      report(ev) {
        if (ev.type === "started" || ev.type === "done") report(`${ev.type} ${ev.id.slice(0, 19)}`);
      },
    },
  });
  clearInterval(timer);
  report(`pulled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  Deno.exit(0);
}

const args = Deno.args.filter((a) => a !== "--write");
const write = args.length !== Deno.args.length;
if (args.length < 2) {
  console.error("usage: rss_phases.ts REPO DIFF_ID... [--write]");
  Deno.exit(2);
}
const gc = (globalThis as unknown as { gc?: () => void }).gc;
const repo = await Repository.open(args[0]);
report("opened");
const tree = await buildImageTree(repo, args.slice(1));
report("tree");
if (gc) {
  gc();
  report("tree, after gc");
}
for (const version of repo.erofsVersions()) {
  const image = writeErofs(tree, { version });
  report(`erofs v${version} (${mib(image.length)} MiB)`);
  if (write) console.log(`  image ${(await repo.writeImage(image)).hex()}`);
}
if (gc) {
  gc();
  report("end, after gc");
}
