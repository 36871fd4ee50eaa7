// Every performance goal of the project (docs/performance.md) measured against its peer in the same
// run, interleaved (ours, peer, ours, peer …, the order flipped each round), fresh storage for every
// run, as ratios, with the load average next to each figure (the machines here are shared: ratios
// of neighbouring runs are what to trust, not times).
//
//   deno run -A scripts/bench_all.ts [--rounds 3] [--only pull,mkcomposefs,fsverity,startup]
//                                    [--dir /var/tmp/cfsctl-bench-all] [--chroot /var/tmp/peer-trixie]
//                                    [--c-tools /var/tmp/composefs-c/build/tools] [--json FILE]
//                                    [--sets rootfs,small] [--bundle dist/cfsctl.js] [--v8-flags F]
//   deno task bench
//
// What runs (each a separate process, timed by GNU time: wall seconds and the largest process's
// peak RSS):
// - pull: the rootfs (3 gzip layers, debootstrap with /usr, ~400 MB) and small (100,000 files) data
//   sets of scripts/bench_import.ts, pushed to a local docker-registry; `cfsctl oci pull docker://`
//   into an empty insecure repository vs `podman pull` (podman 5.4 from the peer chroot made by
//   ../shared/tools/peer-chroot.sh setup, overlay driver, empty --root each run) vs `gzip -dc | tar -x`
//   of the same layers (+ sync, which our pull does) vs `skopeo copy docker://… oci:…`.
// - mkcomposefs: `mkcomposefs --from-file` of the cs9-developer dump vs C mkcomposefs 1.0.8
//   (../shared/tools/build-c-composefs.sh); wall incl. Deno start-up, peak RSS.
// - fsverity: digest of a 1 GiB file, `composefs-info measure-file` (libcrypto backend) vs
//   `fsverity digest`. The node:crypto fallback cannot be chosen from the command line (the CLI also
//   needs FFI for libc): scripts/bench_fsverity.ts measures it in-process beside the C tool.
// - startup: `cfsctl --version` vs an empty Deno script (the ratio is what load cannot distort).
// Peers that are missing (no chroot, no C build) are reported as such and skipped.
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import { pushImage, startRegistry } from "../test/helpers/registry_server.ts";
import { V8_FLAGS } from "./build.ts";
import { type Layer, makeLayers, makeLayout, rootfsTree, sh, smallTree } from "./bench_import.ts";
import { Trash } from "./bench_trash.ts";

const { values: opt } = parseArgs({
  // `deno task bench -- --only …` hands the task a literal "--" first (Deno 2.9): skip it.
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    only: { type: "string", default: "pull,mkcomposefs,fsverity,startup" },
    dir: { type: "string", default: "/var/tmp/cfsctl-bench-all" },
    chroot: { type: "string", default: "/var/tmp/peer-trixie" },
    "c-tools": { type: "string", default: "/var/tmp/composefs-c/build/tools" },
    json: { type: "string" },
    sets: { type: "string", default: "rootfs,small" },
    bundle: { type: "string" },
    "v8-flags": { type: "string" },
  },
});
const ROUNDS = Number(opt.rounds);
const ONLY = new Set(opt.only!.split(","));
const BASE = opt.dir!;
const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();
const BUNDLE = opt.bundle ?? `${ROOT}dist/cfsctl.js`;
const FLAGS = opt["v8-flags"] ?? V8_FLAGS; // as dist/cfsctl runs it
const CFSCTL = `${DENO} run -A --no-config${FLAGS ? ` --v8-flags=${FLAGS}` : ""} ${BUNDLE}`;
const PEER = `${ROOT}../shared/tools/peer-chroot.sh`;
const CHROOT = opt.chroot!;
const CTOOLS = opt["c-tools"]!;

interface Sample {
  secs: number;
  rssMiB: number;
  /** User + system CPU seconds. */
  cpu: number;
  load: number;
}

