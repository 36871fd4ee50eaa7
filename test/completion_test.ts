// `cfsctl completion bash|zsh|fish`: the bash script parses (`bash -n`) and completes in a real bash
// (the completion function called with COMP_WORDS/COMP_CWORD as bash sets them); zsh and fish are not
// installed here, so their scripts are checked for every top-level command and option.
import { assert, assertEquals } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { buildProgram } from "../lib/cli/program.ts";
import { REGISTRARS } from "../lib/cli/main.ts";

async function script(shell: string): Promise<string> {
  const r = await runCli(["completion", shell]);
  assertEquals([r.code, r.stderr], [0, ""], shell);
  return r.stdout;
}

/** Sources the script in bash, completes `words` (the last one being completed), returns COMPREPLY. */
async function complete(scriptPath: string, words: string[], cwd?: string): Promise<string[]> {
  const quoted = words.map((w) => `'${w.replaceAll("'", `'\\''`)}'`).join(" ");
  const prog = `source '${scriptPath}'
COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}
COMP_LINE="\${COMP_WORDS[*]}"; COMP_POINT=\${#COMP_LINE}
_cfsctl cfsctl "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const o = await new Deno.Command("bash", { args: ["-c", prog], cwd, stdout: "piped", stderr: "piped" })
    .output();
  const err = new TextDecoder().decode(o.stderr);
  assertEquals([o.code, err], [0, ""], words.join(" "));
  return new TextDecoder().decode(o.stdout).split("\n").filter((l) => l !== "").sort();
}

Deno.test("completion: bash -n accepts the bash script; completion registers for cfsctl", async () => {
  await using d = await tempDir();
  const path = `${d.path}/cfsctl.bash`;
  await Deno.writeTextFile(path, await script("bash"));
  const syntax = await new Deno.Command("bash", { args: ["-n", path], stderr: "piped" }).output();
  assertEquals([syntax.code, new TextDecoder().decode(syntax.stderr)], [0, ""]);
  const reg = await new Deno.Command("bash", {
    args: ["-c", `source '${path}'; complete -p cfsctl`],
    stdout: "piped",
  })
    .output();
  assertEquals(
    new TextDecoder().decode(reg.stdout).trim(),
    "complete -o bashdefault -o filenames -F _cfsctl cfsctl",
  );
});

Deno.test("completion: bash completes commands, subcommands, options, choices and files", async () => {
  await using d = await tempDir();
  const path = `${d.path}/cfsctl.bash`;
  await Deno.writeTextFile(path, await script("bash"));
  await Deno.mkdir(`${d.path}/work`);
  await Deno.writeTextFile(`${d.path}/work/layout.tar`, "");
  await Deno.writeTextFile(`${d.path}/work/other`, "");

  assertEquals(await complete(path, ["cfsctl", "oc"]), ["oci"]);
  assertEquals(await complete(path, ["cfsctl", "oci", "p"]), ["prepare-boot", "pull"]);
  assertEquals(await complete(path, ["cfsctl", "c"]), [
    "cat",
    "completion",
    "compute-id",
    "compute-karg",
    "create-dumpfile",
    "create-image",
  ]);
  // global options and their values are skipped on the way to the subcommand
  assertEquals(await complete(path, ["cfsctl", "--repo", "/tmp/r", "--hash", "sha256", "oci", "im"]), [
    "images",
    "import-layer",
  ]);
  assertEquals(await complete(path, ["cfsctl", "--repo", "/tmp/r", "oci", "i"]), [
    "images",
    "import-layer",
    "inspect",
  ]);
  assertEquals(await complete(path, ["cfsctl", "gc", "--d"]), ["--dry-run"]);
  assertEquals(await complete(path, ["cfsctl", "oci", "layer", "--"]), ["--dumpfile", "--help", "--json"]);
  assertEquals(await complete(path, ["cfsctl", "oci", "pull", "--progress", ""]), [
    "auto",
    "json",
    "none",
    "plain",
  ]);
  assertEquals(await complete(path, ["cfsctl", "--hash", "sha5"]), ["sha512"]);
  assertEquals(await complete(path, ["cfsctl", "completion", "z"]), []);
  // positional arguments and option values without choices complete file names
  assertEquals(await complete(path, ["cfsctl", "oci", "pull", "la"], `${d.path}/work`), ["layout.tar"]);
  assertEquals(await complete(path, ["cfsctl", "--repo", "o"], `${d.path}/work`), ["other"]);
  // nothing to complete for a command without arguments
  assertEquals(await complete(path, ["cfsctl", "oci", "images", ""], `${d.path}/work`), []);
});

Deno.test("completion: zsh and fish scripts name every top-level command and every option", async () => {
  const program = buildProgram(REGISTRARS);
  const top = program.commands.map((c) => c.name());
  const ociSubs = program.commands.find((c) => c.name() === "oci")!.commands.map((c) => c.name());
  const zsh = await script("zsh");
  const fish = await script("fish");
  assert(zsh.startsWith("#compdef cfsctl\n"));
  assert(fish.includes("complete -c cfsctl -f\n"));
  for (const name of top) {
    assert(zsh.includes(`'${name}:`), `zsh: ${name}`);
    assert(fish.includes(`-a '${name}'`), `fish: ${name}`);
  }
  for (const name of ociSubs) {
    assert(zsh.includes(`'${name}:`), `zsh: oci ${name}`);
    assert(fish.includes(`-n '__cfsctl_at \\'oci\\'' -a '${name}'`), `fish: oci ${name}`);
  }
  for (const long of ["--repo", "--progress", "--dry-run", "--backing-path-only", "--json"]) {
    assert(zsh.includes(`'${long}:`), `zsh: ${long}`);
    assert(fish.includes(` -l ${long.slice(2)}`), `fish: ${long}`);
  }
  // values: choices offered, files for free-form values
  assert(fish.includes("-l progress -x -a 'auto plain json none'"), "fish: --progress choices");
  assert(fish.includes("-l repo -r -F"), "fish: --repo takes a path");
  assert(zsh.includes("'--progress') choices=('auto' 'plain' 'json' 'none')"), "zsh: --progress choices");
});

Deno.test("completion: an unknown shell is a usage error", async () => {
  const r = await runCli(["completion", "tcsh"]);
  assertEquals(r.code, 2);
  assertEquals(
    r.stderr,
    "error: command-argument value 'tcsh' is invalid for argument 'SHELL'. Allowed choices are bash, zsh, fish.\n" +
      "Try 'cfsctl completion --help' for more information.\n",
  );
});
