// Dispatch between the multi-call personalities and run the chosen one; returns the exit code.
import { buildProgram, exitCodeForThrown, type Registrar } from "./program.ts";
import { registerRepoCommands } from "./cmd_repo.ts";
import { registerMountCommands } from "./cmd_mount.ts";
import { registerOciCommands } from "./cmd_oci.ts";
import { registerImageCommands } from "./cmd_image.ts";
import { registerCompletionCommand } from "./cmd_completion.ts";
import { registerFetchCommand } from "./cmd_fetch.ts";
import { registerImagesCommand } from "./cmd_images.ts";
import { registerVarlinkCommand } from "./cmd_varlink.ts";
import { registerBootCommands } from "./cmd_boot.ts";
import { type Personality, personalityOf } from "./personality.ts";
import { runShutdownHooks } from "../util/shutdown.ts";

async function runPersonality(p: Personality, args: string[]): Promise<number> {
  switch (p) {
    case "mkcomposefs":
      return (await import("./mkcomposefs.ts")).mkcomposefsMain(args);
    case "composefs-info":
      return (await import("./composefs_info.ts")).composefsInfoMain(args);
    case "mount.composefs":
      return (await import("./mount_composefs.ts")).mountComposefsMain(args);
    case "composefs-setup-root":
      return (await import("./setup_root.ts")).setupRootMain(args);
  }
}

export const REGISTRARS: Registrar[] = [
  registerRepoCommands,
  registerMountCommands,
  registerOciCommands,
  registerImageCommands,
  registerBootCommands,
  registerCompletionCommand,
  registerFetchCommand,
  registerImagesCommand,
  registerVarlinkCommand,
];

export async function cliMain(invokedAs: string, args: string[]): Promise<number> {
  const personality = personalityOf(invokedAs, args);
  if (personality) return await runPersonality(personality.p, personality.args);

  // Started without arguments by systemd socket activation: serve varlink (docs/varlink.md).
  if (args.length === 0 && Deno.env.get("LISTEN_FDS") !== undefined) args = ["varlink"];
  const program = buildProgram(REGISTRARS);
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (e) {
    return exitCodeForThrown(e, program, args);
  } finally {
    // Threads started ahead of need (the hashing pool) are stopped before Deno.exit (lib/util/shutdown.ts).
    await runShutdownHooks();
  }
}