/** `cmd` under GNU time (sh -c): wall seconds, peak RSS of the largest process, 1-min load before. */
async function timed(cmd: string, env?: Record<string, string>): Promise<Sample> {
  const load = loadavg()[0];
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "TIME %e %M %U %S", "sh", "-c", cmd],
    stdout: "piped",
    stderr: "piped",
    env,
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd}: ${err.slice(-2000)}`);
  const m = /TIME ([0-9.]+) ([0-9]+) ([0-9.]+) ([0-9.]+)\s*$/.exec(err);
  if (!m) throw new Error(`no timing in: ${err}`);
  return { secs: Number(m[1]), rssMiB: Number(m[2]) / 1024, cpu: Number(m[3]) + Number(m[4]), load };
}

async function exists(p: string): Promise<boolean> {
  return await Deno.lstat(p).then(() => true, () => false);
}

interface Contender {
  name: string;
  /** Before each run (not timed): fresh storage. */
  setup?: () => Promise<void>;
  cmd: string;
  env?: Record<string, string>;
  /** After each run (not timed). */
  cleanup?: () => Promise<void>;
  samples: Sample[];
  error?: string;
}

interface Goal {
  goal: string;
  ours: Contender;
  peers: Contender[];
  /** Goal ratios per peer name (ours / peer must be ≤ this). */
  limits: Record<string, number>;
  /** Peak RSS limit for ours (MiB), when the goal has one. */
  rssLimitMiB?: number;
}

const goals: Goal[] = [];

/** Runs every contender of `g` ROUNDS times, interleaved; the order flips each round. */
async function runGoal(g: Goal): Promise<void> {
  const all = [g.ours, ...g.peers];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? all : [...all].reverse();
    for (const c of order) {
      if (c.error) continue;
      try {
        await c.setup?.();
        await sh("sync");
        const s = await timed(c.cmd, c.env);
        c.samples.push(s);
        console.error(
          `  ${g.goal} | ${c.name}: ${s.secs.toFixed(2)} s (cpu ${s.cpu.toFixed(2)} s), ${
            s.rssMiB.toFixed(0)
          } MiB (load ${s.load.toFixed(1)})`,
        );
      } catch (e) {
        c.error = String(e instanceof Error ? e.message : e).split("\n").slice(0, 4).join(" ");
        console.error(`  ${g.goal} | ${c.name}: FAILED ${c.error}`);
      } finally {
        await c.cleanup?.().catch(() => {});
      }
    }
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * The ratio of ours to a peer: the median of the per-round ratios (each from neighbouring runs, so
 * a burst of load on the machine touches both sides of one ratio).
 */
function ratio(ours: Sample[], peer: Sample[]): number {
  const n = Math.min(ours.length, peer.length);
  const rs: number[] = [];
  for (let i = 0; i < n; i++) rs.push(ours[i].secs / peer[i].secs);
  return median(rs);
}

// ---- pull ---------------------------------------------------------------------------------------------

/** Where runs' outputs are moved (emptied at the end of main). */
const trashes: Trash[] = [];

async function pullGoals(): Promise<AsyncDisposable | null> {
  const sets: [string, Layer[]][] = [];
  const wanted = opt.sets!.split(",");
  if (wanted.includes("rootfs")) {
    const tree = await rootfsTree();
    const top = [...Deno.readDirSync(tree)].map((e) => e.name).sort();
    const rest = top.filter((n) => n !== "usr" && n !== "var" && n !== "etc");
    sets.push(["rootfs", await makeLayers("rootfs", tree, [["usr"], ["var", "etc"], rest])]);
  }
  if (wanted.includes("small")) sets.push(["small", await makeLayers("small", await smallTree(), [["usr"]])]);
  const reg = await startRegistry(`${BASE}/registry`);
  const havePodman = await exists(`${CHROOT}/usr/bin/podman`);
  const chrootTmp = `${CHROOT}/tmp/cfsctl-bench`;
  // Each run's output is moved aside and deleted only at the end (./bench_trash.ts): deleting the
  // previous run's 100,000-file tree first made `tar -x` of that set take 42–64 s instead of ~15 s.
  // A rename, so one trash per filesystem: the peer chroot's and the benchmark directory's.
  const chrootTrash = new Trash(`${CHROOT}/tmp/cfsctl-bench-trash`);
  const trash = new Trash(`${BASE}/trash`);
  trashes.push(chrootTrash, trash);
  for (const [name, layers] of sets) {
    const layout = `${BASE}/oci-${name}`;
    await makeLayout(layout, layers, "gz");
    const ref = `${reg.host}/bench/${name}:gz`;
    await pushImage(`oci:${layout}`, `docker://${ref}`);
    const mb = layers.reduce((a, l) => a + l.size, 0) / 1e6;
    const repo = `${BASE}/repo`;
    const x = `${BASE}/extract`;
    const skopeoDest = `${BASE}/skopeo-oci`;
    const extract = layers.map((l) => `gzip -dc ${l.tar}.gz | tar -x -C ${x}`).join(" && ");
    const ours: Contender = {
      name: "cfsctl oci pull",
      setup: async () => {
        await sh(`rm -rf ${repo} && ${CFSCTL} --repo ${repo} init --insecure > /dev/null`);
      },
      cmd: `${CFSCTL} --repo ${repo} oci pull --progress none --tls-verify=false docker://${ref} bench`,
      cleanup: () => trash.moveAside(repo),
      samples: [],
    };
    const podman: Contender = {
      name: "podman pull",
      setup: () => sh(`rm -rf ${chrootTmp} && mkdir -p ${chrootTmp}`).then(() => {}),
      cmd: `${PEER} run ${CHROOT} -- podman --root /tmp/cfsctl-bench/root --runroot /tmp/cfsctl-bench/run ` +
        `--storage-driver overlay pull -q --tls-verify=false ${ref} > /dev/null`,
      cleanup: () => chrootTrash.moveAside(chrootTmp),
      samples: [],
      error: havePodman ? undefined : `no podman in ${CHROOT} (run ../shared/tools/peer-chroot.sh setup)`,
    };
    const tarx: Contender = {
      name: "gzip -dc | tar -x, + syncfs",
      setup: () => sh(`rm -rf ${x} && mkdir -p ${x}`).then(() => {}),
      cmd: `${extract} && sync -f ${x}`,
      cleanup: () => trash.moveAside(x),
      samples: [],
    };
    const skopeo: Contender = {
      name: "skopeo copy docker:// oci:",
      setup: () => sh(`rm -rf ${skopeoDest}`).then(() => {}),
      cmd: `skopeo copy -q --src-tls-verify=false docker://${ref} oci:${skopeoDest}:bench`,
      cleanup: () => trash.moveAside(skopeoDest),
      samples: [],
    };
    goals.push({
      goal: `pull ${name} (${layers.length} gzip layers, ${mb.toFixed(0)} MB tar)`,
      ours,
      peers: [podman, tarx, skopeo],
      limits: { "podman pull": 0.8, "gzip -dc | tar -x, + syncfs": 1.0 },
      rssLimitMiB: 250,
    });
  }
  return reg;
}

