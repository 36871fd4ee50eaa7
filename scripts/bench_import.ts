// Benchmark of the issue: a full `cfsctl oci pull oci:LAYOUT` into a new insecure repository (through
// the CLI: decompression, tar split, fs-verity digests, object writes, splitstreams, syncfs, EROFS
// commit) against `gzip -dc | tar -x` / `zstd -dc | tar -x` of the same layers onto the same disk.
//
//   deno run -A scripts/bench_import.ts [--rounds 2] [--only rootfs|small] [--dir /var/tmp/cfsctl-bench]
//                                       [--cache /var/tmp/cfsctl-bench-rootfs] [--no-drop-caches]
//                                       [--prepare-only]
//
// Data sets (built once, cached under --cache):
//   rootfs  Debian bookworm `debootstrap --variant=minbase --include=python3,perl,gcc` (≈ 380 MB), split
//           into 3 layers: /usr; /var + /etc; everything else.
//   small   one layer of 100,000 small files (16 B – 8 KiB, 1,000 directories).
// Each as gzip -6 and zstd -3 layers. Page cache dropped before every run (sync; drop_caches) unless
// --no-drop-caches. The reference extracts the layers one after the other into one directory; "+sync"
// adds the `sync` that our pull does itself (syncfs before publishing each layer stream).
// Columns: wall seconds, MB/s of uncompressed tar bytes, peak RSS (GNU time %M: the largest process).
import { V8_FLAGS } from "./build.ts";
const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const ROUNDS = Number(opt("--rounds", "2"));
const ONLY = opt("--only", "");
const BASE = opt("--dir", "/var/tmp/cfsctl-bench");
const CACHE = opt("--cache", "/var/tmp/cfsctl-bench-rootfs");
const DROP = !args.includes("--no-drop-caches");
/** Only build the data sets and OCI layouts (BASE/oci-SET-CODEC), e.g. for profiling a pull. */
const PREPARE_ONLY = args.includes("--prepare-only");
const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();

export async function sh(cmd: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

export async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** Runs `cmd` under GNU time: wall seconds and peak RSS (MiB) of the largest process. */
export async function timed(cmd: string): Promise<{ secs: number; rssMiB: number }> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "TIME %e %M", "sh", "-c", cmd],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd}: ${err}`);
  const m = /TIME ([0-9.]+) ([0-9]+)\s*$/.exec(err);
  if (!m) throw new Error(`no timing in: ${err}`);
  return { secs: Number(m[1]), rssMiB: Number(m[2]) / 1024 };
}

export async function dropCaches(): Promise<void> {
  await sh("sync");
  if (DROP) await sh("echo 3 > /proc/sys/vm/drop_caches");
}

// ---- data sets ------------------------------------------------------------------------------------

export async function rootfsTree(): Promise<string> {
  const dir = `${CACHE}/rootfs`;
  if (await exists(`${CACHE}/.rootfs-complete`)) return dir;
  await Deno.mkdir(CACHE, { recursive: true });
  if (!(await exists(`${dir}/usr/bin`))) {
    const tmp = `${CACHE}/rootfs.tmp`;
    await sh(`rm -rf ${tmp} ${dir}`);
    console.error("debootstrap --variant=minbase --include=python3,perl,gcc bookworm (a few minutes)…");
    await sh(
      `debootstrap --variant=minbase --include=python3,perl,gcc bookworm ${tmp} > ${CACHE}/debootstrap.log 2>&1`,
    );
    // Like an image build's cleanup: no downloaded .debs or package lists.
    await sh(`rm -rf ${tmp}/var/cache/apt/archives/*.deb ${tmp}/var/lib/apt/lists/*`);
    await Deno.rename(tmp, dir);
  }
  await Deno.writeTextFile(`${CACHE}/.rootfs-complete`, "");
  return dir;
}

/**
 * 100,000 files of 16 B – 8 KiB (deterministic), 100 per directory, under usr/share/bench (an image
 * needs /usr: the root directory takes its metadata).
 */
