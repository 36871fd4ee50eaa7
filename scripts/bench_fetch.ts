// Benchmark: `cfsctl fetch` of a ~400 MB OCI image from a repository served by a static web
// server over loopback (docs/fetch.md) — `python3 -m http.server` and `busybox httpd` — against the
// raw transfer of the same objects from the same server (parallel GETs to /dev/null: no
// verification, no storing), and a second host that already has every layer but one and must
// fetch only what it lacks.
//
//   deno run -A scripts/bench_fetch.ts [--mb 400] [--layers 4] [--jobs 4] [--threads N] [--processes 1]
//        [--rounds 1] [--servers python,busybox] [--keep]
//
// --threads is passed to `cfsctl fetch` (default: its own, the number of cores; 0 = main thread only).
// The repositories a round fetched into are moved aside and deleted only at the end (./bench_trash.ts):
// deleting them first would charge the previous round's cleanup to the next fetch.
//
// Files are random (incompressible), sizes log-uniform between 4 KiB and 4 MiB, spread over the
// layers. CFSCTL_BENCH_BIN picks the program (default: dist/cfsctl.js when built, else main.ts).
import { addImage, tarDirectory } from "../test/helpers/oci_builder.ts";
import { startBusyboxServer, startStaticServer } from "../test/helpers/static_server.ts";
import { Trash } from "./bench_trash.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const args = Deno.args;
const opt = (name: string, d: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : d;
};
const MB = Number(opt("--mb", "400"));
const LAYERS = Number(opt("--layers", "4"));
const JOBS = Number(opt("--jobs", "4"));
const PROCS = opt("--processes", "1");
const THREADS = opt("--threads", "");
const ROUNDS = Number(opt("--rounds", "1"));
const KEEP = args.includes("--keep");
const SERVERS = opt("--servers", "python,busybox").split(",");

const bin = Deno.env.get("CFSCTL_BENCH_BIN") ??
  (await Deno.stat(`${ROOT}dist/cfsctl.js`).then(() => `${ROOT}dist/cfsctl.js`, () => `${ROOT}main.ts`));
const runFlags = bin.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"];

