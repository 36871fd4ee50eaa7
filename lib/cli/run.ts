// Wraps command actions: maps errors to `error: WHAT: WHY` on stderr and to exit codes
// (1 = failure, 2 = usage error). Stack traces only with --debug or CFSCTL_LOG=debug.
import { CfsError, describeError, UsageError } from "../errors.ts";
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

/** Exit code a thrown value maps to. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof UsageError) return 2;
  return 1;
}

export function reportError(e: unknown): number {
  errln(`error: ${describeError(e)}`);
  if (debugEnabled && e instanceof Error && e.stack) errln(e.stack);
  else if (!(e instanceof CfsError) && e instanceof Error && !(e instanceof Deno.errors.NotFound)) {
    // unexpected internal errors: keep one line, hint at --debug
  }
  return exitCodeFor(e);
}

/** Signals an exit code without an error message (e.g. fsck found problems). */
export class ExitCode extends Error {
  constructor(public code: number) {
    super(`exit ${code}`);
  }
}
