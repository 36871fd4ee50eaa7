// Tree transforms applied after reading a tree: the container-root transform of OCI flattening
// (docs/oci.md#flatten), the reading options of create-image and mkcomposefs
// (README.md#command-reference). All mutate the tree in place.
import { FormatError } from "../errors.ts";
import { copyMtime, type Directory, NO_XATTRS, S_IFBLK, S_IFCHR, S_IFMT, setMtimeSeconds } from "./tree.ts";
import type { FlatTree } from "./flat.ts";
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
  copyMtime(root.stat, u);
  root.stat.xattrs = new Map(u.xattrs);
  const run = root.entries.get("run");
  if (run && run.kind === "dir") {
    run.entries.clear();
    copyMtime(run.stat, u);
  }
}

/**
 * The root metadata of an image flattened from OCI layers (docs/image-root-metadata.md). With a /usr
 * directory this is composefs-rs `transform_for_oci` exactly (propagateUsrToRoot: the same image ids).
 * Without /usr (scratch images: a static binary, an app directory) composefs-rs refuses; here the root
 * keeps the metadata it has — the layers' own root entry (`./`) when one exists, else what the caller
 * created it with (the flattener: 0755, 0:0, mtime 0, no xattrs) — and /run, when it is a directory,
 * is still emptied and takes the root's mtime. A /usr that is not a directory is still an error.
 */
export function rootMetadataForImage(root: Directory): void {
  if (root.entries.has("usr")) {
    propagateUsrToRoot(root);
    return;
  }
  const run = root.entries.get("run");
  if (run && run.kind === "dir") {
    run.entries.clear();
    copyMtime(run.stat, root.stat);
  }
}

/** The default reading of `create-image` / `compute-id` / `create-dumpfile` (README.md#command-reference):
 *  xattrs filtered to the allowlist, then /usr → root metadata, /run emptied. */
export function transformForContainerRoot(root: Directory): void {
  filterXattrs(root, (name) => CONTAINER_XATTR_ALLOWLIST.includes(name));
  propagateUsrToRoot(root);
}

/** mkcomposefs --use-epoch: every mtime becomes 0.0. */
export function zeroMtimes(root: Directory): void {
  forEachInode(root, (node) => {
    setMtimeSeconds(node.stat, 0);
    node.stat.mtimeNsec = 0;
  });
}

/** Every mtime loses its nanoseconds (what a V2 image stores). */
export function zeroNanoseconds(root: Directory): void {
  forEachInode(root, (node) => {
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

// ---- the same on the columns of flat.ts (mkcomposefs --from-file) ----

/** filterXattrs on a flat tree. */
export function filterXattrsFlat(t: FlatTree, keep: (name: string) => boolean): void {
  for (let e = 0; e < t.count; e++) {
    const x = t.xattrs[e];
    if (x.size === 0) continue;
    const kept = [...x].filter(([name]) => keep(name));
    if (kept.length < x.size) t.xattrs[e] = kept.length === 0 ? NO_XATTRS : new Map(kept);
  }
}

/** zeroMtimes on a flat tree. */
export function zeroMtimesFlat(t: FlatTree): void {
  t.mtimeSec.fill(0);
  t.mtimeExact.clear();
  t.mtimeNsec.fill(0);
}

/** removeDevices on a flat tree: the entries of character and block devices are marked removed. */
export function removeDevicesFlat(t: FlatTree): void {
  for (let e = 0; e < t.count; e++) {
    const type = t.mode[e] & S_IFMT;
    if (t.ino[e] === e && (type === S_IFCHR || type === S_IFBLK)) t.removed[e] = 1;
  }
}
