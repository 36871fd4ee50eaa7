// Benchmark of issue 16 item 1: `cfsctl oci pull containers-storage:…` of the debootstrap rootfs
// image (3 layers, ≈ 400 MB, 11k entries; built by scripts/bench_import.ts) read natively with
// `--local-fetch zerocopy` (reflinks) against the skopeo-proxy path (`--local-fetch disabled`:
// `skopeo experimental-image-proxy` serialises each layer into a tar that we split and copy),
// storage and repository on one loop-mounted xfs (mkfs.xfs -m reflink=1) or btrfs. Runs as root.
//
//   deno run -A scripts/bench_cstorage.ts [--rounds 3] [--fs xfs|btrfs] [--dir /var/tmp/cfsctl-bench-cstorage]
//                                         [--layout /var/tmp/cfsctl-bench/oci-rootfs-gz] [--no-drop-caches]
//                                         [--baseline OTHER_CHECKOUT]
//
// Each round runs every variant once, in turn, into a fresh insecure repository, page cache dropped
// before each run (sync; drop_caches) unless --no-drop-caches. The table gives the median wall time,
// CPU (user+sys of the process tree) and the ratio to the skopeo path measured in the same run; every
// variant must give the same image id. Without kernel fs-verity every file must be read and hashed:
// the same rounds time that physical floor over the layers' diff/ files (cold cache too): one
// `cat | sha256sum` stream, the same split over two processes, `fsverity digest` (C) over them on two
// processes with sha256 and with the repository's sha512, and `cp --reflink` of the diff/ trees (the
// kernel's share of reflinking every file).
import { exists, sh } from "./bench_import.ts";
const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const ROUNDS = Number(opt("--rounds", "3"));
const FS = opt("--fs", "xfs");
const BASE = opt("--dir", "/var/tmp/cfsctl-bench-cstorage");
const LAYOUT = opt("--layout", "/var/tmp/cfsctl-bench/oci-rootfs-gz");
const DROP = !args.includes("--no-drop-caches");
const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();
const MNT = `${BASE}/mnt`;
const STORAGE = `${MNT}/storage`;
const RUNROOT = `${MNT}/run`;

async function setup(): Promise<string> {
  if (Deno.uid() !== 0) throw new Error("run as root (loop mount, podman storage)");
  if (!(await exists(`${LAYOUT}/index.json`))) {
    console.error(`building ${LAYOUT} with scripts/bench_import.ts --prepare-only --only rootfs …`);
    await sh(`${DENO} run -A ${ROOT}scripts/bench_import.ts --prepare-only --only rootfs`);
  }
  await Deno.mkdir(MNT, { recursive: true });
  const mounted = async () => (await sh(`findmnt -n -o FSTYPE ${MNT} || true`)).trim().split("\n")[0];
  // The image of an earlier run is mounted again when it holds the wanted filesystem.
  if (!(await mounted()) && await exists(`${BASE}/fs.img`)) {
    await sh(`mount -o loop ${BASE}/fs.img ${MNT} 2>/dev/null || true`);
  }
  if ((await mounted()) !== FS) {
    await sh(`umount -R ${MNT} 2>/dev/null || true; rm -f ${BASE}/fs.img; truncate -s 8G ${BASE}/fs.img`);
    await sh(FS === "xfs" ? `mkfs.xfs -q -f -m reflink=1 ${BASE}/fs.img` : `mkfs.btrfs -q -f ${BASE}/fs.img`);
    await sh(`mount -o loop ${BASE}/fs.img ${MNT}`);
  }
  const podman = `podman --root ${STORAGE} --runroot ${RUNROOT} --storage-driver overlay`;
  const id = (await sh(`${podman} pull -q oci:${LAYOUT}`)).trim().split("\n").pop()!;
  return id;
}

interface Variant {
  name: string;
  flags: string[];
  /** Another checkout to run instead of this one (--baseline DIR: the same path before a change). */
  root?: string;
}

const VARIANTS: Variant[] = [
  { name: "skopeo proxy (--local-fetch disabled)", flags: ["--local-fetch", "disabled"] },
  { name: "native --local-fetch zerocopy", flags: ["--local-fetch", "zerocopy"] },
  {
    name: "native --local-fetch zerocopy --storage-trust-diff-ids",
    flags: ["--local-fetch", "zerocopy", "--storage-trust-diff-ids"],
  },
];

/** CPU seconds (user+sys) of the children (and their waited-for descendants) so far. */
function childCpu(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[13]) + Number(f[14])) / 100;
}

const DIFFS = `find ${STORAGE}/overlay -mindepth 3 -path '*/diff/*' -type f -print0`;
/** `setup` and `cleanup` run untimed, before the page cache is dropped and after the command. */
const FLOORS: { name: string; cmd: string; setup?: string; cleanup?: string }[] = [
  { name: "floor: cat diff/* | sha256sum (1 process)", cmd: `${DIFFS} | xargs -0 cat | sha256sum` },
  {
    name: "floor: cat | sha256sum on 2 processes",
    cmd: `${DIFFS} | xargs -0 -P2 -n 400 sh -c 'cat "$@" | sha256sum' _ >/dev/null`,
  },
  {
    name: "floor: fsverity digest (C) on 2 processes",
    cmd: `${DIFFS} | xargs -0 -P2 -n 400 fsverity digest >/dev/null`,
  },
  {
    // The repository's algorithm (sha512 by default): the hashing the import cannot avoid.
    name: "floor: fsverity digest --hash-alg=sha512 (C) on 2 processes",
    cmd: `${DIFFS} | xargs -0 -P2 -n 400 fsverity digest --hash-alg=sha512 >/dev/null`,
  },
  {
    // What reflinking every file costs the kernel (create, FICLONE, close), no data read.
    name: "floor: cp -a --reflink=always of the diff/ trees",
    setup: `rm -rf ${MNT}/floor-cp && mkdir ${MNT}/floor-cp`,
    cmd: `for d in ${STORAGE}/overlay/*/diff; do ` +
      `cp -a --reflink=always "$d" ${MNT}/floor-cp/$(basename $(dirname "$d")); done`,
    cleanup: `rm -rf ${MNT}/floor-cp`,
  },
];

