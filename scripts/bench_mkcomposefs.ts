// Benchmark: `mkcomposefs --from-file` of a C test vector dumpfile (default: cs9-x86_64-developer,
// 64k entries) as one process run, Deno start-up included, the way a user runs it:
//
//   zcat VECTOR.dump.gz | deno run -A main.ts mkcomposefs --from-file - OUT
//   zcat VECTOR.dump.gz | dist/mkcomposefs --from-file - OUT
//
// dist/mkcomposefs is the wrapper script users run (scripts/build.ts: `deno run -A --no-config
// --v8-flags=V8_FLAGS dist/cfsctl.js`, the flags `deno compile` bakes in too), run with DENO set to
// this deno.
//
//   deno run -A scripts/bench_mkcomposefs.ts [--runs 7] [--vector NAME.dump.gz] [--build] [--c PATH]
//                                             [--v8-flags FLAGS]
//
// GNU time measures the deno process (wall, user+sys CPU, peak RSS); zcat runs beside it in the
// pipe, as in the C tool's measurement. The image is checked against the vector's .sha256 each run.
// --build rebuilds dist/cfsctl.js (scripts/build.ts bundle) first; without it an existing bundle is
// used (with a warning when lib/ has newer files) and one is built only when missing. Prints min and
// median of each, and each program's medians as ratios to C mkcomposefs 1.0.8 measured in the same
// rounds (interleaved): --c PATH, else $CFS_C_MKCOMPOSEFS, else the build of
// ../shared/tools/build-c-composefs.sh at /var/tmp/perf-composefs-c (skipped with a note if absent).
// --v8-flags adds a row: the bundle run with `deno run --v8-flags=FLAGS`, FLAGS in place of V8_FLAGS
// (e.g. --max-semi-space-size=2,--no-turbofan: in a run this short TurboFan's compile work may cost more
// CPU than its faster code saves).
import { parseArgs } from "node:util";
import { V8_FLAGS } from "./build.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const VECTORS = `${ROOT}../shared/vectors/composefs-c/`;
const DENO = Deno.execPath();

interface Sample {
  wall: number;
  cpu: number;
  rssMB: number;
}

async function run(cmd: string): Promise<{ ok: boolean; err: string }> {
  // DENO: the deno the wrapper scripts run (dist/mkcomposefs), this one.
  const o = await new Deno.Command("sh", {
    args: ["-c", cmd],
    stdout: "null",
    stderr: "piped",
    env: { DENO },
  }).output();
  return { ok: o.success, err: new TextDecoder().decode(o.stderr) };
}

