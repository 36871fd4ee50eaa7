// Generator of hostile tar layers (issue 11): seeded, bounded mutations of valid tars, each split
// into a splitstream, read back, flattened and written as an EROFS image. Every mutant must end in
// a clean, typed error naming the problem (a CfsError with a message), or be accepted: then the
// splitstream reassembles to exactly its bytes and the image it makes reads back and passes the
// EROFS metadata check. Inputs run in batches, each in its own process (test/helpers/
// hostile_tar_worker.ts), so that the peak RSS measured is that of the work, per batch of inputs.
// Reproduce a failure with HOSTILE_SEED=<seed> (and the mutant index it names).
import { assert } from "./helpers/assert.ts";
import { runSeed, runWorkerBatch } from "./helpers/hostile_mutate.ts";
import type { BatchResult } from "./helpers/hostile_tar_worker.ts";

const COUNT = Number(Deno.env.get("HOSTILE_TAR_COUNT") ?? 3000);
const BATCH = 1000;
const PER_INPUT_MS = 3000;
const RSS_LIMIT_KIB = 300 * 1024;
const WORKER = new URL("./helpers/hostile_tar_worker.ts", import.meta.url).pathname;

function batch(seed: number, start: number, count: number): Promise<BatchResult> {
  return runWorkerBatch<BatchResult>(WORKER, 300, seed, start, count);
}

Deno.test(`hostile tar generator: ${COUNT} seeded mutants end in a clean error or a checked image`, async () => {
  const seed = runSeed(0x7a11);
  const counts = { accepted: 0, refused: 0 };
  const t0 = performance.now();
  let peak = 0;
  let slowest = 0;
  // Two batches at a time: CI has two cores.
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
      peak = Math.max(peak, r.peakRssKiB);
      slowest = Math.max(slowest, r.slowestMs);
    }
  }
  console.log(
    `seed ${seed}: ${counts.accepted} accepted, ${counts.refused} refused in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s; slowest input ${slowest.toFixed(0)} ms; peak RSS of a batch ${(peak / 1024).toFixed(0)} MiB`,
  );
  assert(counts.accepted + counts.refused === COUNT);
  // Both outcomes occur: the mutations are neither all fatal nor all harmless.
  assert(counts.accepted > COUNT / 20 && counts.refused > COUNT / 20, JSON.stringify(counts));
});