export async function smallTree(): Promise<string> {
  const dir = `${CACHE}/small`;
  if (await exists(`${CACHE}/.small-complete`)) return dir;
  await sh(`rm -rf ${dir}`);
  let x = 12345;
  const rnd = () => (x = (x * 1103515245 + 12345) >>> 0);
  const buf = new Uint8Array(8192);
  for (let i = 0; i < buf.length; i++) buf[i] = rnd() >>> 24;
  for (let d = 0; d < 1000; d++) {
    const sub = `${dir}/usr/share/bench/d${String(d).padStart(3, "0")}`;
    await Deno.mkdir(sub, { recursive: true });
    for (let f = 0; f < 100; f++) {
      const size = 16 + (rnd() % 8177);
      buf[0] = d & 0xff;
      buf[1] = f;
      await Deno.writeFile(`${sub}/f${f}.txt`, buf.subarray(0, size));
    }
  }
  await Deno.writeTextFile(`${CACHE}/.small-complete`, "");
  return dir;
}

export interface Layer {
  tar: string;
  size: number;
  diffId: string;
}

/** Tars (and compresses) each layer once; cached next to the trees. */
export async function makeLayers(name: string, tree: string, parts: string[][]): Promise<Layer[]> {
  const out: Layer[] = [];
  for (let i = 0; i < parts.length; i++) {
    const tar = `${CACHE}/layers/${name}-${i + 1}.tar`;
    if (!(await exists(`${tar}.done`))) {
      await Deno.mkdir(`${CACHE}/layers`, { recursive: true });
      await sh(`tar -C ${tree} --numeric-owner -cf ${tar} ${parts[i].join(" ")}`);
      await sh(`gzip -6 -c ${tar} > ${tar}.gz && zstd -q -3 -f ${tar} -o ${tar}.zst`);
      const diffId = "sha256:" + (await sh(`sha256sum ${tar}`)).split(" ")[0];
      await Deno.writeTextFile(`${tar}.done`, diffId);
    }
    out.push({ tar, size: (await Deno.stat(tar)).size, diffId: await Deno.readTextFile(`${tar}.done`) });
  }
  return out;
}

// ---- OCI layout -----------------------------------------------------------------------------------

const GZ = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZST = "application/vnd.oci.image.layer.v1.tar+zstd";

async function sha256File(path: string): Promise<string> {
  return "sha256:" + (await sh(`sha256sum ${path}`)).split(" ")[0];
}

async function putBlob(
  layout: string,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<{ digest: string; size: number }> {
  const hex = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  await Deno.writeFile(`${layout}/blobs/sha256/${hex}`, bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/** An OCI layout whose layers are hard links to the cached compressed tars. */
export async function makeLayout(layout: string, layers: Layer[], codec: "gz" | "zst"): Promise<void> {
  await sh(`rm -rf ${layout}`);
  await Deno.mkdir(`${layout}/blobs/sha256`, { recursive: true });
  await Deno.writeTextFile(`${layout}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const descs = [];
  for (const l of layers) {
    const blob = `${l.tar}.${codec}`;
    const digest = await sha256File(blob);
    const dst = `${layout}/blobs/sha256/${digest.slice(7)}`;
    await Deno.link(blob, dst).catch(() => Deno.copyFile(blob, dst));
    descs.push({ mediaType: codec === "gz" ? GZ : ZST, digest, size: (await Deno.stat(blob)).size });
  }
  const enc = new TextEncoder();
  const config = await putBlob(
    layout,
    enc.encode(JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: {},
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    })),
  );
  const manifest = await putBlob(
    layout,
    enc.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: descs,
    })),
  );
  await Deno.writeTextFile(
    `${layout}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest }],
    }),
  );
}

// ---- runs -----------------------------------------------------------------------------------------

interface Row {
  set: string;
  codec: string;
  mb: number;
  ours: { secs: number; rssMiB: number }[];
  ref: { secs: number; rssMiB: number }[];
  refSync: { secs: number; rssMiB: number }[];
}

