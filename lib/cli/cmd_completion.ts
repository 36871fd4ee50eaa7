// `cfsctl completion bash|zsh|fish`: prints a completion script generated from the command tree.
import { Argument, type Command } from "commander";
import { out } from "./output.ts";
import { examples } from "./program.ts";

export function registerCompletionCommand(program: Command): void {
  examples(
    program
      .command("completion")
      .description("print a shell completion script for cfsctl")
      .addArgument(new Argument("<SHELL>", "bash, zsh or fish").choices(["bash", "zsh", "fish"])),
    "source <(cfsctl completion bash)",
    "cfsctl completion bash > /etc/bash_completion.d/cfsctl",
    'cfsctl completion zsh > "${fpath[1]}/_cfsctl"',
    "cfsctl completion fish > ~/.config/fish/completions/cfsctl.fish",
  ).action(async (shell: "bash" | "zsh" | "fish", _opts: unknown, cmd: Command) => {
    let root = cmd;
    while (root.parent) root = root.parent;
    const { completionScript } = await import("./completion.ts");
    out(completionScript(shell, root));
  });
}
