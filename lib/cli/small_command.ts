// A command-line parser for single commands without subcommands, for the personalities on the start-up
// critical path (mkcomposefs): commander costs ~35 ms and ~18 MiB to load (with Deno's Node layer, which
// it needs), more than the rest of a small mkcomposefs run (docs/performance.md#mkcomposefs). It accepts
// what commander 14 accepts for such a command and answers the same: the same help text, the same
// `error: …` lines, the same order of checks (test/small_command_test.ts compares it with commander
// on one spec).
import { UsageError } from "../errors.ts";

export interface OptionSpec {
  /** `--name` for a flag, `--name <VALUE>` for an option taking a value. */
  readonly flags: string;
  readonly description: string;
  /** Turns a value into the option's value; throws (a UsageError) for a bad one. */
  readonly parse?: (value: string) => unknown;
}

export interface ArgumentSpec {
  readonly name: string;
  readonly required: boolean;
  readonly description: string;
}

export interface CommandSpec {
  readonly name: string;
  readonly description: string;
  readonly args: readonly ArgumentSpec[];
  readonly options: readonly OptionSpec[];
  /** Text after the help (commander addHelpText("after"), which adds a newline). */
  readonly helpAfter?: string;
}

export type ParsedCommandLine =
  | { help: true }
  | { help: false; opts: Record<string, unknown>; args: string[] };

const HELP_FLAGS = "-h, --help";
const HELP_DESCRIPTION = "display help for command";

/** The `Examples:` section of a command's `--help` (one command line per argument). */
export function examplesText(...lines: string[]): string {
  return "\nExamples:\n" + lines.map((l) => `  ${l}\n`).join("");
}

function longName(o: OptionSpec): string {
  return o.flags.split(" ")[0];
}

/** commander's attribute name: `--print-digest-only` → `printDigestOnly`. */
function attributeName(o: OptionSpec): string {
  return longName(o).slice(2).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function takesValue(o: OptionSpec): boolean {
  return o.flags.includes(" <");
}

/** Optimal string alignment distance (commander's suggestSimilar), capped like commander's. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Math.max(a.length, b.length);
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d[i] = [i];
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let j = 1; j <= b.length; j++) {
    for (let i = 1; i <= a.length; i++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** commander's "(Did you mean …?)" line for an unknown `--option`, or "". */
function suggestion(flag: string, spec: CommandSpec): string {
  if (!flag.startsWith("--")) return "";
  const word = flag.slice(2);
  let similar: string[] = [];
  let best = 3;
  for (const candidate of [...spec.options.map((o) => longName(o).slice(2)), "help"]) {
    if (candidate.length <= 1) continue;
    const distance = editDistance(word, candidate);
    const length = Math.max(word.length, candidate.length);
    if ((length - distance) / length <= 0.4) continue;
    if (distance < best) {
      best = distance;
      similar = [candidate];
    } else if (distance === best) {
      similar.push(candidate);
    }
  }
  similar = similar.sort((a, b) => a.localeCompare(b)).map((c) => `--${c}`);
  if (similar.length > 1) return `\n(Did you mean one of ${similar.join(", ")}?)`;
  return similar.length === 1 ? `\n(Did you mean ${similar[0]}?)` : "";
}

function isHelp(arg: string): boolean {
  return arg === "-h" || arg === "--help";
}

/**
 * Parses `argv` as commander parses a command without subcommands: options anywhere, `--` ends them,
 * `--name=value` for options with a value, a value option takes the next argument whatever it is,
 * the first unknown option sends everything after it to the unknown list (where `-h`/`--help` is
 * looked for). Throws UsageError with commander's message for what commander refuses.
 */
export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): ParsedCommandLine {
  const opts: Record<string, unknown> = {};
  const operands: string[] = [];
  const unknown: string[] = [];
  const byFlag = new Map(spec.options.map((o) => [longName(o), o]));
  const set = (o: OptionSpec, value?: string) => {
    opts[attributeName(o)] = value === undefined ? true : o.parse ? o.parse(value) : value;
  };
  let dest = operands;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      if (dest === unknown) dest.push(arg);
      dest.push(...argv.slice(i + 1));
      break;
    }
    const maybeOption = arg.length > 1 && arg[0] === "-";
    const o = maybeOption ? byFlag.get(arg) : undefined;
    if (o !== undefined) {
      if (!takesValue(o)) {
        set(o);
      } else {
        if (i + 1 >= argv.length) throw new UsageError(`option '${o.flags}' argument missing`);
        set(o, argv[++i]);
      }
      continue;
    }
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 2) {
      const withValue = byFlag.get(arg.slice(0, eq));
      if (withValue !== undefined && takesValue(withValue)) {
        set(withValue, arg.slice(eq + 1));
        continue;
      }
    }
    // A negative number is an operand of a command without subcommands (commander 14).
    if (dest === operands && maybeOption && !/^-(\d+|\d*\.\d+)(e[+-]?\d+)?$/.test(arg)) dest = unknown;
    dest.push(arg);
  }
  if (unknown.some(isHelp)) return { help: true };
  if (unknown.length > 0) {
    const flag = unknown[0];
    if (flag.length > 1 && flag[0] === "-") {
      throw new UsageError(`unknown option '${flag}'${suggestion(flag, spec)}`);
    }
  }
  const args = [...operands, ...unknown];
  spec.args.forEach((a, i) => {
    if (a.required && args[i] === undefined) throw new UsageError(`missing required argument '${a.name}'`);
  });
  if (args.length > spec.args.length) {
    const n = spec.args.length;
    throw new UsageError(
      `too many arguments. Expected ${n} argument${n === 1 ? "" : "s"} but got ${args.length}.`,
    );
  }
  return { help: false, opts, args };
}