async function measure(set: string, layers: Layer[], codec: "gz" | "zst"): Promise<Row> {
  const layout = `${BASE}/oci-${set}-${codec}`;
  await makeLayout(layout, layers, codec);
  const mb = layers.reduce((a, l) => a + l.size, 0) / 1e6;
  const row: Row = { set, codec: codec === "gz" ? "gzip" : "zstd", mb, ours: [], ref: [], refSync: [] };
  const repo = `${BASE}/repo`;
  const x = `${BASE}/extract`;
  const dec = codec === "gz" ? "gzip -dc" : "zstd -dc";
  const extract = layers.map((l) => `${dec} ${l.tar}.${codec} | tar -x -C ${x}`).join(" && ");
  for (let r = 0; r < ROUNDS; r++) {
    await sh(`rm -rf ${repo} ${x}`);
    await sh(`${DENO} run -A ${ROOT}main.ts --repo ${repo} init --insecure > /dev/null`);
    await dropCaches();
    row.ours.push(
      await timed(
        `${DENO} run -A --v8-flags=${V8_FLAGS} ${ROOT}main.ts --repo ${repo} oci pull --progress none oci:${layout} bench`,
      ),
    );
    await sh(`rm -rf ${repo}`);
    await Deno.mkdir(x);
    await dropCaches();
    row.ref.push(await timed(extract));
    await sh(`rm -rf ${x}`);
    await Deno.mkdir(x);
    await dropCaches();
    row.refSync.push(await timed(`${extract} && sync`));
    await sh(`rm -rf ${x}`);
    const last = (a: { secs: number }[]) => a[a.length - 1].secs.toFixed(2);
    console.error(
      `${set} ${row.codec} round ${r + 1}: cfsctl ${last(row.ours)} s, ref ${last(row.ref)} s, ref+sync ${
        last(row.refSync)
      } s`,
    );
  }
  await sh(`rm -rf ${layout}`);
  return row;
}

function best(a: { secs: number; rssMiB: number }[]): { secs: number; rssMiB: number } {
  return a.reduce((m, v) => (v.secs < m.secs ? v : m));
}

async function main(): Promise<void> {
  await Deno.mkdir(BASE, { recursive: true });
  const sets: [string, Layer[]][] = [];
  if (ONLY !== "small") {
    const tree = await rootfsTree();
    const top = [...Deno.readDirSync(tree)].map((e) => e.name).sort();
    const rest = top.filter((n) => n !== "usr" && n !== "var" && n !== "etc");
    sets.push(["rootfs", await makeLayers("rootfs", tree, [["usr"], ["var", "etc"], rest])]);
  }
  if (ONLY !== "rootfs") {
    const tree = await smallTree();
    sets.push(["small", await makeLayers("small", tree, [["usr"]])]);
  }
  const rows: Row[] = [];
  if (PREPARE_ONLY) console.error(`layouts: ${BASE}/oci-{rootfs,small}-{gz,zst}`);
  for (const [name, layers] of sets) {
    const files = Number(
      (await sh(`for t in ${layers.map((l) => l.tar).join(" ")}; do tar -tf $t; done | wc -l`)).trim(),
    );
    console.error(
      `${name}: ${layers.length} layers, ${
        (layers.reduce((a, l) => a + l.size, 0) / 1e6).toFixed(0)
      } MB, ${files} entries`,
    );
    for (const codec of ["gz", "zst"] as const) {
      if (PREPARE_ONLY) await makeLayout(`${BASE}/oci-${name}-${codec}`, layers, codec);
      else rows.push(await measure(name, layers, codec));
    }
  }
  if (PREPARE_ONLY) return;
  const lines = [
    `best of ${ROUNDS} rounds${DROP ? ", caches dropped before each run" : ""}; MB = uncompressed tar bytes`,
    "| data | codec | MB | cfsctl oci pull s (MB/s, RSS MiB) | dec \\| tar -x s (MB/s) | + sync s | cfsctl / tar-x | cfsctl / +sync |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const o = best(r.ours), t = best(r.ref), s = best(r.refSync);
    const rate = (secs: number) => (r.mb / secs).toFixed(0);
    lines.push(
      `| ${r.set} | ${r.codec} | ${r.mb.toFixed(0)} | ${o.secs.toFixed(2)} (${rate(o.secs)}, ${
        o.rssMiB.toFixed(0)
      }) | ` +
        `${t.secs.toFixed(2)} (${rate(t.secs)}) | ${s.secs.toFixed(2)} | ${(o.secs / t.secs).toFixed(2)} | ` +
        `${(o.secs / s.secs).toFixed(2)} |`,
    );
  }
  console.log(lines.join("\n"));
}

// Also a module: scripts/bench_all.ts reuses the data sets and helpers.
if (import.meta.main) await main();
