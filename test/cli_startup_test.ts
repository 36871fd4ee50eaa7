// Start-up cost: building the command tree (`--help`, argument errors, completion) must not load the
// OCI, EROFS, repository or mount code; the command actions import it when they run. Checked on the
// static import graph of lib/cli/main.ts (value imports only: `import type` is erased).
import { assert, assertEquals } from "./helpers/assert.ts";
import { PROJECT_ROOT, runCli } from "./helpers/cli.ts";

const STATIC_IMPORT = /^(?:import|export)\s+(?!type\b)[^;]*?\s+from\s+"([^"]+)";|^import\s+"([^"]+)";/gm;

async function staticGraph(entry: string, packages?: Set<string>): Promise<Set<string>> {
  const seen = new Set<string>();
  const visit = async (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    const src = await Deno.readTextFile(PROJECT_ROOT + path);
    for (const m of src.matchAll(STATIC_IMPORT)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith(".")) {
        packages?.add(`${spec} (from ${path})`);
        continue;
      }
      const url = new URL(spec, `file:///${path}`);
      await visit(url.pathname.slice(1));
    }
  };
  await visit(entry);
  return seen;
}

/** Small leaf modules with no imports of their own that the command tree may load. */
const LIGHT = new Set(["lib/errors.ts", "lib/util/format.ts", "lib/util/shutdown.ts"]);

Deno.test("startup: the command tree loads only lib/cli's light modules and lib/errors.ts", async () => {
  const graph = await staticGraph("lib/cli/main.ts");
  const heavy = [...graph].filter((p) => !p.startsWith("lib/cli/") && !LIGHT.has(p));
  assertEquals(heavy, []);
  for (const lazy of ["lib/cli/oci_impl.ts", "lib/cli/image_impl.ts", "lib/cli/repo_open.ts"]) {
    assert(!graph.has(lazy), lazy);
  }
  // the personalities are loaded only when invoked
  for (const p of ["lib/cli/mkcomposefs.ts", "lib/cli/composefs_info.ts", "lib/cli/mount_composefs.ts"]) {
    assert(!graph.has(p), p);
  }
});

Deno.test("startup: the lazily imported modules exist and every command still runs", async () => {
  // one action of each command file, through the real CLI (the dynamic imports resolve)
  for (
    const args of [
      ["--no-repo", "compute-id", "/nonexistent"],
      ["--repo", "/nonexistent/r", "oci", "images"],
      [
        "--repo",
        "/nonexistent/r",
        "gc",
      ],
      ["--repo", "/nonexistent/r", "mount", "x", "/mnt"],
    ]
  ) {
    const r = await runCli(args);
    assertEquals(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    assert(r.stderr.startsWith("error: ") && !r.stderr.includes("Module not found"), r.stderr);
  }
});

Deno.test("startup: mkcomposefs loads no node: module or package (no commander, no Node layer)", async () => {
  // The bundle defers Deno's Node layer for it (scripts/build.ts, lib/cli/node_layer.ts): a static
  // node: import here would be an unloaded binding there.
  const packages = new Set<string>();
  const graph = await staticGraph("lib/cli/mkcomposefs.ts", packages);
  assertEquals([...packages], []);
  for (const heavy of ["lib/cli/program.ts", "lib/tree/scan.ts", "lib/fsverity/hasher.ts"]) {
    assert(!graph.has(heavy), heavy);
  }
  // main.ts reaches it without the command tree (the fetch-thread check is one small file whose own
  // imports are types only)
  assertEquals([...await staticGraph("main.ts")].sort(), [
    "lib/cli/personality.ts",
    "lib/cli/version.ts",
    "lib/http_fetch/fetch_thread_protocol.ts",
    "main.ts",
  ]);
});
