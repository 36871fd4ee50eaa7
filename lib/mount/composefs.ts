// Mounting a composefs image (docs/mount.md): EROFS image (detached, read-only) + objects directory as a
// data-only layer, joined by overlayfs with metacopy/redirect_dir, then attached at the mountpoint.
// Nothing is left behind on failure: every fd, temporary mount and loop device is registered in a
// Cleanup as soon as it exists, and released in `finally` on every path.
import { CfsError, InvalidArgumentError, KernelError, NotFoundError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import {
  AT_EMPTY_PATH,
  AT_FDCWD,
  closeFd,
  MOUNT_ATTR_IDMAP,
  MOUNT_ATTR_NODEV,
  MOUNT_ATTR_NOEXEC,
  MOUNT_ATTR_NOSUID,
  mountSetattr,
  MOVE_MOUNT_F_EMPTY_PATH,
  moveMount,
  O_DIRECTORY,
  O_PATH,
  O_RDONLY,
  openFd,
} from "../linux/mount_api.ts";
import { Cleanup } from "./cleanup.ts";
import { mountErofsDetached } from "./erofs.ts";
import { checkErofsMagic, checkImageDigest, type DigestSource } from "./image_check.ts";
import { type LayerMode, mountOverlayDetached } from "./overlay.ts";

export interface MountComposefsOptions {
  /** The EROFS image, by path or by an open fd (the fd stays the caller's). Exactly one. */
  imagePath?: string;
  imageFd?: number;
  /**
   * Directory holding the content objects as `XX/rest` (a repository's `objects/`, a basedir), or
   * several, searched in order (C mount.composefs `basedir=A:B`).
   */
  objectsDir: string | string[];
  mountpoint: string;
  /** Shown as the mount source `composefs:NAME`; without it the source is `composefs`. */
  name?: string;
  /**
   * `require`: overlayfs checks every object's fs-verity digest against the image. `try`: the same
   * when the kernel's overlayfs has the verity option, else none (docs/mount-options.md).
   */
  verity: "require" | "none" | "try";
  /**
   * Expected fs-verity digest of the image file, checked before mounting. When the kernel measured it
   * (fs-verity on the image), overlay verity is required too, like C mount.composefs.
   */
  digest?: ObjectId;
  upperdir?: string;
  workdir?: string;
  /** Writable mount (needs upperdir/workdir); otherwise the mount is MOUNT_ATTR_RDONLY. */
  readWrite?: boolean;
  /**
   * Mount attributes for an untrusted image (docs/mount-options.md): no set-uid/set-gid, no device
   * nodes, no execution through the mount.
   */
  nosuid?: boolean;
  nodev?: boolean;
  noexec?: boolean;
  /**
   * An id-mapped mount: fd of the user namespace whose mapping applies to the image's ownership
   * (MOUNT_ATTR_IDMAP on the EROFS layer).
   */
  idmapUsernsFd?: number;
  /** Use a loop device even when EROFS could mount the file directly. */
  forceLoop?: boolean;
  /** How layers are passed to overlayfs; "auto" (default) = fds if the kernel takes them. */
  layerMode?: LayerMode | "auto";
}

export interface MountedComposefs {
  /** Canonical path the overlay was attached to. */
  mountpoint: string;
  source: string;
  layerMode: LayerMode;
  loopDevice?: string;
  verity: "require" | "none" | "try";
  /** Set when a digest was checked: "userspace" means the image itself has no fs-verity protection. */
  digestCheckedBy?: DigestSource;
  /** Name of the mount ref under images/refs/mounts/ (repository mounts, docs/gc.md). */
  mountRef?: string;
  /** Why no mount ref could be recorded (read-only repository, …): gc may then collect the image. */
  mountRefError?: string;
  /** Warnings from the kernel's fs context logs. */
  warnings: string[];
}

/** Test and debugging switches from the environment: CFSCTL_MOUNT_FORCE_LOOP=1, CFSCTL_MOUNT_LAYERS. */
export function mountTweaksFromEnv(): Pick<MountComposefsOptions, "forceLoop" | "layerMode"> {
  const get = (k: string) => {
    try {
      return Deno.env.get(k);
    } catch {
      return undefined;
    }
  };
  const layers = get("CFSCTL_MOUNT_LAYERS");
  return {
    forceLoop: get("CFSCTL_MOUNT_FORCE_LOOP") === "1",
    layerMode: layers === "fd" || layers === "string" ? layers : "auto",
  };
}

function validate(o: MountComposefsOptions): void {
  if ((o.imagePath === undefined) === (o.imageFd === undefined)) {
    throw new InvalidArgumentError("exactly one of imagePath and imageFd must be given");
  }
  if ((o.upperdir === undefined) !== (o.workdir === undefined)) {
    throw new InvalidArgumentError("upperdir and workdir must be given together");
  }
  if (o.readWrite && o.upperdir === undefined) {
    throw new InvalidArgumentError("a read-write mount needs an upperdir and a workdir");
  }
}

/** Checks that `path` is an existing directory; returns its canonical path. */
function existingDir(path: string, what: string): string {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new NotFoundError(`${what} ${path} does not exist`);
    throw e;
  }
  if (!st.isDirectory) throw new InvalidArgumentError(`${what} ${path} is not a directory`);
  return Deno.realPathSync(path);
}

