// cfsctl-ts entry point. Multi-call: answers as cfsctl, mkcomposefs, composefs-info or mount.composefs
// depending on the name it was invoked under (argv[0], or CFSCTL_INVOKED_AS for wrapper scripts) or on
// a first argument of that name.
import { cliMain } from "./lib/cli/main.ts";

if (import.meta.main) {
  const code = await cliMain(invokedName(), [...Deno.args]);
  Deno.exit(code);
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
