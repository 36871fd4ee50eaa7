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

/**
 * V8 flags of the launchers (wrapper scripts, compiled executable). A 2 MiB semi-space instead of
 * V8's default 16 MiB: an import allocates many short-lived objects, and the larger young generation
 * only held garbage — the 100,000-file pull peaked 60–70 MiB lower with it, in the same CPU time
 * (docs/performance.md#memory). Cannot be set from inside the program (node:v8 setFlagsFromString
 * comes after the heap is configured).
 */
export const V8_FLAGS = "--max-semi-space-size=2";
const NAMES = ["mkcomposefs", "composefs-info", "mount.composefs", "composefs-setup-root"];

/** The bindings of an `import CLAUSE from "node:x"` (as esbuild writes it) and the statement that
 *  assigns them from the module `mod` once it is loaded. */
export function lazyNodeImport(clause: string, mod: string): { names: string[]; assign: string } {
  const named = /\{([^}]*)\}/.exec(clause)?.[1];
  const star = /\*\s*as\s+([\w$]+)/.exec(clause)?.[1];
  const def = /^\s*([\w$]+)\s*(,|$)/.exec(clause)?.[1];
  const names: string[] = [];
  const out: string[] = [];
  if (def) {
    names.push(def);
    out.push(`${def} = ${mod}.default;`);
  }
  if (star) {
    names.push(star);
    out.push(`${star} = ${mod};`);
  }
  if (named) {
    const parts = named.split(",").map((p) => p.trim()).filter(Boolean).map((p) => {
      const [from, as] = p.split(/\s+as\s+/);
      names.push(as ?? from);
      return as ? `${from}: ${as}` : from;
    });
    out.push(`({ ${parts.join(", ")} } = ${mod});`);
  }
  return { names, assign: out.join(" ") };
}

/** esbuild's CommonJS shim calls this at the bundle's top level, before the Node layer may be loaded:
 *  it gets a require that loads node:module's createRequire on its first call. */
const CREATE_REQUIRE = "__deno_internal_createRequire";

/**
 * esbuild hoists every `node:` import to module evaluation, which loads Deno's Node layer (30–80 ms,
 * ~14 MiB) before main.ts can answer `--version`, and before mkcomposefs, which mostly does without it
 * (lib/cli/node_layer.ts). The bundle therefore starts with the version fast path; then the node:
 * bindings become variables that one loader assigns: awaited at once, except for the lean
 * personalities (mkcomposefs), whose code awaits it (nodeLayerReady) where it needs the layer.
 */
async function fastStart(file: string): Promise<void> {
  const { VERSION_TEXT } = await import("../lib/cli/version.ts");
  const { PERSONALITIES } = await import("../lib/cli/personality.ts");
  const names: string[] = [];
  const loads: string[] = [];
  let n = 0;
  const body = (await Deno.readTextFile(file)).replace(
    /import\s*(\{[^}]*\}|\*\s*as\s*[\w$]+|[\w$]+(?:\s*,\s*\{[^}]*\})?)\s*from\s*"(node:[\w/]+)";/g,
    (_m, clause: string, spec: string) => {
      const mod = `__node${n++}`;
      const lazy = lazyNodeImport(clause.replace(CREATE_REQUIRE, "__cfsctlCreateRequire"), mod);
      names.push(...lazy.names);
      loads.push(`  const ${mod} = await import("${spec}"); ${lazy.assign}`);
      return "";
    },
  );
  const prelude = `// fast path for --version (see scripts/build.ts)
{
  let name = "cfsctl";
  try { name = Deno.env.get("CFSCTL_INVOKED_AS") ?? name; } catch { /* no env permission */ }
  const a = Deno.args;
  if (!name.includes("composefs") && a.length === 1 && (a[0] === "--version" || a[0] === "-V")) {
    console.log(${JSON.stringify(VERSION_TEXT)});
    Deno.exit(0);
  }
}
// node: imports, loaded by __cfsctlNodeLayer (see scripts/build.ts, lib/cli/node_layer.ts)
let ${[...new Set([...names, "__cfsctlCreateRequire", "__cfsctlNodeLoading"])].join(", ")};
const ${CREATE_REQUIRE} = (url) => { let r; return (id) => (r ??= __cfsctlCreateRequire(url))(id); };
const __cfsctlNodeLayer = () => __cfsctlNodeLoading ??= (async () => {
  // The minified bundle's CommonJS shim calls a global \`require\` (the unminified one makes its own
  // from node:module); provide it for the bundled CommonJS packages (commander).
  const { createRequire } = await import("node:module");
  __cfsctlCreateRequire ??= createRequire;
  globalThis.require ??= createRequire(import.meta.url);
${loads.join("\n")}
})();
globalThis.__cfsctlNodeLayer = __cfsctlNodeLayer;
{
  // The personality (lib/cli/personality.ts): only mkcomposefs waits for its code to ask for the layer.
  let name = "";
  try { name = Deno.env.get("CFSCTL_INVOKED_AS") ?? ""; } catch { /* no env permission */ }
  const lean = name === "mkcomposefs" ||
    (!${JSON.stringify(PERSONALITIES)}.includes(name) && Deno.args[0] === "mkcomposefs");
  if (!lean) await __cfsctlNodeLayer();
}`;
  await Deno.writeTextFile(file, [prelude, body].join("\n"));
}

async function run(args: string[], env?: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const o = await new Deno.Command(deno, { args, cwd: root, env, stdout: "inherit", stderr: "piped" })
    .output();
  const stderr = new TextDecoder().decode(o.stderr);
  await Deno.stderr.write(o.stderr);
  return { code: o.code, stderr };
}

async function bundle(): Promise<number> {
  await Deno.mkdir(dist, { recursive: true });
  // Minified because start-up time grows with the size of the file Deno has to load (0.7 MB → 0.34 MB
  // saves about 30 ms). Not --keep-names: it wraps functions in a helper, which breaks code that is
  // shipped to a worker as source text (lib/linux/tmpfile_batch_thread.ts); no code here depends
  // on function or class names.
  const r = await run([
    "bundle",
    "--quiet",
    "--minify",
    "--platform",
    "deno",
    "-o",
    `${dist}/cfsctl.js`,
    "main.ts",
  ]);
  if (r.code !== 0) return r.code;
  await fastStart(`${dist}/cfsctl.js`);
  for (const name of ["cfsctl", ...NAMES]) {
    const path = `${dist}/${name}`;
    await Deno.remove(path).catch(() => {});
    await Deno.writeTextFile(
      path,
      `#!/bin/sh\n# ${name}: runs the bundled cfsctl-ts with $DENO, the deno on PATH, or this checkout's deno\n` +
        `here=$(dirname "$0")\n` +
        `d=\${DENO:-$(command -v deno || echo "$here/../node_modules/deno/deno")}\n` +
        `CFSCTL_INVOKED_AS=${name} exec "$d" run -A --no-config --v8-flags=${V8_FLAGS} "$here/cfsctl.js" "$@"\n`,
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
  const r = await run(["compile", "-A", "--no-check", `--v8-flags=${V8_FLAGS}`, "-o", out, "main.ts"]);
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

if (import.meta.main) {
  const what = Deno.args[0] ?? "bundle";
  if (what === "bundle") Deno.exit(await bundle());
  if (what === "compile") Deno.exit(await compile());
  console.error("usage: build.ts bundle|compile");
  Deno.exit(2);
}
