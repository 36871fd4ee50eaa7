// Generator of hostile OCI layouts and oci-archive files (issue 11): seeded, bounded mutations of
// valid ones (JSON values, digests and sizes, layer tars, compressed streams, files swapped for
// FIFOs, devices, directories, loops or symlinks to canaries), each pulled into one repository in a
// sandbox surrounded by canary files. Every mutant ends in a clean, typed error (a CfsError with a
// message), or is accepted and its images read back and pass the EROFS metadata check; every input
// has a time bound (a hang fails the test); the canaries are listed and compared every 100 inputs;
// each batch of inputs runs in its own process (test/helpers/hostile_layout_worker.ts), whose peak
// RSS is asserted. Reproduce a failure with HOSTILE_SEED=<seed> (and the mutant index it names).
import { assert } from "./helpers/assert.ts";
import { runSeed, runWorkerBatch } from "./helpers/hostile_mutate.ts";
import type { LayoutBatchResult } from "./helpers/hostile_layout_worker.ts";

const COUNT = Number(Deno.env.get("HOSTILE_LAYOUT_COUNT") ?? 2000);
const BATCH = 1000;
const PER_INPUT_MS = 10_000;
const RSS_LIMIT_KIB = 300 * 1024;
const WORKER = new URL("./helpers/hostile_layout_worker.ts", import.meta.url).pathname;

function batch(seed: number, start: number, count: number): Promise<LayoutBatchResult> {
  return runWorkerBatch<LayoutBatchResult>(WORKER, 600, seed, start, count);
}

Deno.test(`hostile layout generator: ${COUNT} seeded layouts/archives end in a clean error or a checked image`, async () => {
  const seed = runSeed(0x1a70);
  const counts = { accepted: 0, refused: 0, archives: 0 };
  const t0 = performance.now();
  let peak = 0;
  let slowest = 0;
  const starts = Array.from({ length: Math.ceil(COUNT / BATCH) }, (_, k) => k * BATCH);
  for (let k = 0; k < starts.length; k += 2) {
    const results = await Promise.all(
      starts.slice(k, k + 2).map((s) => batch(seed, s, Math.min(BATCH, COUNT - s))),
    );
    for (const r of results) {
      assert(!r.failure, r.failure);
      assert(
        r.slowestMs < PER_INPUT_MS,
        `seed ${seed} mutant ${r.slowestIndex} took ${r.slowestMs.toFixed(0)} ms`,
      );
      assert(r.peakRssKiB < RSS_LIMIT_KIB, `a batch of seed ${seed} peaked at ${r.peakRssKiB} KiB RSS`);
      counts.accepted += r.accepted;
      counts.refused += r.refused;
      counts.archives += r.archives;
      peak = Math.max(peak, r.peakRssKiB);
      slowest = Math.max(slowest, r.slowestMs);
    }
  }
  console.log(
    `seed ${seed}: ${counts.accepted} accepted, ${counts.refused} refused (${counts.archives} oci-archive) in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s; slowest input ${slowest.toFixed(0)} ms; peak RSS of a batch ${(peak / 1024).toFixed(0)} MiB`,
  );
  assert(counts.accepted + counts.refused === COUNT);
  assert(counts.accepted > COUNT / 20 && counts.refused > COUNT / 20, JSON.stringify(counts));
  assert(counts.archives > COUNT / 10, "oci-archive inputs are part of the mix");
});
