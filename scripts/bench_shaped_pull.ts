// Issue 15 goal 3: pull over a shaped link. `cfsctl oci pull docker://…` of the rootfs image (3 gzip
// layers of a debootstrap, scripts/bench_import.ts) against `skopeo copy docker://… oci:…` of the
// same image, both through the same throttling proxy (test/helpers/throttle_proxy.ts: a rate shared
// by all connections per direction, a one-way delay per chunk) in front of Debian's docker-registry.
//
//   deno run -A scripts/bench_shaped_pull.ts [--rounds 3] [--mbit 200] [--rtt-ms 20]
//       [--dir /var/tmp/cfsctl-bench-shaped] [--layout /var/tmp/cfsctl-bench-all/oci-rootfs]
//       [--no-sync-peer] [--unshaped] [--fs root|ext4-journal]
//
// --fs ext4-journal writes both peers' output to a fresh loop-mounted ext4 with a journal (mkfs.ext4's
// default, as on most hosts; needs root) instead of the directory's own filesystem. This machine's root
// ext4 has no journal, and there inode allocation after a mass deletion anywhere on the disk costs up to
// half of a pull's CPU (docs/performance.md#ext4-without-a-journal), which no peer that writes 3 files
// notices.
//
// Every round also times `gzip -dc` of the biggest layer blob (a local file) as the decompression
// floor: if it alone takes over 1.1× skopeo copy, goal 3 cannot be met by any importer that decodes.
// --unshaped adds a third run per round: our pull straight from the registry (no proxy), i.e. the
// import's own time; when the shaped pull takes about as long, the import, not the link, is the
// bound (download and import overlap: the download is the import's input stream).
// Rounds are interleaved (the order flips each round), each run into fresh storage (a new insecure
// repository, an empty oci: directory), `sync` before each. Ratio = median of the per-round ratios
// ours / skopeo. skopeo does not sync what it wrote and our pull does (syncfs per layer), so the
// script also times `sync -f` of skopeo's directory right after its run (reported separately, not in
// the goal's ratio). Our runs use --progress json; from it the script prints, per layer, when its
// download started and ended and its mean rate, so one sees whether layers download in parallel and
// whether the link (not the import) is what they wait for. The bundle dist/cfsctl.js must be built.
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import { cpuUsage } from "node:process";
import { pushImage, startRegistry } from "../test/helpers/registry_server.ts";
import { startThrottleProxy } from "../test/helpers/throttle_proxy.ts";
import { makeLayers, makeLayout, rootfsTree, sh } from "./bench_import.ts";
import { V8_FLAGS } from "./build.ts";
import { Trash } from "./bench_trash.ts";

const { values: opt } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    mbit: { type: "string", default: "200" },
    "rtt-ms": { type: "string", default: "20" },
    dir: { type: "string", default: "/var/tmp/cfsctl-bench-shaped" },
    layout: { type: "string", default: "/var/tmp/cfsctl-bench-all/oci-rootfs" },
    "no-sync-peer": { type: "boolean", default: false },
    unshaped: { type: "boolean", default: false },
    fs: { type: "string", default: "root" },
  },
});
const ROUNDS = Number(opt.rounds);
const MBIT = Number(opt.mbit);
const RTT = Number(opt["rtt-ms"]);
const BASE = opt.dir!;
const ROOT = new URL("../", import.meta.url).pathname;
const BUNDLE = `${ROOT}dist/cfsctl.js`;
const CFSCTL = `${Deno.execPath()} run -A --no-config --v8-flags=${V8_FLAGS} ${BUNDLE}`; // as dist/cfsctl runs it

interface Sample {
  secs: number;
  rssMiB: number;
  load: number;
}