// ---- mkcomposefs --------------------------------------------------------------------------------------

function mkcomposefsGoal(): void {
  const vector = `${ROOT}../shared/vectors/composefs-c/cs9-x86_64-developer.dump.gz`;
  const dump = `${BASE}/cs9.dump`;
  const out = `${BASE}/cs9.img`;
  const c = `${CTOOLS}/mkcomposefs`;
  const prep = () => sh(`[ -f ${dump} ] || zcat ${vector} > ${dump}; rm -f ${out}`).then(() => {});
  goals.push({
    goal: "mkcomposefs --from-file cs9-developer",
    ours: {
      name: "cfsctl mkcomposefs",
      setup: prep,
      cmd: `CFSCTL_INVOKED_AS=mkcomposefs ${CFSCTL} --from-file ${dump} ${out}`,
      samples: [],
    },
    peers: [{
      name: "C mkcomposefs 1.0.8",
      setup: prep,
      cmd: `${c} --from-file ${dump} ${out}`,
      samples: [],
    }],
    limits: { "C mkcomposefs 1.0.8": 0.9 },
  });
}

// ---- fs-verity -------------------------------------------------------------------------------------------

async function fsverityGoal(): Promise<void> {
  const file = `${BASE}/verity-1g.bin`;
  if (!(await exists(file))) {
    await sh(
      `head -c 16777216 /dev/urandom > ${file}.part && for i in $(seq 64); do cat ${file}.part; done > ${file}`,
    );
    await Deno.remove(`${file}.part`);
  }
  await sh(`cat ${file} > /dev/null`);
  const measure = `CFSCTL_INVOKED_AS=composefs-info ${CFSCTL} measure-file ${file} > /dev/null`;
  goals.push({
    goal: "fs-verity digest of 1 GiB (page cache warm)",
    ours: { name: "composefs-info measure-file (libcrypto)", cmd: measure, samples: [] },
    peers: [
      { name: "fsverity digest", cmd: `fsverity digest ${file} > /dev/null`, samples: [] },
    ],
    limits: { "fsverity digest": 0.7 },
  });
}

