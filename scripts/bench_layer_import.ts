// Benchmark: importing a ~300 MB gzip / zstd layer (made from /usr) into a repository on disk,
// against `gzip -dc | tar -x` / `zstd -dc | tar -x` onto the same disk. Wall time, MB/s of
// uncompressed tar, peak RSS (GNU time's %M: the largest process of the pipeline).
//
//   deno run -A scripts/bench_layer_import.ts [--mb 300] [--dir /var/tmp/cfs-bench-layer] [--keep]
//
// Internally re-runs itself with `--import MEDIATYPE BLOB REPO DIFFID` for each measured import.
import { decompressLayer } from "../lib/oci/media_types.ts";
import { splitTarLayer } from "../lib/oci/layer_split.ts";
import { Repository } from "../lib/repository/repository.ts";

const GZ = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZST = "application/vnd.oci.image.layer.v1.tar+zstd";

async function importOne(mt: string, blob: string, repoPath: string, diffId: string): Promise<void> {
  const repo = await Repository.open(repoPath);
  try {
    const f = await Deno.open(blob);
    const res = await splitTarLayer(decompressLayer(f.readable, mt), repo, { expectedDiffId: diffId });
    await Deno.writeFile(`${repoPath}/layer.splitstream`, res.splitstream);
    console.log(JSON.stringify({
      entries: res.entries,
      objects: res.objects,
      splitstreamBytes: res.splitstream.length,
      inline: res.inlineSize,
    }));
  } finally {
    repo.close();
  }
}

async function sh(cmd: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

/** Runs `cmd` under GNU time; returns seconds, peak RSS (MiB) and the command's stdout. */
async function timed(cmd: string): Promise<{ secs: number; rssMiB: number; out: string }> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "TIME %e %M", "sh", "-c", cmd],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd}: ${err}`);
  const m = /TIME ([0-9.]+) ([0-9]+)/.exec(err)!;
  return { secs: Number(m[1]), rssMiB: Number(m[2]) / 1024, out: new TextDecoder().decode(out.stdout) };
}

/** Picks files under /usr until `limit` bytes; returns the list for tar -T. */
async function pickFiles(limit: number): Promise<string[]> {
  const list: string[] = [];
  let total = 0;
  async function walk(dir: string): Promise<boolean> {
    list.push(dir.slice(1));
    const names: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e);
    names.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of names) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) {
        if (await walk(p)) return true;
      } else {
        list.push(p.slice(1));
        if (e.isFile) total += (await Deno.lstat(p)).size;
        if (total >= limit) return true;
      }
    }
    return false;
  }
  // /usr/share first: many small files, as in real image layers; then libraries and binaries.
  list.push("usr");
  for (const d of ["/usr/share", "/usr/lib", "/usr/bin"]) if (await walk(d)) break;
  return list;
}

async function main() {
  const args = Deno.args;
  if (args[0] === "--import") return await importOne(args[1], args[2], args[3], args[4]);
  const mb = Number(args[args.indexOf("--mb") + 1] ?? 300) || 300;
  const base = args.includes("--dir") ? args[args.indexOf("--dir") + 1] : "/var/tmp/cfs-bench-layer";
  const keep = args.includes("--keep");
  await Deno.remove(base, { recursive: true }).catch(() => {});
  await Deno.mkdir(base, { recursive: true });
  try {
    const list = await pickFiles(mb * 1024 * 1024);
    await Deno.writeTextFile(`${base}/list`, list.join("\n") + "\n");
    await sh(`tar -C / --no-recursion -cf ${base}/layer.tar -T ${base}/list`);
    const tarSize = (await Deno.stat(`${base}/layer.tar`)).size;
    const diffId = "sha256:" + (await sh(`sha256sum ${base}/layer.tar`)).split(" ")[0];
    await sh(`gzip -6 -c ${base}/layer.tar > ${base}/layer.tar.gz`);
    await sh(`zstd -q -3 -c ${base}/layer.tar > ${base}/layer.tar.zst`);
    const files = list.length;
    console.log(`layer: ${(tarSize / 1e6).toFixed(0)} MB uncompressed, ${files} entries, diff_id ${diffId}`);
    const self = new URL(import.meta.url).pathname;
    const deno = Deno.execPath();
    const rows: string[] = [];
    for (
      const [name, mt, blob, cli] of [["gzip", GZ, "layer.tar.gz", "gzip -dc"], [
        "zstd",
        ZST,
        "layer.tar.zst",
        "zstd -dc",
      ]]
    ) {
      for (let round = 0; round < 2; round++) {
        const repo = `${base}/repo-${name}`;
        await Deno.remove(repo, { recursive: true }).catch(() => {});
        await Repository.init(repo, { insecure: true });
        await sh("sync");
        const ours = await timed(`${deno} run -A ${self} --import ${mt} ${base}/${blob} ${repo} ${diffId}`);
        await sh("sync");
        const x = `${base}/x-${name}`;
        await Deno.remove(x, { recursive: true }).catch(() => {});
        await Deno.mkdir(x);
        const ref = await timed(`${cli} ${base}/${blob} | tar -x -C ${x}`);
        await Deno.remove(x, { recursive: true });
        await Deno.remove(repo, { recursive: true });
        const mbs = (s: number) => (tarSize / 1e6 / s).toFixed(0);
        rows.push(
          `${name} #${round + 1}: cfsctl-ts split ${ours.secs.toFixed(2)} s (${mbs(ours.secs)} MB/s, ` +
            `peak RSS ${ours.rssMiB.toFixed(0)} MiB) ${ours.out.trim()} | ${cli} | tar -x ${
              ref.secs.toFixed(2)
            } s ` +
            `(${mbs(ref.secs)} MB/s, peak RSS ${ref.rssMiB.toFixed(0)} MiB)`,
        );
        console.log(rows[rows.length - 1]);
      }
    }
  } finally {
    if (!keep) await Deno.remove(base, { recursive: true }).catch(() => {});
  }
}

await main();
