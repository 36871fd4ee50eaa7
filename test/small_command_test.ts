// lib/cli/small_command.ts parses a command line as commander 14 does: the mkcomposefs spec given to both
// (commander built from the same spec), over fixed and generated argument lists, gives the same
// options, arguments, help text and error lines.
import { Command, CommanderError, Option } from "commander";
import { assertEquals } from "./helpers/assert.ts";
import { type CommandSpec, helpText, parseCommandLine } from "../lib/cli/small_command.ts";
import { MKCOMPOSEFS_SPEC } from "../lib/cli/mkcomposefs.ts";
import { UsageError } from "../lib/errors.ts";

type Outcome =
  | { kind: "help"; text: string }
  | { kind: "parsed"; opts: Record<string, unknown>; args: string[] }
  | { kind: "error"; text: string };

function viaCommander(spec: CommandSpec, argv: string[], width: number): Outcome {
  let out = "", err = "";
  const cmd = new Command(spec.name).description(spec.description);
  for (const a of spec.args) cmd.argument(a.required ? `<${a.name}>` : `[${a.name}]`, a.description);
  for (const o of spec.options) {
    const opt = new Option(o.flags, o.description);
    const parse = o.parse;
    if (parse) opt.argParser((v: string) => parse(v));
    cmd.addOption(opt);
  }
  if (spec.helpAfter !== undefined) cmd.addHelpText("after", spec.helpAfter);
  cmd.configureOutput({
    writeOut: (s) => (out += s),
    writeErr: (s) => (err += s),
    getOutHelpWidth: () => width,
  })
    .exitOverride()
    .showHelpAfterError(false);
  try {
    cmd.parse(argv, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.code === "commander.helpDisplayed"
        ? { kind: "help", text: out }
        : { kind: "error", text: err };
    }
    if (e instanceof UsageError) return { kind: "error", text: `error: ${e.message}\n` };
    throw e;
  }
  return { kind: "parsed", opts: { ...cmd.opts() }, args: cmd.args };
}

function viaSmall(spec: CommandSpec, argv: string[], width: number): Outcome {
  try {
    const r = parseCommandLine(spec, argv);
    return r.help
      ? { kind: "help", text: helpText(spec, width) }
      : { kind: "parsed", opts: r.opts, args: r.args };
  } catch (e) {
    if (e instanceof UsageError) return { kind: "error", text: `error: ${e.message}\n` };
    throw e;
  }
}

const FIXED: string[][] = [
  [],
  ["--help"],
  ["-h"],
  ["src"],
  ["src", "img"],
  ["src", "img", "extra"],
  ["--from-file", "-", "-"],
  ["--bogus", "src", "img"],
  ["--from-fil", "src"],
  ["--print-digest=1"],
  ["--digest-store"],
  ["--digest-store", "--help"],
  ["--digest-store=/x", "src", "img"],
  ["--min-version", "x", "--help"],
  ["--bogus", "--help"],
  ["--", "--help", "x"],
  ["--bogus", "--", "x"],
  ["-5", "img"],
  ["--max-version", "-1"],
  ["-hx"],
  ["--threads=3", "--threads", "4", "a", "b"],
  ["--user-xattr"],
  ["--skip-xattrs", "--skip-devices", "--use-epoch", "--hardlinks", "a"],
  ["--erofs-version", "2", "--min-version=1", "--max-version=0", "a", "b"],
  ["--erofs-version=7", "a"],
];

const TOKENS = [
  "--from-file",
  "--digest-store",
  "--digest-store=d",
  "--min-version",
  "--max-version=1",
  "--erofs-version",
  "--threads",
  "--print-digest",
  "--print-digest-only",
  "--print-digst",
  "--help",
  "-h",
  "--",
  "-",
  "-7",
  "-x",
  "--nope",
  "0",
  "1",
  "2",
  "src",
  "img",
];

/** Deterministic argument lists from TOKENS (a small linear congruential generator). */
function generated(count: number): string[][] {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const lists: string[][] = [];
  for (let i = 0; i < count; i++) {
    const n = Math.floor(next() * 6);
    lists.push(Array.from({ length: n }, () => TOKENS[Math.floor(next() * TOKENS.length)]));
  }
  return lists;
}

Deno.test("small_command: mkcomposefs command lines parse as commander parses them", () => {
  for (const argv of [...FIXED, ...generated(400)]) {
    assertEquals(
      viaSmall(MKCOMPOSEFS_SPEC, argv, 80),
      viaCommander(MKCOMPOSEFS_SPEC, argv, 80),
      argv.join(" "),
    );
  }
});

Deno.test("small_command: the help text equals commander's at several widths", () => {
  for (const width of [40, 60, 80, 100, 132]) {
    assertEquals(
      viaSmall(MKCOMPOSEFS_SPEC, ["--help"], width),
      viaCommander(MKCOMPOSEFS_SPEC, ["--help"], width),
    );
  }
  const bare: CommandSpec = { name: "x", description: "", args: [], options: [] };
  assertEquals(viaSmall(bare, ["-h"], 80), viaCommander(bare, ["-h"], 80));
});
