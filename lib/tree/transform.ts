// Tree transforms applied after reading a tree (spec §1.3 "container root", §7.3 transform_for_oci,
// §1.5 mkcomposefs options). All mutate the tree in place.
import { FormatError } from "../errors.ts";
import type { Directory } from "./tree.ts";
import { forEachInode } from "./walk.ts";

/** xattrs kept when reading a container root from disk (composefs-rs FsReadOptions default). */
export const CONTAINER_XATTR_ALLOWLIST: readonly string[] = ["security.capability"];

/** Drops every xattr whose name `keep` refuses, on every inode. */
export function filterXattrs(root: Directory, keep: (name: string) => boolean): void {
  forEachInode(root, (node) => {
    for (const name of [...node.stat.xattrs.keys()]) {
      if (!keep(name)) node.stat.xattrs.delete(name);
    }
  });
}

/**
 * composefs-rs `transform_for_oci`: the root directory takes /usr's mode, owner, mtime (sec + nsec) and
 * xattrs (container tars rarely carry a meaningful root entry), and /run, when it is a directory, is
 * emptied and gets /usr's mtime. /usr must exist and be a directory.
 */
export function propagateUsrToRoot(root: Directory): void {
  const usr = root.entries.get("usr");
  if (!usr || usr.kind !== "dir") {
    throw new FormatError(
      usr
        ? "/usr is not a directory"
        : "/usr does not exist (needed to give the root directory its metadata)",
    );
  }
  const u = usr.stat;
  root.stat.mode = u.mode;
  root.stat.uid = u.uid;
  root.stat.gid = u.gid;
  root.stat.mtimeSec = u.mtimeSec;
  root.stat.mtimeNsec = u.mtimeNsec;
  root.stat.xattrs = new Map(u.xattrs);
  const run = root.entries.get("run");
  if (run && run.kind === "dir") {
    run.entries.clear();
    run.stat.mtimeSec = u.mtimeSec;
    run.stat.mtimeNsec = u.mtimeNsec;
  }
}

/** The default reading of `create-image` / `compute-id` / `create-dumpfile` (spec §1.3): xattrs
 *  filtered to the allowlist, then /usr → root metadata, /run emptied. */
export function transformForContainerRoot(root: Directory): void {
  filterXattrs(root, (name) => CONTAINER_XATTR_ALLOWLIST.includes(name));
  propagateUsrToRoot(root);
}

/** mkcomposefs --use-epoch: every mtime becomes 0.0. */
export function zeroMtimes(root: Directory): void {
  forEachInode(root, (node) => {
    node.stat.mtimeSec = 0;
    node.stat.mtimeNsec = 0;
  });
}

/** mkcomposefs --skip-devices: removes character and block devices (whiteouts included). */
export function removeDevices(root: Directory): void {
  const stack: Directory[] = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const [name, child] of [...dir.entries]) {
      if (child.kind === "dir") stack.push(child);
      else if (child.content.type === "chardev" || child.content.type === "blockdev") {
        dir.entries.delete(name);
      }
    }
  }
}
