// Opening the repository a command works on, from the global options (README.md#command-reference).
import { UsageError } from "../errors.ts";
import type { HashAlgorithm } from "../fsverity/object_id.ts";
import { resolveRepoPath } from "../repository/location.ts";
import { type OpenOptions, probeRepositoryAlgorithm, Repository } from "../repository/repository.ts";
import type { GlobalOptions } from "./program.ts";

/** The repository path the global options name (`--repo`, `--user`, `--system`, or by uid). */
export function repoPathFromGlobals(g: GlobalOptions): string {
  return resolveRepoPath({ repo: g.repo, user: g.user, system: g.system });
}

/** Opens the repository for a command (shared lock until `close()`). */
export async function openRepoFromGlobals(
  g: GlobalOptions,
  opts: Pick<OpenOptions, "lenientMeta" | "writePermits"> = {},
): Promise<Repository> {
  if (g.noRepo) throw new UsageError("--no-repo is only supported for compute-id and create-dumpfile");
  return await Repository.open(repoPathFromGlobals(g), {
    hash: g.hash,
    noUpgrade: g.noUpgrade,
    requireVerity: g.requireVerity,
    insecure: g.insecure,
    erofsVersion: g.erofsVersion,
    ...opts,
  });
}

/**
 * The hash for commands that never open a repository (compute-id, compute-karg, create-dumpfile):
 * the repository's meta.json if one is readable (errors swallowed), else `--hash`, else SHA-512.
 */
export async function hashForRepoless(g: GlobalOptions): Promise<HashAlgorithm> {
  const fallback = g.hash ?? "sha512";
  if (g.noRepo) return fallback;
  try {
    const alg = await probeRepositoryAlgorithm(repoPathFromGlobals(g), { noUpgrade: g.noUpgrade });
    if (alg === null) return fallback;
    // A conflicting --hash is an error for the repository, so it falls back to --hash here.
    return g.hash && g.hash !== alg ? g.hash : alg;
  } catch {
    return fallback;
  }
}