/** `cmd` under GNU time (sh -c): wall seconds, peak RSS, 1-min load average before. */
async function timed(cmd: string): Promise<Sample> {
  const load = loadavg()[0];
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "TIME %e %M", "sh", "-c", cmd],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd}: ${err.slice(-2000)}`);
  const m = /TIME ([0-9.]+) ([0-9]+)\s*$/.exec(err);
  if (!m) throw new Error(`no timing in: ${err}`);
  return { secs: Number(m[1]), rssMiB: Number(m[2]) / 1024, load };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface LayerTimes {
  id: string;
  total: number;
  start: number;
  end: number;
}

/**
 * Per layer, from `--progress json` lines: first "started" and "done" times (ms since the first
 * event) and size; the pull's last event time.
 */
function layerTimeline(text: string): { layers: LayerTimes[]; first: number; last: number } {
  const byId = new Map<string, LayerTimes>();
  let first = Infinity, last = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let e: { type: string; id?: string; time: number; total?: number; transferred?: number };
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    first = Math.min(first, e.time);
    last = Math.max(last, e.time);
    if (!e.id) continue;
    if (e.type === "started") byId.set(e.id, { id: e.id, total: e.total ?? 0, start: e.time, end: 0 });
    else if (e.type === "done") {
      const l = byId.get(e.id);
      if (l) {
        l.end = e.time;
        l.total = e.transferred ?? l.total;
      }
    }
  }
  return { layers: [...byId.values()], first, last };
}

async function prepareLayout(): Promise<string> {
  const layout = opt.layout!;
  if (await Deno.stat(`${layout}/index.json`).then(() => true, () => false)) return layout;
  // Same layers as scripts/bench_all.ts: /usr; /var + /etc; the rest.
  const tree = await rootfsTree();
  const top = [...Deno.readDirSync(tree)].map((e) => e.name).sort();
  const rest = top.filter((n) => n !== "usr" && n !== "var" && n !== "etc");
  await makeLayout(layout, await makeLayers("rootfs", tree, [["usr"], ["var", "etc"], rest]), "gz");
  return layout;
}

async function main(): Promise<void> {
  if (!(await Deno.stat(BUNDLE).then(() => true, () => false))) {
    throw new Error(`${BUNDLE} missing: run deno run -A scripts/build.ts bundle`);
  }
  const layout = await prepareLayout();
  await sh(`rm -rf ${BASE} && mkdir -p ${BASE}`);
  await using reg = await startRegistry(`${BASE}/registry`);
  await pushImage(`oci:${layout}`, `docker://${reg.host}/bench/rootfs:gz`);
  await using proxy = startThrottleProxy(reg.port, { bitsPerSecond: MBIT * 1e6, delayMs: RTT / 2 });
  const ref = `${proxy.host}/bench/rootfs:gz`;
  const index = JSON.parse(await Deno.readTextFile(`${layout}/index.json`));
  const manifest = JSON.parse(
    await Deno.readTextFile(`${layout}/blobs/sha256/${index.manifests[0].digest.slice(7)}`),
  );
  const blobBytes = manifest.layers.reduce((a: number, l: { size: number }) => a + l.size, 0);
  const floor = blobBytes / (MBIT * 1e6 / 8);
  console.log(
    `shaped link: ${MBIT} Mbit/s per direction, ${RTT} ms round trip (throttling proxy ${proxy.host} -> ` +
      `docker-registry ${reg.host}); image: ${manifest.layers.length} layers, ${
        (blobBytes / 1e6).toFixed(1)
      } MB compressed; the link alone needs ${floor.toFixed(2)} s for them`,
  );

  let out = BASE;
  if (opt.fs === "ext4-journal") {
    out = `${BASE}/mnt`;
    await sh(
      `truncate -s 16G ${BASE}/fs.img && mkfs.ext4 -q -F ${BASE}/fs.img && mkdir -p ${out} && ` +
        `mount -o loop ${BASE}/fs.img ${out}`,
    );
  } else if (opt.fs !== "root") throw new Error(`--fs root|ext4-journal, not ${opt.fs}`);
  try {
    await runAll(out, ref, manifest, floor, blobBytes, reg.host, proxy);
  } finally {
    if (out !== BASE) await sh(`umount ${out}; rm -f ${BASE}/fs.img`);
  }
}

