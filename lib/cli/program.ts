// The cfsctl command tree (commander). Global options are declared here; each group of commands
// registers itself from its own file.
import { Command, CommanderError, Option } from "commander";
import { UsageError } from "../errors.ts";
import { setDebug } from "./run.ts";
import { err, out } from "./output.ts";

import { VERSION_TEXT } from "./version.ts";
export { VERSION } from "./version.ts";

/** Options valid before any subcommand (spec §1.2). */
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

export function parseErofsVersion(v: string): 0 | 1 | 2 {
  if (v === "0" || v === "1" || v === "2") return Number(v) as 0 | 1 | 2;
  throw new UsageError(`invalid EROFS format version ${JSON.stringify(v)} (expected 0, 1 or 2)`);
}

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
  program.hook("preAction", (_thisCmd, actionCmd) => {
    if (actionCmd.optsWithGlobals().debug) setDebug(true);
  });
  for (const r of registrars) r(program);
  return program;
}

export { Command, CommanderError, Option };
