// Runs a command action with the repository the global options name, closed when the action ends.
// The repository code is imported when the action starts (the command tree must stay light).
import type { Command } from "commander";
import type { Repository } from "../repository/repository.ts";
import { globalsOf } from "./program.ts";

export async function withRepo<T>(cmd: Command, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const { openRepoFromGlobals } = await import("./repo_open.ts");
  using repo = await openRepoFromGlobals(globalsOf(cmd));
  return await fn(repo);
}
