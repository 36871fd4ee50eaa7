// The composefs overlay: EROFS image as the lower layer (metadata, with redirects to content
// objects), the objects directory as a data-only lower layer, optionally an upper/work dir.
// Layers go in as fds (`lowerdir+`/`datadir+` with FSCONFIG_SET_FD) where the kernel takes them;
// older kernels only take the string form `lowerdir=A::B`, for which the EROFS mount must be
// reachable by path: it is attached to a temporary directory, reopened O_PATH and lazily unmounted.
import { CfsError, KernelError } from "../errors.ts";
import {
  AT_FDCWD,
  closeFd,
  fsconfigCreate,
  fsconfigSetFd,
  fsconfigSetString,
  fsmount,
  FSMOUNT_CLOEXEC,
  MNT_DETACH,
  MOUNT_ATTR_RDONLY,
  MOVE_MOUNT_F_EMPTY_PATH,
  moveMount,
  O_DIRECTORY,
  O_PATH,
  openFd,
  readFsLog,
  umount2,
} from "../linux/mount_api.ts";
import type { Cleanup } from "./cleanup.ts";
import { kernelVersion } from "./kernel_features.ts";
import { openFsContext } from "./open_context.ts";

const EINVAL = 22;

export type LayerMode = "fd" | "string";

export interface OverlaySpec {
  /** `source=` shown in /proc/self/mountinfo ("composefs" or "composefs:NAME"). */
  source: string;
  /** Detached EROFS mount fd. */
  erofsMountFd: number;
  /** Directory fds (O_PATH) of the objects directories (data-only layers, searched in order). */
  objectsFds: number[];
  /** "try": verity=require when the kernel takes the option, else none (C mount.composefs tryverity). */
  verity: "require" | "none" | "try";
  /** Directory fds (O_PATH) of upper and work dirs, both or neither. */
  upperFd?: number;
  workFd?: number;
  readWrite: boolean;
  /** Extra MOUNT_ATTR_* bits (nosuid, nodev, noexec) for the overlay mount. */
  attrs?: number;
}

/** Raised in fd mode when the kernel does not take layers as fds, so the caller can use strings. */
class LayerFdUnsupported extends CfsError {
  override name = "LayerFdUnsupported";
  constructor(readonly kernelError: KernelError) {
    super(kernelError.message);
  }
}

/**
 * The error for a refused overlay option: options composefs depends on get a message naming the
 * missing kernel feature (pure, so it can be tested on kernels that have every feature).
 */
export function explainOverlayOptionError(key: string, value: string, e: KernelError): KernelError {
  if (e.errno !== EINVAL) return e;
  if (key === "verity") {
    return new KernelError(
      "fsconfig",
      e.errno,
      e.code,
      `overlayfs does not support verity=${value} (needs Linux 6.6+): ${e.message}`,
    );
  }
  if (key === "metacopy" || key === "redirect_dir") {
    return new KernelError(
      "fsconfig",
      e.errno,
      e.code,
      `overlayfs refused ${key}=${value}, which composefs needs (check CONFIG_OVERLAY_FS_* and the ` +
        `overlay module parameters): ${e.message}`,
    );
  }
  return e;
}

/** The error for a failed overlay create; `kernel` = [major, minor] of the running kernel. */
export function explainOverlayCreateError(
  e: KernelError,
  dataOnlyViaString: boolean,
  kernel: [number, number] | undefined,
): KernelError {
  const old = kernel !== undefined && (kernel[0] < 6 || (kernel[0] === 6 && kernel[1] < 5));
  if (e.errno === EINVAL && dataOnlyViaString && old) {
    return new KernelError(
      "fsconfig",
      e.errno,
      e.code,
      `overlayfs refused the data-only lower layer ("::"), which needs Linux 6.5+: ${e.message}`,
    );
  }
  return e;
}

function setOption(fsfd: number, key: string, value: string): void {
  try {
    fsconfigSetString(fsfd, key, value);
  } catch (e) {
    throw e instanceof KernelError ? explainOverlayOptionError(key, value, e) : e;
  }
}

function setLayerFd(fsfd: number, key: string, fd: number): void {
  try {
    fsconfigSetFd(fsfd, key, fd);
  } catch (e) {
    if (e instanceof KernelError && (e.errno === EINVAL || e.errno === 9 /* EBADF */)) {
      throw new LayerFdUnsupported(e);
    }
    throw e;
  }
}

