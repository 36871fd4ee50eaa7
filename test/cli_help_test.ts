// `--help` of every command: a description, every option and argument described, an Examples section
// whose lines run the command they document; the personalities too.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli } from "./helpers/cli.ts";
import { buildProgram, type Command, selectedCommandPath } from "../lib/cli/program.ts";
import { REGISTRARS } from "../lib/cli/main.ts";

function allCommands(root: Command): { path: string; cmd: Command }[] {
  const out: { path: string; cmd: Command }[] = [];
  const visit = (cmd: Command, path: string) => {
    out.push({ path, cmd });
    for (const c of cmd.commands) visit(c, `${path} ${c.name()}`);
  };
  visit(root, root.name());
  return out;
}

function helpOf(cmd: Command): string {
  let text = "";
  cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
  cmd.outputHelp();
  return text;
}

Deno.test("help: every cfsctl command has a description, described options/arguments and examples", () => {
  const program = buildProgram(REGISTRARS);
  const cmds = allCommands(program);
  assert(cmds.length >= 26, `only ${cmds.length} commands`);
  for (const { path, cmd } of cmds) {
    assert(cmd.description().length > 0, `${path}: no description`);
    for (const o of cmd.options) assert(o.description.length > 0, `${path} ${o.flags}: no description`);
    for (const a of cmd.registeredArguments) {
      assert(a.description.length > 0, `${path} ${a.name()}: no description`);
    }
    const help = helpOf(cmd);
    const ex = /\nExamples:\n((?: {2}\S.*\n)+)/.exec(help);
    assert(ex, `${path}: no Examples section:\n${help}`);
    // each example runs the command it documents (global options and their values skipped)
    for (const line of ex[1].trim().split("\n").map((l) => l.trim())) {
      if (line.startsWith("source ")) continue;
      const argv = line.split(/\s+/);
      assertEquals(argv[0], "cfsctl", `${path}: example "${line}"`);
      const selected = selectedCommandPath(program, argv.slice(1));
      // a command group's examples may show its subcommands
      const ok = selected === path || (cmd.commands.length > 0 && selected.startsWith(path + " "));
      assert(ok, `${path}: example "${line}" runs ${selected}`);
    }
  }
});

Deno.test("help: --help exits 0 on stdout; `oci help pull` works; the personalities document themselves", async () => {
  for (
    const [args, invokedAs, want] of [
      [["--help"], undefined, /^Usage: cfsctl \[options\] \[command\]/],
      [["oci", "help", "pull"], undefined, /^Usage: cfsctl oci pull \[options\] <IMAGE> \[NAME\]/],
      [["oci", "--help"], undefined, /^Usage: cfsctl oci \[options\] \[command\]/],
      [["--help"], "mkcomposefs", /^Usage: mkcomposefs \[options\] <SOURCE> \[IMAGE\]/],
      [["--help"], "composefs-info", /^Usage: composefs-info \[options\] \[command\]/],
      [["measure-file", "--help"], "composefs-info", /^Usage: composefs-info measure-file/],
      [["--help"], "mount.composefs", /^Usage: mount\.composefs \[-sfnv\] \[-o OPTIONS\] IMAGE MOUNTPOINT/],
      [["mkcomposefs", "--help"], undefined, /^Usage: mkcomposefs /],
    ] as [string[], string | undefined, RegExp][]
  ) {
    const r = await runCli(args, { invokedAs });
    assertEquals([r.code, r.stderr], [0, ""], `${invokedAs ?? "cfsctl"} ${args.join(" ")}`);
    assertMatch(r.stdout, want);
    assertMatch(r.stdout, /\nExamples:\n {2}\S/);
  }
});
