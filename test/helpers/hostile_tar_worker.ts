// Worker of the hostile tar generator (test/hostile_tar_fuzz_test.ts): runs mutants [start,
// start+count) of a seed in this process and prints one JSON line: outcome counts, the slowest
// input, the first unclean failure, and this process's peak RSS (VmHWM).
// Run: deno run -A --no-check test/helpers/hostile_tar_worker.ts SEED START COUNT
import { CfsError } from "../../lib/errors.ts";
import { fsckMetadata, readErofs } from "../../lib/erofs/reader.ts";
import { writeErofs } from "../../lib/erofs/writer.ts";
import { Flattener } from "../../lib/oci/flatten.ts";
import { splitTarLayer, tarEntriesFromSplitstream } from "../../lib/oci/layer_split.ts";
import { reassembleStream as reassembleTar } from "../../lib/splitstream/reassemble.ts";
import { SplitStreamReader } from "../../lib/splitstream/reader.ts";
import { concatBytes } from "../../lib/util/bytes.ts";
import { type Directory, sortedEntries } from "../../lib/tree/tree.ts";
import { assertEquals } from "./assert.ts";
import { baseTars, mutateTar, Rng } from "./hostile_mutate.ts";
import { MemoryStore } from "./memory_store.ts";
import { sha256Hex } from "./tar_fixtures.ts";

export function peakRssKiB(): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"))![1]);
}

async function* chunked(b: Uint8Array, size: number) {
  for (let o = 0; o < b.length; o += size) yield b.subarray(o, o + size);
}

/** One line per path: what an accepted layer must carry into its image unchanged. */
function shapeOf(root: Directory): string[] {
  const out: string[] = [];
  const walk = (dir: Directory, path: string) => {
    for (const [name, node] of sortedEntries(dir)) {
      const p = `${path}/${name}`;
      const s = node.stat;
      let what = `${JSON.stringify(p)} ${s.mode.toString(8)} ${s.uid}:${s.gid} `;
      if (node.kind === "dir") {
        out.push(what + "dir");
        walk(node, p);
        continue;
      }
      const c = node.content;
      what += c.type === "symlink"
        ? `symlink ${JSON.stringify(c.target)}`
        : c.type === "chardev" || c.type === "blockdev"
        ? `${c.type} ${c.rdev}`
        : c.type === "inline"
        ? `file ${c.data.length}`
        : c.type === "external" || c.type === "external-noverity"
        ? `file ${c.size}`
        : c.type;
      out.push(what);
    }
  };
  out.push(`/ ${root.stat.mode.toString(8)} ${root.stat.uid}:${root.stat.gid}`);
  walk(root, "");
  return out;
}

/** What happened to one input: accepted (and checked), or refused with a clean error. */
async function runOne(tar: Uint8Array, chunk: number): Promise<"accepted" | "refused"> {
  const store = new MemoryStore("sha256");
  let split;
  try {
    split = await splitTarLayer(chunked(tar, chunk), store);
  } catch (e) {
    if (e instanceof CfsError && e.message.length > 0) return "refused";
    throw e;
  }
  // Accepted: the stream gives back exactly the input, and its entries make a readable image.
  const reader = await SplitStreamReader.fromBytes(split.splitstream);
  const parts: Uint8Array[] = [];
  for await (const c of reassembleTar(reader, (id) => store.open(id))) parts.push(c.slice());
  const back = concatBytes(parts);
  assertEquals(back.length, tar.length, "reassembled length");
  assertEquals(sha256Hex(back), sha256Hex(tar), "reassembled bytes");
  assertEquals(split.diffId, "sha256:" + sha256Hex(tar));
  const f = new Flattener();
  f.beginLayer();
  try {
    for await (const e of tarEntriesFromSplitstream(await SplitStreamReader.fromBytes(split.splitstream))) {
      f.apply(e);
    }
    const tree = f.finish();
    const image = writeErofs(tree, { version: 1 });
    fsckMetadata(image, { alg: "sha256" });
    // What the layer says is what the image holds: names, types, modes, owners, link targets,
    // device numbers, sizes (xattrs and mtimes are compared by the fidelity tests).
    assertEquals(shapeOf(readErofs(image, { alg: "sha256" })), shapeOf(tree), "image differs from the tree");
  } catch (e) {
    // The flattener may refuse a layer that is a valid tar (no /usr, a parent that is a file…).
    if (e instanceof CfsError && e.message.length > 0) return "refused";
    throw e;
  }
  return "accepted";
}

export interface BatchResult {
  accepted: number;
  refused: number;
  slowestMs: number;
  slowestIndex: number;
  failure?: string;
  peakRssKiB: number;
}

export async function runBatch(seed: number, start: number, count: number): Promise<BatchResult> {
  const bases = baseTars();
  const out: BatchResult = { accepted: 0, refused: 0, slowestMs: 0, slowestIndex: -1, peakRssKiB: 0 };
  // The unmutated layers are accepted (the generator starts from valid input).
  for (const b of bases) {
    if (await runOne(b, 4096) !== "accepted") out.failure = "a base layer was refused";
  }
  for (let i = start; i < start + count && !out.failure; i++) {
    const rng = new Rng(seed * 1_000_003 + i);
    const tar = mutateTar(rng, rng.pick(bases));
    const chunk = rng.pick([512, 4096, 65536, 1 << 20, rng.int(1, 5000)]);
    const t0 = performance.now();
    try {
      out[await runOne(tar, chunk)]++;
    } catch (e) {
      out.failure = `seed ${seed} mutant ${i} (${tar.length} bytes, chunk ${chunk}): unclean failure: ${
        (e as Error)?.stack ?? e
      }`;
    }
    const ms = performance.now() - t0;
    if (ms > out.slowestMs) {
      out.slowestMs = ms;
      out.slowestIndex = i;
    }
  }
  out.peakRssKiB = peakRssKiB();
  return out;
}

if (import.meta.main) {
  const [seed, start, count] = Deno.args.map(Number);
  console.log(JSON.stringify(await runBatch(seed, start, count)));
}