async function sha256File(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const C_DEFAULT = "/var/tmp/perf-composefs-c/build/tools/mkcomposefs";

/** The C mkcomposefs to compare with, or undefined (with a note) when there is none. */
async function findC(given: string | undefined): Promise<string | undefined> {
  const path = given ?? Deno.env.get("CFS_C_MKCOMPOSEFS") ?? C_DEFAULT;
  try {
    await Deno.stat(path);
    if (!path.endsWith("/mkcomposefs")) throw new Error(`${path}: expected a path ending in /mkcomposefs`);
    return path;
  } catch (e) {
    if (given !== undefined) throw e;
    console.error(
      `note: no C mkcomposefs at ${path} (../shared/tools/build-c-composefs.sh builds one): no ratios`,
    );
    return undefined;
  }
}

/** Load average (1 min) from /proc/loadavg. */
async function loadAverage(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
}

async function timedPipe(vector: string, program: string, out: string, timeFile: string): Promise<Sample> {
  // `program` ends where the tool name goes: "deno run … main.ts " + "mkcomposefs", or a directory
  // (".../dist/", ".../tools/") + "mkcomposefs" for the wrapper script and C.
  const sep = program.endsWith("/") ? "" : " ";
  const cmd = `zcat ${vector} | /usr/bin/time -f "TIME %e %U %S %M" -o ${timeFile} ${program}${sep}` +
    `mkcomposefs --from-file - ${out}`;
  const r = await run(cmd);
  if (!r.ok) throw new Error(`${cmd}: ${r.err}`);
  const m = /TIME ([0-9.]+) ([0-9.]+) ([0-9.]+) ([0-9]+)/.exec(await Deno.readTextFile(timeFile))!;
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), rssMB: Number(m[4]) / 1000 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "7" },
      vector: { type: "string", default: "cs9-x86_64-developer.dump.gz" },
      build: { type: "boolean", default: false },
      c: { type: "string" },
      "v8-flags": { type: "string" },
    },
  });
  const runs = Number(values.runs);
  const vector = VECTORS + values.vector;
  const want = (await Deno.readTextFile(`${vector}.sha256`)).trim().split(/\s+/)[0];
  const bundle = `${ROOT}dist/cfsctl.js`;
  let haveBundle = true;
  try {
    await Deno.stat(bundle);
  } catch {
    haveBundle = false;
  }
  if (values.build || !haveBundle) {
    const r = await run(`cd ${ROOT} && ${DENO} run -A scripts/build.ts bundle`);
    if (!r.ok) throw new Error(`bundle build failed: ${r.err}`);
  } else {
    const built = (await Deno.stat(bundle)).mtime!.getTime();
    const newest = (dir: string): number => {
      let t = 0;
      for (const e of Deno.readDirSync(dir)) {
        const p = `${dir}/${e.name}`;
        t = Math.max(t, e.isDirectory ? newest(p) : Deno.statSync(p).mtime!.getTime());
      }
      return t;
    };
    if (newest(`${ROOT}lib`) > built) {
      console.error("warning: dist/cfsctl.js is older than lib/ (use --build)");
    }
  }
  const programs = [
    { name: "deno run -A main.ts", cmd: `${DENO} run -A ${ROOT}main.ts` },
    { name: `dist/mkcomposefs (bundle, --v8-flags=${V8_FLAGS})`, cmd: `${ROOT}dist/` },
  ];
  const flags = values["v8-flags"];
  if (flags) {
    programs.push({
      name: `deno run -A --no-config --v8-flags=${flags} dist/cfsctl.js`,
      cmd: `${DENO} run -A --no-config --v8-flags=${flags} ${bundle}`,
    });
  }
  const cTool = await findC(values.c);
  if (cTool) programs.push({ name: "C mkcomposefs 1.0.8", cmd: cTool.replace(/mkcomposefs$/, "") });
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-bench-mkcfs-" });
  try {
    const samples = programs.map(() => [] as Sample[]);
    const loads: string[] = [await loadAverage()];
    // Interleaved, so that load changes on a shared machine hit both alike.
    for (let r = 0; r < runs; r++) {
      for (const [i, p] of programs.entries()) {
        const out = `${dir}/image-${i}.cfs`;
        const s = await timedPipe(vector, p.cmd, out, `${dir}/time`);
        const got = await sha256File(out);
        if (got !== want) throw new Error(`${p.name}: image sha256 ${got}, vector says ${want}`);
        await Deno.remove(out);
        samples[i].push(s);
        console.error(
          `run ${r + 1} ${p.name}: ${s.wall.toFixed(2)} s wall, ${s.cpu.toFixed(2)} s CPU, ${
            s.rssMB.toFixed(0)
          } MB`,
        );
      }
    }
    loads.push(await loadAverage());
    console.log(
      `\nmkcomposefs --from-file ${values.vector} (${runs} interleaved rounds, image sha256 checked each run; ` +
        `load average ${loads.join(" → ")})`,
    );
    const ci = cTool ? programs.length - 1 : -1;
    const med = (i: number, f: (s: Sample) => number) => median(samples[i].map(f));
    const ratio = (i: number, f: (s: Sample) => number) =>
      ci < 0 ? "–" : (med(i, f) / med(ci, f)).toFixed(2) + "×";
    console.log(
      "| program | wall s min / median | CPU s min / median | peak RSS MB median | wall / CPU / RSS vs C (medians) |",
    );
    console.log("|---|---|---|---|---|");
    for (const [i, p] of programs.entries()) {
      const w = samples[i].map((s) => s.wall), c = samples[i].map((s) => s.cpu);
      console.log(
        `| ${p.name} | ${Math.min(...w).toFixed(2)} / ${median(w).toFixed(2)} | ${
          Math.min(...c).toFixed(2)
        } / ${median(c).toFixed(2)} | ${med(i, (s) => s.rssMB).toFixed(0)} | ${ratio(i, (s) => s.wall)} / ${
          ratio(i, (s) => s.cpu)
        } / ${ratio(i, (s) => s.rssMB)} |`,
      );
    }
    for (const p of programs) {
      const sep = p.cmd.endsWith("/") ? "" : " ";
      const env = p.cmd === `${ROOT}dist/` ? `DENO=${DENO} ` : "";
      console.log(`- ${p.name}: \`zcat ${vector} | ${env}${p.cmd}${sep}mkcomposefs --from-file - OUT\``);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
