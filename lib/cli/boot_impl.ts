// What the boot commands (cmd_boot.ts) run, imported when an action starts.
import type { HashAlgorithm } from "../fsverity/object_id.ts";
import { fsverityDigest } from "../fsverity/hasher.ts";
import { writeErofs } from "../erofs/writer.ts";
import { formatKarg } from "../boot/karg.ts";
import { metaHasVerity, readMetaFile } from "../repository/meta_file.ts";
import type { Repository } from "../repository/repository.ts";
import type { Directory } from "../tree/tree.ts";

export { openRepoFromGlobals } from "./repo_open.ts";
export { openNamedImage } from "./oci_impl.ts";
export { bootImageTree, prepareBoot } from "../boot/oci_boot.ts";

/** True when PATH holds a repository whose meta.json has no fs-verity; false when there is none. */
export async function repositoryIsInsecure(path: string, alg: HashAlgorithm): Promise<boolean> {
  try {
    if (!(await readMetaFile(path))) return false;
    return !metaHasVerity(path, alg);
  } catch {
    return false;
  }
}

/** The karg prepare-boot would write for this boot tree: the V1 image if configured, else V2. */
export function bootKarg(repo: Repository, tree: Directory): { karg: string; hex: string; version: 1 | 2 } {
  const versions = repo.erofsVersions();
  const version = versions.includes(1) ? 1 : 2;
  const hex = fsverityDigest(writeErofs(tree, { version }), repo.alg).hex();
  const form = versions.length === 1 && version === 1 ? 1 : 2;
  return { karg: formatKarg(hex, repo.alg, form, repo.insecure), hex, version };
}

/** Where state/deploy/ goes: beside the repository given with --repo, else /sysroot (composefs-rs). */
export function stateRootFor(repoFlag: string | undefined, repoPath: string): string {
  if (repoFlag === undefined) return "/sysroot";
  const p = repoPath.replace(/\/+$/, "");
  return p.includes("/") ? p.slice(0, p.lastIndexOf("/")) || "/" : ".";
}
