// Where a repository lives when no path is given (README.md#command-reference): --user, --system, or by uid.
import { InvalidArgumentError } from "../errors.ts";

export const SYSTEM_REPO_PATH = "/sysroot/composefs";

export interface RepoLocation {
  repo?: string;
  user?: boolean;
  system?: boolean;
}

/** The user repository: `$HOME/.var/lib/composefs`. */
export function userRepoPath(): string {
  const home = Deno.env.get("HOME");
  if (!home) throw new InvalidArgumentError("$HOME must be set when in user mode");
  return `${home.replace(/\/+$/, "")}/.var/lib/composefs`;
}

/** Resolves `--repo` / `--user` / `--system` (mutually exclusive); none → system for root, else user. */
export function resolveRepoPath(loc: RepoLocation): string {
  const n = (loc.repo !== undefined ? 1 : 0) + (loc.user ? 1 : 0) + (loc.system ? 1 : 0);
  if (n > 1) throw new InvalidArgumentError("--repo, --user and --system are mutually exclusive");
  if (loc.repo !== undefined) return loc.repo;
  if (loc.system) return SYSTEM_REPO_PATH;
  if (loc.user) return userRepoPath();
  return Deno.uid() === 0 ? SYSTEM_REPO_PATH : userRepoPath();
}