function createAndMount(
  fsfd: number,
  spec: OverlaySpec,
  warnings: string[],
  dataOnlyViaString: boolean,
): number {
  try {
    fsconfigCreate(fsfd);
  } catch (e) {
    throw e instanceof KernelError ? explainOverlayCreateError(e, dataOnlyViaString, kernelVersion()) : e;
  }
  const mnt = fsmount(fsfd, FSMOUNT_CLOEXEC, (spec.readWrite ? 0 : MOUNT_ATTR_RDONLY) | (spec.attrs ?? 0));
  for (const m of readFsLog(fsfd)) if (m.level === "w") warnings.push(`overlay: ${m.text}`);
  return mnt;
}

function commonOptions(fsfd: number, spec: OverlaySpec): void {
  setOption(fsfd, "source", spec.source);
  setOption(fsfd, "metacopy", "on");
  setOption(fsfd, "redirect_dir", "on");
  if (spec.verity === "require") setOption(fsfd, "verity", "require");
  if (spec.verity === "try") {
    try {
      fsconfigSetString(fsfd, "verity", "require");
    } catch (e) {
      if (!(e instanceof KernelError)) throw e; // the kernel has no overlay verity: mount without
    }
  }
}

function overlayWithFds(spec: OverlaySpec, warnings: string[]): number {
  const fsfd = openFsContext("overlay", "composefs mounts are overlayfs mounts");
  try {
    commonOptions(fsfd, spec);
    setLayerFd(fsfd, "lowerdir+", spec.erofsMountFd);
    for (const fd of spec.objectsFds) setLayerFd(fsfd, "datadir+", fd);
    if (spec.upperFd !== undefined) setLayerFd(fsfd, "upperdir", spec.upperFd);
    if (spec.workFd !== undefined) setLayerFd(fsfd, "workdir", spec.workFd);
    return createAndMount(fsfd, spec, warnings, false);
  } finally {
    closeFd(fsfd);
  }
}

/**
 * Attaches the detached EROFS mount to a temporary directory and opens its root O_PATH. overlayfs
 * clones its layers' mounts at create time and refuses mounts outside our namespace ("failed to clone
 * lowerpath"), so the temporary mount must stay attached until the overlay exists; `release` then
 * detaches it lazily (the overlay keeps its own clone) and removes the directory.
 */
function reachableErofs(erofsMountFd: number): { fd: number; release: () => void } {
  const tmp = Deno.makeTempDirSync({ prefix: ".cfsctl-erofs-" });
  let attached = false;
  let fd = -1;
  const release = () => {
    closeFd(fd);
    fd = -1;
    if (attached) {
      try {
        umount2(tmp, MNT_DETACH);
      } catch { /* already gone */ }
      attached = false;
    }
    try {
      Deno.removeSync(tmp);
    } catch { /* best effort */ }
  };
  try {
    moveMount(erofsMountFd, "", AT_FDCWD, tmp, MOVE_MOUNT_F_EMPTY_PATH);
    attached = true;
    fd = openFd(tmp, O_PATH | O_DIRECTORY);
    return { fd, release };
  } catch (e) {
    release();
    throw e;
  }
}

function overlayWithStrings(spec: OverlaySpec, warnings: string[]): number {
  const erofs = reachableErofs(spec.erofsMountFd);
  let fsfd = -1;
  try {
    fsfd = openFsContext("overlay", "composefs mounts are overlayfs mounts");
    commonOptions(fsfd, spec);
    const layers = [erofs.fd, ...spec.objectsFds].map((fd) => `/proc/self/fd/${fd}`);
    setOption(fsfd, "lowerdir", `${layers[0]}::${layers.slice(1).join("::")}`);
    if (spec.upperFd !== undefined) setOption(fsfd, "upperdir", `/proc/self/fd/${spec.upperFd}`);
    if (spec.workFd !== undefined) setOption(fsfd, "workdir", `/proc/self/fd/${spec.workFd}`);
    return createAndMount(fsfd, spec, warnings, true);
  } finally {
    closeFd(fsfd);
    erofs.release();
  }
}

/**
 * Creates the overlay and returns its detached mount fd (registered in `cleanup`) and the layer mode
 * used. `mode` "auto" tries fds first and falls back to strings when the kernel refuses layer fds.
 */
export function mountOverlayDetached(
  spec: OverlaySpec,
  cleanup: Cleanup,
  mode: LayerMode | "auto",
  warnings: string[],
): { mountFd: number; layerMode: LayerMode } {
  if (mode !== "string") {
    try {
      const mountFd = overlayWithFds(spec, warnings);
      cleanup.defer(() => closeFd(mountFd));
      return { mountFd, layerMode: "fd" };
    } catch (e) {
      if (!(e instanceof LayerFdUnsupported)) throw e;
      if (mode === "fd") throw e.kernelError;
    }
  }
  const mountFd = overlayWithStrings(spec, warnings);
  cleanup.defer(() => closeFd(mountFd));
  return { mountFd, layerMode: "string" };
}
