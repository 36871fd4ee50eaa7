// Options and option parsers more than one command uses. `addProgressOptions` is the progress pair of
// `fetch` and `oci pull`.
import { type Command, Option } from "commander";
import { UsageError } from "../errors.ts";

/** `--progress <MODE>` and `--progress-fd <N>` (rendered by ./progress_render.ts createReporter). */
export function addProgressOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        "--progress <MODE>",
        "progress output on stderr (auto: bars on a terminal, else plain lines)",
      )
        .choices(["auto", "plain", "json", "none"]).default("auto"),
    )
    .option("--progress-fd <N>", "write progress to this file descriptor");
}

/** `--flag`, `--flag=true` or `--flag=false` (commander gives true, or the string). */
export function parseBool(v: string | boolean | undefined, flag: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === true || v === "true") return true;
  if (v === false || v === "false") return false;
  throw new UsageError(`${flag} takes true or false, not ${JSON.stringify(v)}`);
}

/** A whole number from 0 to `max`, or undefined when the option was not given. */
export function parseCount(v: string | undefined, flag: string, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new UsageError(`${flag} takes a whole number from 0 to ${max}, not ${JSON.stringify(v)}`);
  }
  return n;
}
