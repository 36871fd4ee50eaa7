// Small mount building blocks for setup-root (docs/boot.md "setup-root"): bind mounts (detached
// clones of a tree, attached elsewhere), a writable overlay over a directory with a given upper/work
// pair, and a detached tmpfs for transient upper layers. Each returns or attaches a mount and leaves
// nothing behind when it fails.
import {
  AT_FDCWD,
  closeFd,
  fsconfigCreate,
  fsconfigSetString,
  fsmount,
  FSMOUNT_CLOEXEC,
  MOVE_MOUNT_F_EMPTY_PATH,
  moveMount,
  OPEN_TREE_CLONE,
  openTree,
} from "./../linux/mount_api.ts";
import { openFsContext } from "./open_context.ts";

/** open_tree(OPEN_TREE_CLONE) of PATH: a detached copy of the tree mounted there (close() when unused). */
export function cloneTree(path: string): number {
  return openTree(AT_FDCWD, path, OPEN_TREE_CLONE);
}

/** Attaches a detached mount fd at TARGET (the fd stays the caller's). */
export function attachAt(mountFd: number, target: string): void {
  moveMount(mountFd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
}

/** Bind-mounts SOURCE (a directory) onto TARGET. */
export function bindMount(source: string, target: string): void {
  const fd = cloneTree(source);
  try {
    attachAt(fd, target);
  } finally {
    closeFd(fd);
  }
}

/** A detached, empty tmpfs; returns its mount fd. */
export function detachedTmpfs(purpose: string): number {
  const ctx = openFsContext("tmpfs", purpose);
  try {
    fsconfigSetString(ctx, "mode", "0755");
    fsconfigCreate(ctx);
    return fsmount(ctx, FSMOUNT_CLOEXEC, 0);
  } finally {
    closeFd(ctx);
  }
}

/**
 * Mounts a writable overlay on TARGET whose lower layer is what TARGET shows now, with the given
 * upper and work directories (paths; `/proc/self/fd/N/…` of a detached mount works too).
 */
export function overlayOver(target: string, upper: string, work: string, source: string): void {
  const ctx = openFsContext("overlay", `the ${target} overlay`);
  try {
    fsconfigSetString(ctx, "source", source);
    fsconfigSetString(ctx, "lowerdir", target);
    fsconfigSetString(ctx, "upperdir", upper);
    fsconfigSetString(ctx, "workdir", work);
    fsconfigCreate(ctx);
    const m = fsmount(ctx, FSMOUNT_CLOEXEC, 0);
    try {
      attachAt(m, target);
    } finally {
      closeFd(m);
    }
  } finally {
    closeFd(ctx);
  }
}

/** An overlay on TARGET with a fresh tmpfs as upper layer: changes vanish at unmount (reboot). */
export function transientOverlay(target: string): void {
  const tmp = detachedTmpfs(`a transient ${target}`);
  try {
    Deno.mkdirSync(`/proc/self/fd/${tmp}/upper`, { mode: 0o755 });
    Deno.mkdirSync(`/proc/self/fd/${tmp}/work`, { mode: 0o700 });
    overlayOver(target, `/proc/self/fd/${tmp}/upper`, `/proc/self/fd/${tmp}/work`, "transient");
  } finally {
    closeFd(tmp);
  }
}
