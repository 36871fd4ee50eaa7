// Builds the program for distribution.
//   deno run -A scripts/build.ts bundle    → dist/cfsctl.js (one file; runs with only `deno`), plus
//                                            wrapper scripts dist/{cfsctl,mkcomposefs,composefs-info,mount.composefs}
//   deno run -A scripts/build.ts compile   → dist/cfsctl (one self-contained executable) and the
//                                            names mkcomposefs, composefs-info, mount.composefs as symlinks to it
// `deno compile` needs Deno's `denort` base binary. It is downloaded from dl.deno.land, which these
// build machines cannot reach, and it is not on npm: set DENORT_BIN=/path/to/denort (from a machine with
// internet: `deno compile` caches it under $DENO_DIR/dl/) to build here.
const root = new URL("../", import.meta.url).pathname;
const dist = `${root}dist`;
const deno = Deno.execPath();
const NAMES = ["mkcomposefs", "composefs-info", "mount.composefs"];

async function run(args: string[], env?: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const o = await new Deno.Command(deno, { args, cwd: root, env, stdout: "inherit", stderr: "piped" })
    .output();
  const stderr = new TextDecoder().decode(o.stderr);
  await Deno.stderr.write(o.stderr);
  return { code: o.code, stderr };
}

async function bundle(): Promise<number> {
  await Deno.mkdir(dist, { recursive: true });
  const r = await run(["bundle", "--quiet", "--platform", "deno", "-o", `${dist}/cfsctl.js`, "main.ts"]);
  if (r.code !== 0) return r.code;
  for (const name of ["cfsctl", ...NAMES]) {
    const path = `${dist}/${name}`;
    await Deno.remove(path).catch(() => {});
    await Deno.writeTextFile(
      path,
      `#!/bin/sh\n# ${name}: runs the bundled cfsctl-ts with $DENO, the deno on PATH, or this checkout's deno\n` +
        `here=$(dirname "$0")\n` +
        `d=\${DENO:-$(command -v deno || echo "$here/../node_modules/deno/deno")}\n` +
        `CFSCTL_INVOKED_AS=${name} exec "$d" run -A --no-config "$here/cfsctl.js" "$@"\n`,
    );
    await Deno.chmod(path, 0o755);
  }
  console.error(`built ${dist}/cfsctl.js and wrappers ${["cfsctl", ...NAMES].join(", ")}`);
  return 0;
}

async function compile(): Promise<number> {
  await Deno.mkdir(dist, { recursive: true });
  const out = `${dist}/cfsctl`;
  await Deno.remove(out).catch(() => {});
  const r = await run(["compile", "-A", "--no-check", "-o", out, "main.ts"]);
  if (r.code !== 0) {
    if (/denort|dl\.deno\.land|download/i.test(r.stderr) || !Deno.env.get("DENORT_BIN")) {
      console.error(
        "\nerror: deno compile needs Deno's `denort` base binary, which it downloads from dl.deno.land;\n" +
          "this machine cannot reach it and no npm package ships it. Build on a machine with internet, or\n" +
          "set DENORT_BIN=/path/to/denort (the file deno compile caches under $DENO_DIR/dl/release/…).\n" +
          "Meanwhile `deno task bundle` builds dist/cfsctl.js, which runs with only the deno executable.",
      );
    }
    return r.code;
  }
  for (const name of NAMES) {
    await Deno.remove(`${dist}/${name}`).catch(() => {});
    await Deno.symlink("cfsctl", `${dist}/${name}`);
  }
  console.error(`built ${out}; ${NAMES.join(", ")} link to it`);
  return 0;
}

const what = Deno.args[0] ?? "bundle";
if (what === "bundle") Deno.exit(await bundle());
if (what === "compile") Deno.exit(await compile());
console.error("usage: build.ts bundle|compile");
Deno.exit(2);