function openDir(path: string, what: string, cleanup: Cleanup): number {
  existingDir(path, what);
  const fd = openFd(path, O_PATH | O_DIRECTORY);
  cleanup.defer(() => closeFd(fd));
  return fd;
}

function openImage(path: string, cleanup: Cleanup): number {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new NotFoundError(`image ${path} not found`);
    throw e;
  }
  if (!st.isFile) throw new InvalidArgumentError(`image ${path} is not a regular file`);
  const fd = openFd(path, O_RDONLY);
  cleanup.defer(() => closeFd(fd));
  return fd;
}

/** Makes a detached mount id-mapped with the user namespace `usernsFd` (before it is used). */
function idmap(mountFd: number, usernsFd: number): void {
  try {
    mountSetattr(mountFd, "", AT_EMPTY_PATH, { set: MOUNT_ATTR_IDMAP, usernsFd });
  } catch (e) {
    if (e instanceof KernelError) {
      throw new KernelError(
        e.syscall,
        e.errno,
        e.code,
        `id-mapped mount refused (${e.code}): the user namespace must have a mapping and the ` +
          `filesystems must support idmapped mounts`,
      );
    }
    throw e;
  }
}

function attach(mountFd: number, mountpoint: string): void {
  try {
    moveMount(mountFd, "", AT_FDCWD, mountpoint, MOVE_MOUNT_F_EMPTY_PATH);
  } catch (e) {
    if (e instanceof KernelError) {
      if (e.errno === 2) throw new NotFoundError(`mountpoint ${mountpoint} does not exist`, { cause: e });
      if (e.errno === 16) {
        throw new KernelError(e.syscall, e.errno, e.code, `mountpoint ${mountpoint} is busy`);
      }
    }
    throw e;
  }
}

/** Mounts a composefs image at `opts.mountpoint`; throws typed errors and leaves nothing behind on failure. */
export async function mountComposefs(opts: MountComposefsOptions): Promise<MountedComposefs> {
  validate(opts);
  const mountpoint = existingDir(opts.mountpoint, "mountpoint");
  const label = opts.imagePath !== undefined ? `image ${opts.imagePath}` : `image fd ${opts.imageFd}`;
  const source = opts.name !== undefined ? `composefs:${opts.name}` : "composefs";
  const warnings: string[] = [];
  const cleanup = new Cleanup();
  try {
    const imageFd = opts.imagePath !== undefined ? openImage(opts.imagePath, cleanup) : opts.imageFd!;
    checkErofsMagic(imageFd, label);
    let verity = opts.verity;
    let digestCheckedBy: DigestSource | undefined;
    if (opts.digest) {
      digestCheckedBy = await checkImageDigest(imageFd, label, opts.digest);
      if (digestCheckedBy === "kernel") verity = "require";
    }
    const objectsDirs = typeof opts.objectsDir === "string" ? [opts.objectsDir] : opts.objectsDir;
    if (objectsDirs.length === 0) throw new InvalidArgumentError("at least one objects directory is needed");
    const objectsFds = objectsDirs.map((d) => openDir(d, "objects directory", cleanup));
    const upperFd = opts.upperdir !== undefined ? openDir(opts.upperdir, "upperdir", cleanup) : undefined;
    const workFd = opts.workdir !== undefined ? openDir(opts.workdir, "workdir", cleanup) : undefined;

    const erofs = mountErofsDetached(imageFd, label, cleanup, { forceLoop: opts.forceLoop });
    warnings.push(...erofs.warnings);
    // Ownership lives in the EROFS layer (objects carry data only), so that is the layer id-mapped,
    // as C mount.composefs does; overlayfs takes id-mapped layers.
    if (opts.idmapUsernsFd !== undefined) idmap(erofs.mountFd, opts.idmapUsernsFd);
    const overlay = mountOverlayDetached(
      {
        source,
        erofsMountFd: erofs.mountFd,
        objectsFds,
        verity,
        upperFd,
        workFd,
        readWrite: Boolean(opts.readWrite),
        attrs: (opts.nosuid ? MOUNT_ATTR_NOSUID : 0) | (opts.nodev ? MOUNT_ATTR_NODEV : 0) |
          (opts.noexec ? MOUNT_ATTR_NOEXEC : 0),
      },
      cleanup,
      opts.layerMode ?? "auto",
      warnings,
    );
    attach(overlay.mountFd, mountpoint);
    return {
      mountpoint,
      source,
      layerMode: overlay.layerMode,
      loopDevice: erofs.loopDevice,
      verity,
      digestCheckedBy,
      warnings,
    };
  } catch (e) {
    if (e instanceof CfsError && !(e instanceof InvalidArgumentError)) {
      e.within(`mounting ${label} on ${mountpoint}`);
    }
    throw e;
  } finally {
    cleanup.run();
  }
}
