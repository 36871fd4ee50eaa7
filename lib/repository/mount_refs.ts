// A reference per active mount (docs/gc.md): `images/refs/mounts/<mount id>@<mountpoint, encoded>` →
// the mounted image. gc honours it like any image ref, so `oci untag` + `gc` never pull objects out
// from under a mounted image, and it survives the mounting process exiting. `cfsctl unmount` removes
// it; a ref whose mount is gone (unmounted with umount(8), or a reboot) is stale: gc does not count
// it as a root and fsck removes it.
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "./repository.ts";
import { linkRelative } from "./symlinks.ts";
import { RepoPathError } from "./repo_fs.ts";

export const MOUNT_REFS_DIR = "images/refs/mounts";

export interface MountInfoEntry {
  mountId: number;
  mountpoint: string;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** The mounts of this mount namespace (/proc/self/mountinfo), in mount order. */
export function readMountInfo(): MountInfoEntry[] {
  const text = Deno.readTextFileSync("/proc/self/mountinfo");
  const out: MountInfoEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 5) continue;
    out.push({ mountId: Number(f[0]), mountpoint: unescapeMountinfo(f[4]) });
  }
  return out;
}

/** The topmost mount at `mountpoint` (canonical path), or null. */
export function topMountAt(mountpoint: string, info = readMountInfo()): MountInfoEntry | null {
  for (let i = info.length - 1; i >= 0; i--) if (info[i].mountpoint === mountpoint) return info[i];
  return null;
}

const encodeMountpoint = (p: string) => p.replaceAll("%", "%25").replaceAll("/", "%2F");
const decodeMountpoint = (s: string) => s.replaceAll("%2F", "/").replaceAll("%25", "%");

export function mountRefName(m: MountInfoEntry): string {
  return `${m.mountId}@${encodeMountpoint(m.mountpoint)}`;
}

/** Parses a ref name under images/refs/mounts/ (null: not one of ours). */
export function parseMountRefName(name: string): MountInfoEntry | null {
  const m = /^([0-9]+)@(.+)$/.exec(name);
  return m ? { mountId: Number(m[1]), mountpoint: decodeMountpoint(m[2]) } : null;
}

/** Whether the mount a ref names still exists in this mount namespace. */
export function mountRefLive(name: string, info = readMountInfo()): boolean {
  const m = parseMountRefName(name);
  return m !== null && info.some((e) => e.mountId === m.mountId && e.mountpoint === m.mountpoint);
}

/** Records the mount of image `id` at `mountpoint` (call while the repository is open: gc waits). */
export async function addMountRef(
  repo: Repository,
  id: ObjectId,
  mountpoint: string,
): Promise<string | null> {
  const top = topMountAt(mountpoint);
  if (!top) return null;
  const name = mountRefName(top);
  await linkRelative(repo.path, `${MOUNT_REFS_DIR}/${name}`, `images/${id.hex()}`);
  return name;
}

/** Names of the mount refs (stale or not). */
export function listMountRefs(repo: Repository): string[] {
  try {
    return repo.fs.list(MOUNT_REFS_DIR).filter((e) => e.kind === "symlink").map((e) => e.name);
  } catch (e) {
    if (e instanceof RepoPathError) return [];
    throw e;
  }
}

/** Removes the refs of mounts at `mountpoint` that no longer exist; returns their names. */
export function removeMountRefsAt(repo: Repository, mountpoint: string): string[] {
  const info = readMountInfo();
  const removed: string[] = [];
  for (const name of listMountRefs(repo)) {
    const m = parseMountRefName(name);
    if (!m || m.mountpoint !== mountpoint || mountRefLive(name, info)) continue;
    repo.fs.unlink(`${MOUNT_REFS_DIR}/${name}`);
    removed.push(name);
  }
  return removed;
}

/** Removes every stale mount ref; returns their names. */
export function removeStaleMountRefs(repo: Repository): string[] {
  const info = readMountInfo();
  const removed: string[] = [];
  for (const name of listMountRefs(repo)) {
    if (mountRefLive(name, info)) continue;
    try {
      repo.fs.unlink(`${MOUNT_REFS_DIR}/${name}`);
      removed.push(name);
    } catch { /* removed meanwhile, or read-only: reported by the next fsck */ }
  }
  return removed;
}