/** commander's greedy word wrap of `text` to `width` columns (no wrapping below 40). */
function wrap(text: string, width: number): string {
  if (width < 40) return text;
  return text.split(/\r\n|\n/).map((line) => {
    const chunks = line.match(/[\s]*[^\s]+/g);
    if (chunks === null) return "";
    const lines: string[] = [];
    let cur = chunks[0];
    for (const chunk of chunks.slice(1)) {
      if (cur.length + chunk.length <= width) {
        cur += chunk;
        continue;
      }
      lines.push(cur);
      cur = chunk.trimStart();
    }
    lines.push(cur);
    return lines.join("\n");
  }).join("\n");
}

/** The `--help` text, laid out as commander lays it out for `helpWidth` columns. */
export function helpText(spec: CommandSpec, helpWidth = 80): string {
  const usageArgs = spec.args.map((a) => (a.required ? `<${a.name}>` : `[${a.name}]`)).join(" ");
  const items: [string, string][] = [
    ...spec.options.map((o): [string, string] => [o.flags, o.description]),
    [HELP_FLAGS, HELP_DESCRIPTION],
  ];
  const termWidth = Math.max(...spec.args.map((a) => a.name.length), ...items.map(([t]) => t.length));
  const item = (term: string, description: string) => {
    const body = wrap(description, helpWidth - termWidth - 4).replace(
      /\n/g,
      "\n" + " ".repeat(termWidth + 4),
    );
    return `  ${term.padEnd(termWidth)}  ${body}`;
  };
  const out = [`Usage: ${spec.name} [options]${usageArgs ? " " + usageArgs : ""}`, ""];
  if (spec.description) out.push(wrap(spec.description, helpWidth), "");
  if (spec.args.length > 0) out.push("Arguments:", ...spec.args.map((a) => item(a.name, a.description)), "");
  out.push("Options:", ...items.map(([t, d]) => item(t, d)), "");
  // commander writes added help text with a newline of its own
  return out.join("\n") + (spec.helpAfter === undefined ? "" : spec.helpAfter + "\n");
}