async function runAll(
  BASE: string,
  ref: string,
  // deno-lint-ignore no-explicit-any
  manifest: any,
  floor: number,
  blobBytes: number,
  regHost: string,
  proxy: ReturnType<typeof startThrottleProxy>,
): Promise<void> {
  const layout = opt.layout!;
  console.log(`output on ${opt.fs === "ext4-journal" ? "a fresh loop-mounted ext4 with a journal" : BASE}`);
  const repo = `${BASE}/repo`;
  // Runs are moved aside and deleted at the end (./bench_trash.ts): deleting the last round's
  // 11,000-object repository first doubled our pull's system time.
  const trash = new Trash(`${BASE}/trash`);
  const dest = `${BASE}/skopeo-oci`;
  const prog = `${BASE}/progress.jsonl`;
  const ours = {
    name: "cfsctl oci pull",
    setup: () => sh(`rm -rf ${repo} && ${CFSCTL} --repo ${repo} init --insecure > /dev/null`),
    cmd: `${CFSCTL} --repo ${repo} oci pull --progress json --tls-verify=false docker://${ref} bench ` +
      `> /dev/null 2> ${prog}`,
    cleanup: () => trash.moveAside(repo),
    samples: [] as Sample[],
  };
  const skopeo = {
    name: "skopeo copy docker:// oci:",
    setup: () => sh(`rm -rf ${dest}`),
    cmd: `skopeo copy -q --src-tls-verify=false docker://${ref} oci:${dest}:bench`,
    cleanup: () => trash.moveAside(dest),
    samples: [] as Sample[],
  };
  const direct = {
    name: "cfsctl oci pull, unshaped (no proxy)",
    setup: ours.setup,
    cmd: `${CFSCTL} --repo ${repo} oci pull --progress none --tls-verify=false ` +
      `docker://${regHost}/bench/rootfs:gz bench > /dev/null`,
    cleanup: ours.cleanup,
    samples: [] as Sample[],
  };
  // The floor of any importer that must decompress: one gzip stream decodes on one core, so the
  // biggest layer cannot be imported faster than `gzip -dc` of it (read from a local file, no link).
  const biggest = manifest.layers.reduce((
    a: { size: number },
    l: { size: number },
  ) => (l.size > a.size ? l : a));
  const gunzip = {
    name: `gzip -dc of the biggest layer (${(biggest.size / 1e6).toFixed(1)} MB), local file`,
    setup: () => Promise.resolve(""),
    cmd: `gzip -dc ${layout}/blobs/sha256/${biggest.digest.slice(7)} > /dev/null`,
    cleanup: () => Promise.resolve(""),
    samples: [] as Sample[],
  };
  const contenders = opt.unshaped ? [ours, skopeo, direct, gunzip] : [ours, skopeo, gunzip];
  const syncs: number[] = [];
  const timelines: ReturnType<typeof layerTimeline>[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? contenders : [...contenders].reverse();
    for (const c of order) {
      await c.setup();
      await sh("sync");
      const downBefore = proxy.bytesDown;
      const cpuBefore = cpuUsage();
      const s = await timed(c.cmd);
      // CPU of this process during the run: the proxy's cost, taken from the same 2 cores.
      const cpu = cpuUsage(cpuBefore);
      c.samples.push(s);
      const mb = (proxy.bytesDown - downBefore) / 1e6;
      let extra = "";
      if (c === skopeo && !opt["no-sync-peer"]) {
        const t = await timed(`sync -f ${dest}`);
        syncs.push(t.secs);
        extra = `, then sync -f ${t.secs.toFixed(2)} s`;
      }
      if (c === ours) {
        const tl = layerTimeline(await Deno.readTextFile(prog));
        timelines.push(tl);
        extra = "\n" + tl.layers.map((l) =>
          `      layer ${l.id.slice(7, 19)} ${(l.total / 1e6).toFixed(1)} MB: ` +
          `${((l.start - tl.first) / 1000).toFixed(2)}–${((l.end - tl.first) / 1000).toFixed(2)} s ` +
          `(${(l.total / 1e6 / Math.max(0.001, (l.end - l.start) / 1000)).toFixed(1)} MB/s)`
        ).join("\n") + `\n      last event ${((tl.last - tl.first) / 1000).toFixed(2)} s after the first`;
      }
      console.log(
        `round ${r + 1} | ${c.name}: ${s.secs.toFixed(2)} s, ${s.rssMiB.toFixed(0)} MiB, ` +
          `${mb.toFixed(1)} MB through the link, proxy CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s ` +
          `(load ${s.load.toFixed(2)})${extra}`,
      );
      await c.cleanup();
    }
  }
  const ratios = ours.samples.map((s, i) => s.secs / skopeo.samples[i].secs);
  const loads = [...ours.samples, ...skopeo.samples].map((s) => s.load);
  console.log("");
  console.log(`| ${ROUNDS} rounds, interleaved | median s | per round s | peak RSS MiB (median) |`);
  console.log("|---|---|---|---|");
  for (const c of contenders) {
    console.log(
      `| ${c.name} | ${median(c.samples.map((s) => s.secs)).toFixed(2)} | ${
        c.samples.map((s) => s.secs.toFixed(2)).join(", ")
      } | ${median(c.samples.map((s) => s.rssMiB)).toFixed(0)} |`,
    );
  }
  if (syncs.length) {
    console.log(
      `| (skopeo's sync -f afterwards) | ${median(syncs).toFixed(2)} | ${
        syncs.map((s) => s.toFixed(2)).join(", ")
      } | |`,
    );
  }
  console.log(
    `| link floor (${(blobBytes / 1e6).toFixed(1)} MB at ${MBIT} Mbit/s) | ${floor.toFixed(2)} | | |`,
  );
  console.log("");
  const r = median(ratios);
  const floorRatio = median(gunzip.samples.map((x, i) => x.secs / skopeo.samples[i].secs));
  console.log(
    `gzip -dc of the biggest layer / skopeo copy: ${floorRatio.toFixed(2)}× (per round ${
      gunzip.samples.map((x, i) => (x.secs / skopeo.samples[i].secs).toFixed(2)).join(", ")
    }): ${
      floorRatio > 1.1
        ? "over 1.1, so goal 3 is physically unreachable for an importer that decompresses"
        : "under 1.1: decompression alone is not the bound"
    }`,
  );
  console.log(
    `ours / skopeo: ${r.toFixed(2)}× (per round ${ratios.map((x) => x.toFixed(2)).join(", ")}; goal ≤ 1.1: ${
      r <= 1.1 ? "met" : "not met"
    }); ours / link floor ${(median(ours.samples.map((s) => s.secs)) / floor).toFixed(2)}×; ` +
      `load average ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`,
  );
  await trash.empty();
}

if (import.meta.main) await main();
