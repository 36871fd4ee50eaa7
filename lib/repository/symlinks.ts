// Relative symlinks inside the repository (docs/repository.md#layout): targets are the shortest relative path
// between link and target, and links are replaced atomically so a reader never sees a missing
// or half-made link.
import { RepositoryError } from "../errors.ts";

/**
 * Target string for a link at `linkPath` pointing to `targetPath` (both relative to the repository
 * root, `/`-separated): drop the leading components the link's directory shares with the target,
 * climb one `..` per remaining directory component of the link, then descend into the target.
 */
export function relativeTarget(linkPath: string, targetPath: string): string {
  const linkDir = linkPath.split("/").filter((c) => c !== "");
  linkDir.pop();
  const target = targetPath.split("/").filter((c) => c !== "");
  let common = 0;
  while (common < linkDir.length && common < target.length - 1 && linkDir[common] === target[common]) {
    common++;
  }
  const up = linkDir.slice(common).map(() => "..");
  return [...up, ...target.slice(common)].join("/");
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

function randomAlnum(n: number): string {
  const r = crypto.getRandomValues(new Uint8Array(n));
  let s = "";
  for (let i = 0; i < n; i++) s += ALNUM[r[i] % ALNUM.length];
  return s;
}

async function readLinkOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readLink(path);
  } catch {
    return null;
  }
}

/**
 * Makes `absLink` a symlink to `target`. An existing link with the same target is kept; anything
 * else is replaced by renaming a freshly made `.symlink-XXXXXXXXXXXX` over it.
 */
export async function replaceSymlink(absLink: string, target: string): Promise<void> {
  try {
    await Deno.symlink(target, absLink);
    return;
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
  if ((await readLinkOrNull(absLink)) === target) return;
  const dir = absLink.slice(0, absLink.lastIndexOf("/") + 1);
  for (let attempt = 0; attempt < 16; attempt++) {
    const tmp = `${dir}.symlink-${randomAlnum(12)}`;
    try {
      await Deno.symlink(target, tmp);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      throw e;
    }
    try {
      await Deno.rename(tmp, absLink);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
    return;
  }
  throw new RepositoryError(`could not find a free temporary name to replace symlink ${absLink}`);
}

/**
 * Creates the symlink `root/linkPath` → `root/targetPath` (relative), creating the link's parent
 * directories (mode 0755) first.
 */
export async function linkRelative(root: string, linkPath: string, targetPath: string): Promise<void> {
  const parent = linkPath.includes("/") ? linkPath.slice(0, linkPath.lastIndexOf("/")) : "";
  if (parent) await Deno.mkdir(`${root}/${parent}`, { recursive: true, mode: 0o755 });
  await replaceSymlink(`${root}/${linkPath}`, relativeTarget(linkPath, targetPath));
}

/** Validates a ref/stream name used as a path below a repository directory. */
export function checkLinkName(name: string, what: string): void {
  const parts = name.split("/");
  if (
    name === "" || name.startsWith("/") || parts.some((p) => p === "" || p === "." || p === "..") ||
    name.includes("\0")
  ) {
    throw new RepositoryError(`invalid ${what} name ${JSON.stringify(name)}`);
  }
}
