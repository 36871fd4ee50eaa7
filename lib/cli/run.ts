// Wraps command actions: maps errors to `error: WHAT: WHY` on stderr and to exit codes
// (1 = failure, 2 = usage error). Stack traces only with --debug or CFSCTL_LOG=debug.
import { describeError, InvalidArgumentError } from "../errors.ts";
import { errln } from "./output.ts";

export let debugEnabled = (() => {
  try {
    return /debug|trace/i.test(Deno.env.get("CFSCTL_LOG") ?? "");
  } catch {
    return false;
  }
})();

export function setDebug(on: boolean): void {
  if (on) debugEnabled = true;
}

/** Exit code a thrown value maps to: 2 for wrong usage (UsageError is an InvalidArgumentError). */
export function exitCodeFor(e: unknown): number {
  if (e instanceof InvalidArgumentError) return 2;
  return 1;
}

/** The line that follows a usage error: where to read how the command is used. */
export function usageHint(commandPath: string): string {
  return `Try '${commandPath} --help' for more information.`;
}

/**
 * Prints `error: WHAT: WHY` (plus the stack with --debug, plus a `--help` hint for usage errors when
 * `commandPath` is known) and returns the exit code.
 */
export function reportError(e: unknown, commandPath?: string): number {
  errln(`error: ${describeError(e)}`);
  if (debugEnabled && e instanceof Error && e.stack) errln(e.stack);
  const code = exitCodeFor(e);
  if (code === 2 && commandPath !== undefined) errln(usageHint(commandPath));
  return code;
}

/** Signals an exit code without an error message (e.g. fsck found problems). */
export class ExitCode extends Error {
  constructor(public code: number) {
    super(`exit ${code}`);
  }
}
