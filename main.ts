// cfsctl-ts entry point. Multi-call: answers as cfsctl, mkcomposefs, composefs-info or mount.composefs
// depending on the name it was invoked under (argv[0], or CFSCTL_INVOKED_AS for wrapper scripts) or on
// a first argument of that name. Everything is loaded lazily so `--version` starts fast.
import { VERSION_TEXT } from "./lib/cli/version.ts";
import { personalityOf } from "./lib/cli/personality.ts";
import { isFetchThread } from "./lib/http_fetch/fetch_thread_protocol.ts";

if (isFetchThread()) {
  // The bundle runs as a fetch thread's module too (lib/http_fetch/fetch_threads.ts).
  await import("./lib/http_fetch/fetch_thread.ts");
} else if (import.meta.main) {
  const name = invokedName();
  const args = [...Deno.args];
  if (
    (name === "cfsctl" || !name.includes("composefs")) && args.length === 1 &&
    (args[0] === "--version" || args[0] === "-V")
  ) {
    console.log(VERSION_TEXT);
    Deno.exit(0);
  }
  if (name === "composefs-setup-root") {
    // On the boot's critical path: load only setup-root, not the command tree.
    const { setupRootMain } = await import("./lib/cli/setup_root.ts");
    Deno.exit(await setupRootMain(args));
  }
  const personality = personalityOf(name, args);
  if (personality?.p === "mkcomposefs") {
    // Start-up is a large part of a mkcomposefs run: load only it (no command tree, no commander).
    const { mkcomposefsMain } = await import("./lib/cli/mkcomposefs.ts");
    Deno.exit(await mkcomposefsMain(personality.args));
  }
  const { cliMain } = await import("./lib/cli/main.ts");
  Deno.exit(await cliMain(name, args));
}

function invokedName(): string {
  try {
    const env = Deno.env.get("CFSCTL_INVOKED_AS");
    if (env) return env;
  } catch { /* no env permission */ }
  try {
    const cmdline = Deno.readFileSync("/proc/self/cmdline");
    const end = cmdline.indexOf(0);
    const argv0 = new TextDecoder().decode(cmdline.subarray(0, end < 0 ? cmdline.length : end));
    return argv0.slice(argv0.lastIndexOf("/") + 1);
  } catch {
    return "cfsctl";
  }
}