// ---- start-up ----------------------------------------------------------------------------------------------

async function startupGoal(): Promise<void> {
  const empty = `${BASE}/empty.js`;
  await Deno.writeTextFile(empty, "");
  goals.push({
    goal: "start-up: --version",
    ours: { name: "cfsctl --version", cmd: `${CFSCTL} --version > /dev/null`, samples: [] },
    peers: [{ name: "empty Deno script", cmd: `${DENO} run -A --no-config ${empty}`, samples: [] }],
    limits: {},
  });
}

// ---- main --------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  await Deno.mkdir(BASE, { recursive: true });
  if (!(await exists(BUNDLE))) await sh(`cd ${ROOT} && ${DENO} run -A scripts/build.ts bundle`);
  let reg: AsyncDisposable | null = null;
  try {
    if (ONLY.has("pull")) reg = await pullGoals();
    if (ONLY.has("mkcomposefs")) mkcomposefsGoal();
    if (ONLY.has("fsverity")) await fsverityGoal();
    if (ONLY.has("startup")) await startupGoal();
    if (ONLY.has("mkcomposefs") && !(await exists(`${CTOOLS}/mkcomposefs`))) {
      for (const g of goals.filter((g) => g.goal.startsWith("mkcomposefs"))) {
        g.peers[0].error = `no C mkcomposefs at ${CTOOLS} (run ../shared/tools/build-c-composefs.sh)`;
      }
    }
    for (const g of goals) {
      console.error(`${g.goal}:`);
      await runGoal(g);
    }
  } finally {
    await reg?.[Symbol.asyncDispose]();
    for (const t of trashes) await t.empty();
  }
  report();
}

function report(): void {
  const lines = [
    `${ROUNDS} rounds, interleaved; ratio = median over rounds of ours / peer (neighbouring runs); ` +
    `times and RSS: medians; load = 1-min load average before each run (min–max)`,
    "",
    "| goal | ours: s, peak RSS MiB | peer | peer: s, peak RSS MiB | ours / peer (goal) | load |",
    "|---|---|---|---|---|---|",
  ];
  const fmt = (c: Contender) =>
    c.error && c.samples.length === 0
      ? `failed: ${c.error}`
      : `${median(c.samples.map((s) => s.secs)).toFixed(2)} s, ${
        median(c.samples.map((s) => s.rssMiB)).toFixed(0)
      } MiB`;
  for (const g of goals) {
    for (const p of g.peers) {
      const loads = [...g.ours.samples, ...p.samples].map((s) => s.load);
      const ok = g.ours.samples.length > 0 && p.samples.length > 0;
      const r = ok ? ratio(g.ours.samples, p.samples) : NaN;
      const lim = g.limits[p.name];
      const verdict = !ok
        ? "—"
        : `${r.toFixed(2)}×${lim !== undefined ? ` (≤ ${lim}: ${r <= lim ? "met" : "not met"})` : ""}`;
      const rss = g.rssLimitMiB !== undefined && g.ours.samples.length > 0
        ? ` (RSS ≤ ${g.rssLimitMiB}: ${
          Math.max(...g.ours.samples.map((s) => s.rssMiB)) <= g.rssLimitMiB ? "met" : "not met"
        })`
        : "";
      lines.push(
        `| ${g.goal} | ${fmt(g.ours)}${rss} | ${p.name} | ${fmt(p)} | ${verdict} | ${
          loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : "—"
        } |`,
      );
    }
  }
  console.log(lines.join("\n"));
  if (opt.json) {
    Deno.writeTextFileSync(opt.json, JSON.stringify(goals, null, 2));
  }
}

await main();