async function cfs(repo: string, cmdArgs: string[]): Promise<string> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: [...runFlags, bin, "--repo", repo, ...cmdArgs],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(o.stdout);
  if (o.code !== 0) throw new Error(`cfsctl ${cmdArgs.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  return text;
}

async function makeLayerDir(dir: string, bytes: number, seed: number): Promise<number> {
  await Deno.mkdir(dir, { recursive: true });
  let x = seed;
  const rnd = () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
  let total = 0;
  let n = 0;
  const buf = new Uint8Array(4 << 20);
  while (total < bytes) {
    const size = Math.min(bytes - total, Math.round(4096 * Math.pow(1024, rnd())));
    for (let o = 0; o < size; o += 65536) crypto.getRandomValues(buf.subarray(o, Math.min(size, o + 65536)));
    const sub = `${dir}/usr/share/l${seed}/d${n % 16}`;
    if (n < 16) await Deno.mkdir(sub, { recursive: true });
    await Deno.writeFile(`${sub}/f${n}`, buf.subarray(0, size));
    total += size;
    n++;
  }
  return n;
}

async function objectUrls(repo: string, base: string): Promise<string[]> {
  const out: string[] = [];
  for await (const d of Deno.readDir(`${repo}/objects`)) {
    if (!d.isDirectory) continue;
    for await (const f of Deno.readDir(`${repo}/objects/${d.name}`)) {
      out.push(`${base}objects/${d.name}/${f.name}`);
    }
  }
  return out;
}

/** CPU seconds (user+sys) of the children waited for so far (/proc/self/stat cutime + cstime). */
function childCpu(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[13]) + Number(f[14])) / 100;
}

const loadavg = () => Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");

/**
 * The server alone: curl fetching every object, JOBS in parallel, to /dev/null — what the server
 * and loopback deliver with a C client that neither hashes nor stores.
 */
async function curlTransfer(urls: string[], jobs: number, dir: string, outDir?: string): Promise<number> {
  const cfg = `${dir}/curl.cfg`;
  const out = (i: number) => outDir ? `${outDir}/o${i}` : "/dev/null";
  await Deno.writeTextFile(cfg, urls.map((u, i) => `url = "${u}"\noutput = "${out(i)}"\n`).join(""));
  const o = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--fail",
      "--parallel",
      "--parallel-max",
      String(jobs),
      "-K",
      cfg,
      "-w",
      "%{size_download}\n",
    ],
    stdout: "piped",
  }).output();
  if (!o.success) throw new Error("curl failed");
  return new TextDecoder().decode(o.stdout).trim().split("\n").reduce((a, l) => a + Number(l), 0);
}

/** The peer: every object GET in parallel, bodies counted and dropped. */
async function rawTransfer(urls: string[], jobs: number): Promise<number> {
  let next = 0;
  let bytes = 0;
  const worker = async () => {
    while (next < urls.length) {
      const r = await fetch(urls[next++]);
      for await (const c of r.body!) bytes += c.length;
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  return bytes;
}

const work = await Deno.makeTempDir({ prefix: "cfsctl-bench-fetch-", dir: "/var/tmp" });
const trash = new Trash(`${work}/trash`);
try {
  console.log(
    `image: ${MB} MB random files in ${LAYERS} layers; ${JOBS} parallel downloads in ${PROCS} process(es); program ${bin}`,
  );
  const layers = [];
  let files = 0;
  for (let i = 0; i < LAYERS; i++) {
    files += await makeLayerDir(`${work}/l${i}`, Math.round((MB << 20) / LAYERS), 17 + i);
    layers.push({ tar: await tarDirectory(`${work}/l${i}`) });
    await Deno.remove(`${work}/l${i}`, { recursive: true });
  }
  await addImage(`${work}/layout`, { tag: "full", layers });
  await addImage(`${work}/layout`, { tag: "base", layers: layers.slice(0, LAYERS - 1) });
  const lastLayerBytes = layers[LAYERS - 1].tar.length;
  layers.length = 0;
  const source = `${work}/source`;
  await cfs(source, ["init", "--insecure"]);
  await cfs(source, ["oci", "pull", `oci:${work}/layout:full`, "img"]);
  for (const kind of SERVERS) {
    const server = kind === "busybox" ? await startBusyboxServer(source) : await startStaticServer(source);
    try {
      const urls = await objectUrls(source, server.url);
      console.log(`server ${kind}; source repository: ${urls.length} objects, ${files} files`);
      for (let round = 1; round <= ROUNDS; round++) {
        // Peers: the server alone (curl), and the raw transfer of the same objects in Deno.
        let t = performance.now();
        const curlBytes = await curlTransfer(urls, JOBS, work);
        const curlS = (performance.now() - t) / 1000;
        t = performance.now();
        const rawBytes = await rawTransfer(urls, JOBS);
        const rawS = (performance.now() - t) / 1000;

        // A fresh host.
        const fresh = `${work}/fresh${round}`;
        await cfs(fresh, ["init", "--insecure"]);
        const cpu0 = childCpu();
        const load0 = loadavg();
        t = performance.now();
        const r = JSON.parse(
          await cfs(fresh, [
            "fetch",
            server.url,
            "refs/oci/img",
            "--json",
            "--progress",
            "none",
            "--jobs",
            String(JOBS),
            ...(THREADS ? ["--threads", THREADS] : []),
          ]),
        );
        const fetchS = (performance.now() - t) / 1000;
        const fetchCpu = childCpu() - cpu0;
        const mbps = r.stats.bytes_fetched / 1e6 / fetchS;
        const curlMbps = curlBytes / 1e6 / curlS;
        console.log(
          `${kind} round ${round}: server alone (curl --parallel ${JOBS} to /dev/null) ${
            (curlBytes / 1e6).toFixed(1)
          } MB in ${curlS.toFixed(2)} s = ${curlMbps.toFixed(0)} MB/s; fetch used ${
            fetchCpu.toFixed(2)
          } s CPU ` +
            `(user+sys, all threads) for ${
              fetchS.toFixed(2)
            } s wall; load ${load0} → ${loadavg()}; fetch/curl ${(mbps / curlMbps).toFixed(2)}`,
        );
        const rawMbps = rawBytes / 1e6 / rawS;
        // The physical floor of a verified fetch on this machine: the C client writing every object to
        // its own file (no hashing), then `fsverity digest` of them all.
        const files = `${work}/curl-files-${kind}-${round}`;
        await Deno.mkdir(files);
        await new Deno.Command("sync").output();
        t = performance.now();
        await curlTransfer(urls, JOBS, work, files);
        const curlFilesS = (performance.now() - t) / 1000;
        t = performance.now();
        const fv = await new Deno.Command("sh", { args: ["-c", `fsverity digest ${files}/* > /dev/null`] })
          .output();
        const digestS = (performance.now() - t) / 1000;
        if (!fv.success) throw new Error("fsverity digest failed");
        await trash.moveAside(files);
        const floorS = curlFilesS + digestS;
        console.log(
          `${kind} round ${round}: curl to files ${curlFilesS.toFixed(2)} s (${
            (curlBytes / 1e6 / curlFilesS).toFixed(0)
          } MB/s)` +
            ` + fsverity digest ${digestS.toFixed(2)} s = ${floorS.toFixed(2)} s (${
              (curlBytes / 1e6 / floorS).toFixed(0)
            } MB/s); fetch / (curl to files + fsverity digest) = ${(fetchS / floorS).toFixed(2)}× in time`,
        );
        console.log(
          `${kind} round ${round}: fetch ${
            (r.stats.bytes_fetched / 1e6).toFixed(1)
          } MB, ${r.stats.objects_fetched} objects (${r.stats.threads} fetch threads) in ` +
            `${fetchS.toFixed(2)} s = ${mbps.toFixed(0)} MB/s (in-process ${r.stats.seconds} s = ` +
            `${(r.stats.bytes_fetched / 1e6 / r.stats.seconds).toFixed(0)} MB/s); raw parallel GETs ` +
            `${(rawBytes / 1e6).toFixed(1)} MB in ${rawS.toFixed(2)} s = ${rawMbps.toFixed(0)} MB/s; ratio ${
              (mbps / rawMbps).toFixed(2)
            }`,
        );

        // A host that already has every layer but the last.
        const partial = `${work}/partial${round}`;
        await cfs(partial, ["init", "--insecure"]);
        await cfs(partial, ["oci", "pull", `oci:${work}/layout:base`, "base"]);
        t = performance.now();
        const p = JSON.parse(
          await cfs(partial, [
            "fetch",
            server.url,
            "refs/oci/img",
            "--json",
            "--progress",
            "none",
            "--jobs",
            String(JOBS),
            ...(THREADS ? ["--threads", THREADS] : []),
          ]),
        );
        const partS = (performance.now() - t) / 1000;
        console.log(
          `${kind} round ${round}: second host (all layers but the last present): fetched ${p.stats.objects_fetched} of ` +
            `${p.stats.objects} objects, ${(p.stats.bytes_fetched / 1e6).toFixed(1)} MB (last layer's tar: ` +
            `${(lastLayerBytes / 1e6).toFixed(1)} MB), ${p.stats.streams_fetched} stream objects, in ${
              partS.toFixed(2)
            } s`,
        );
        const a = JSON.parse(await cfs(source, ["oci", "inspect", "img"]));
        const b = JSON.parse(await cfs(partial, ["oci", "inspect", "img"]));
        if (a.composefs_erofs !== b.composefs_erofs) throw new Error("the second host's image differs");
        await trash.moveAside(fresh);
        await trash.moveAside(partial);
      }
    } finally {
      await server.close();
    }
  }
} finally {
  if (!KEEP) await Deno.remove(work, { recursive: true });
  else console.log(`kept ${work}`);
}
