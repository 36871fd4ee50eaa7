// The cfsctl command tree (commander). Global options are declared here; each group of commands
// registers itself from its own file.
import { Command, CommanderError, Option } from "commander";
import { ExitCode, reportError, setDebug, usageHint } from "./run.ts";
import { err, errln, out } from "./output.ts";

import { VERSION_TEXT } from "./version.ts";
export { VERSION } from "./version.ts";

/** Options valid before any subcommand (README.md#command-reference). */
export interface GlobalOptions {
  repo?: string;
  user?: boolean;
  system?: boolean;
  hash?: "sha256" | "sha512";
  erofsVersion?: 0 | 1 | 2;
  insecure?: boolean;
  requireVerity?: boolean;
  noUpgrade?: boolean;
  noRepo?: boolean;
  debug?: boolean;
}

export { parseErofsVersion } from "./arg_values.ts";
import { parseErofsVersion } from "./arg_values.ts";

/** Commander's `optsWithGlobals()` normalised into GlobalOptions. */
export function globalsOf(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals() as Record<string, unknown>;
  return {
    repo: typeof o.repo === "string" ? o.repo : undefined,
    user: Boolean(o.user),
    system: Boolean(o.system),
    hash: o.hash as GlobalOptions["hash"],
    erofsVersion: o.erofsVersion as GlobalOptions["erofsVersion"],
    insecure: Boolean(o.insecure),
    requireVerity: Boolean(o.requireVerity),
    noUpgrade: o.upgrade === false,
    noRepo: o.repo === false ? true : Boolean(o.noRepo),
    debug: Boolean(o.debug),
  };
}

export type Registrar = (program: Command) => void;

export { examplesText } from "./small_command.ts";
import { examplesText } from "./small_command.ts";

/** Adds an `Examples:` section to a command's `--help`. */
export function examples(cmd: Command, ...lines: string[]): Command {
  return cmd.addHelpText("after", examplesText(...lines));
}

export function buildProgram(registrars: Registrar[]): Command {
  const program = new Command("cfsctl");
  program
    .description("composefs and OCI container images: repositories, EROFS images, mounts")
    .version(VERSION_TEXT, "-V, --version")
    .addOption(new Option("--repo <PATH>", "repository path").conflicts(["user", "system"]))
    .addOption(new Option("--user", "use $HOME/.var/lib/composefs").conflicts(["system"]))
    .option("--system", "use /sysroot/composefs")
    .addOption(
      new Option("--hash <ALG>", "hash for repositories without meta.json").choices(["sha256", "sha512"]),
    )
    .addOption(
      new Option("--erofs-version <N>", "EROFS format for this invocation (0, 1 or 2)").argParser(
        parseErofsVersion,
      ),
    )
    .addOption(new Option("--insecure", "deprecated: treat the repository as insecure").hideHelp())
    .option("--require-verity", "fail if the repository is insecure")
    .option("--no-upgrade", "do not create meta.json for old-format repositories")
    .option("--no-repo", "compute-id / create-dumpfile without consulting a repository")
    .option("--debug", "show stack traces on errors")
    .showHelpAfterError(false)
    .configureOutput({ writeOut: out, writeErr: err })
    .exitOverride()
    .enablePositionalOptions(false);
  program.addHelpText(
    "after",
    examplesText(
      "cfsctl --repo /var/tmp/repo init",
      "cfsctl --repo /var/tmp/repo oci pull oci:examples/demo-image:latest demo",
      "cfsctl --repo /var/tmp/repo oci mount demo /mnt",
      "cfsctl --no-repo compute-id ./rootfs",
      "source <(cfsctl completion bash)",
    ) + "\nWithout --repo/--user/--system the repository is /sysroot/composefs for root, else\n" +
      "~/.var/lib/composefs. Output formats: docs/json-output.md (--json). Exit status: 0 success,\n" +
      "1 failure, 2 usage error. CFSCTL_LOG=debug (or --debug) shows stack traces.\n",
  );
  program.hook("preAction", (_thisCmd, actionCmd) => {
    if (actionCmd.optsWithGlobals().debug) setDebug(true);
  });
  for (const r of registrars) r(program);
  return program;
}

/**
 * The command line of the (sub)command `args` select, as far as they can be followed
 * (e.g. `cfsctl oci tag` for `--repo R oci tag x`): where a usage error points for `--help`.
 */
export function selectedCommandPath(root: Command, args: string[]): string {
  const chain = [root];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") break;
    if (a.startsWith("-")) {
      if (a.includes("=")) continue;
      const opt = chain.flatMap((c) => c.options).find((o) => o.long === a || o.short === a);
      if (opt?.required) i++; // its value is the next word
      continue;
    }
    const cur = chain[chain.length - 1];
    const sub = cur.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    chain.push(sub);
  }
  return chain.map((c) => c.name()).join(" ");
}

/**
 * The exit code for whatever parsing/running `root` with `args` threw. Commander has already printed
 * its own `error: …` line; usage errors get a `--help` hint and exit code 2, failures exit code 1.
 */
export function exitCodeForThrown(e: unknown, root: Command, args: string[]): number {
  if (e instanceof ExitCode) return e.code;
  if (e instanceof CommanderError) {
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return 0;
    // Help shown because a command group was named without a subcommand: a usage error.
    if (e.code === "commander.help") return e.exitCode === 0 ? 0 : 2;
    if (e.exitCode === 0) return 0;
    errln(usageHint(selectedCommandPath(root, args)));
    return 2;
  }
  return reportError(e, selectedCommandPath(root, args));
}

export { Command, CommanderError, Option };