async function floor(f: (typeof FLOORS)[number]): Promise<{ secs: number; cpu: number }> {
  if (f.setup) await sh(f.setup);
  await sh("sync");
  if (DROP) await sh("echo 3 > /proc/sys/vm/drop_caches");
  const c0 = childCpu();
  const t0 = performance.now();
  await sh(f.cmd);
  const r = { secs: (performance.now() - t0) / 1000, cpu: childCpu() - c0 };
  if (f.cleanup) await sh(f.cleanup);
  return r;
}

const BASELINE = opt("--baseline", "");
if (BASELINE) {
  VARIANTS.push({
    name: `baseline ${BASELINE}: native --local-fetch zerocopy`,
    flags: ["--local-fetch", "zerocopy"],
    root: BASELINE.endsWith("/") ? BASELINE : BASELINE + "/",
  });
}

async function run(
  v: Variant,
  imageId: string,
): Promise<{ secs: number; cpu: number; verity: string; objects: string }> {
  const repo = `${MNT}/repo`;
  await sh(`rm -rf ${repo}`);
  await sh(`${DENO} run -A ${ROOT}main.ts --repo ${repo} init --insecure`);
  await sh("sync");
  if (DROP) await sh("echo 3 > /proc/sys/vm/drop_caches");
  const ref = `containers-storage:[overlay@${STORAGE}+${RUNROOT}]${imageId}`;
  const cmd = [
    DENO,
    "run",
    "-A",
    `${v.root ?? ROOT}main.ts`,
    "--repo",
    repo,
    "oci",
    "pull",
    "--progress",
    "none",
    ...v.flags,
  ];
  if (!v.flags.includes("disabled")) cmd.push("--storage-root", STORAGE);
  cmd.push(ref, "img");
  const c0 = childCpu();
  const t0 = performance.now();
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped", stderr: "piped" })
    .output();
  const secs = (performance.now() - t0) / 1000;
  const cpu = childCpu() - c0;
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  const verity = /^verity\s+(\S+)/m.exec(text)?.[1] ?? "?";
  const objects = /^objects\s+(.*)$/m.exec(text)?.[1] ?? "?";
  return { secs, cpu, verity, objects };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main() {
  const imageId = await setup();
  const load0 = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  console.log(
    `image ${imageId} from ${LAYOUT}; storage and repository on ${FS} (${MNT}); ${ROUNDS} rounds; load ${load0}`,
  );
  const names = [...VARIANTS.map((v) => v.name), ...FLOORS.map((f) => f.name)];
  const times = new Map<string, number[]>(names.map((n) => [n, []]));
  const cpus = new Map<string, number[]>(names.map((n) => [n, []]));
  const verities = new Set<string>();
  const objects = new Map<string, string>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of VARIANTS) {
      const res = await run(v, imageId);
      times.get(v.name)!.push(res.secs);
      cpus.get(v.name)!.push(res.cpu);
      verities.add(res.verity);
      objects.set(v.name, res.objects);
      console.error(`round ${r + 1}: ${v.name}: ${res.secs.toFixed(2)} s, cpu ${res.cpu.toFixed(2)} s`);
    }
    for (const f of FLOORS) {
      const res = await floor(f);
      times.get(f.name)!.push(res.secs);
      cpus.get(f.name)!.push(res.cpu);
      console.error(`round ${r + 1}: ${f.name}: ${res.secs.toFixed(2)} s, cpu ${res.cpu.toFixed(2)} s`);
    }
  }
  if (verities.size !== 1) {
    throw new Error(`variants disagree on the manifest stream verity: ${[...verities]}`);
  }
  const base = median(times.get(VARIANTS[0].name)!);
  console.log(`\n| variant | median s | runs | CPU s (median) | × skopeo path |`);
  console.log(`|---|---|---|---|---|`);
  for (const n of names) {
    const t = times.get(n)!;
    console.log(
      `| ${n} | ${median(t).toFixed(2)} | ${t.map((x) => x.toFixed(2)).join(", ")} | ${
        median(cpus.get(n)!).toFixed(2)
      } | ${(median(t) / base).toFixed(3)} |`,
    );
  }
  const load1 = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  console.log(`\nload average at the start ${load0}, at the end ${load1}`);
  console.log(`\nsame manifest stream verity in every run: ${[...verities][0].slice(0, 16)}…`);
  for (const [k, o] of objects) console.log(`${k}: objects ${o}`);
  // podman bind-mounts overlay/ onto itself: -R unmounts that too (the image file stays for reruns).
  await sh(`umount -R ${MNT}`).catch((e) => console.error(`could not unmount ${MNT}: ${e.message}`));
}

await main();
