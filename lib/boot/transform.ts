// The boot transform (`--bootable`, docs/boot.md): boot entries are collected first, then
// /boot and /sysroot are emptied (they must exist: the booted system mounts its boot partition and
// the physical root there) and get /usr's mtime seconds, then every node is relabelled from the
// image's own SELinux policy, or stripped of security.selinux when the image names none.
import { FormatError } from "../errors.ts";
import type { Repository } from "../repository/repository.ts";
import { type Directory, type Leaf, lookup } from "../tree/tree.ts";
import { bstrToUtf8 } from "../util/bytes.ts";
import { type BootEntry, collectBootEntries, type LeafReader } from "./entries.ts";
import { loadImagePolicy, type RelabelStats, relabelTree, stripLabels } from "./selabel.ts";

const EMPTIED_DIRS = ["boot", "sysroot"];

export interface BootTransformResult {
  entries: BootEntry[];
  /** The SELinux policy applied (SELINUXTYPE), or null when labels were stripped. */
  policy: string | null;
  relabel?: RelabelStats;
}

/** A reader for trees whose external files are objects of `repo`. */
export function repoLeafReader(repo: Repository): LeafReader {
  return async (leaf, path) => {
    const c = leaf.content;
    if (c.type === "inline") return c.data;
    if (c.type === "external") return await repo.readObject(c.id);
    throw new FormatError(`${path}: file content is not available (no object id)`);
  };
}

/**
 * A reader for trees scanned from directory `dir`: inline data from the tree, everything else from
 * the file on disk (a scan without a repository stores no objects).
 */
export function dirLeafReader(dir: string): LeafReader {
  return async (leaf, path) => {
    const c = leaf.content;
    if (c.type === "inline") return c.data;
    return await Deno.readFile(dir.replace(/\/+$/, "") + bstrToUtf8(path));
  };
}

function emptyDir(root: Directory, name: string, usrMtime: number): void {
  const d = root.entries.get(name);
  if (!d) {
    throw new FormatError(
      `/${name} does not exist: a bootable image needs empty /boot and /sysroot directories ` +
        `(the booted system mounts its boot partition and physical root there)`,
    );
  }
  if (d.kind !== "dir") throw new FormatError(`/${name} is not a directory (a bootable image needs one)`);
  d.entries.clear();
  d.stat.mtimeSec = usrMtime;
}

/** Applies the boot transform in place; returns the boot entries found before /boot was emptied. */
export async function transformForBoot(root: Directory, read: LeafReader): Promise<BootTransformResult> {
  const usr = root.entries.get("usr");
  if (!usr || usr.kind !== "dir") throw new FormatError("/usr does not exist or is not a directory");
  const entries = await collectBootEntries(root, read);
  for (const name of EMPTIED_DIRS) emptyDir(root, name, usr.stat.mtimeSec);
  const readPath = async (path: string) => {
    const n = lookup(root, path);
    if (!n) return null;
    if (n.kind !== "leaf" || !["inline", "external", "external-noverity"].includes(n.content.type)) {
      throw new FormatError(`${path} in the image is not a regular file`);
    }
    return await read(n as Leaf, path);
  };
  const policy = await loadImagePolicy(readPath);
  if (!policy) {
    stripLabels(root);
    return { entries, policy: null };
  }
  const relabel = relabelTree(root, policy);
  const cfg = new TextDecoder().decode((await readPath("/etc/selinux/config"))!);
  const name = /^\s*SELINUXTYPE\s*=\s*(\S+)/im.exec(cfg)?.[1] ?? null;
  return { entries, policy: name, relabel };
}
