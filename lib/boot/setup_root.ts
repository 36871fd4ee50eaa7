// composefs-setup-root (docs/boot.md "setup-root"): in the initramfs, mount the image the kernel
// command line names as the new root, from the repository at SYSROOT/composefs, with /etc as an
// overlay on the deployment's state (SYSROOT/state/deploy/<id>/etc/{upper,work}) and /var bound to
// SYSROOT/state/deploy/<id>/var. Every check (karg, repository, verity policy, image digest, state
// directories) runs before the first mount: a refusal mounts nothing. A failure after the first
// mount unmounts what was mounted. This file stays small in imports: it is on the boot path.
import { CfsError, FormatError, IntegrityError, NotFoundError } from "../errors.ts";
import { ObjectId } from "../fsverity/object_id.ts";
import { closeFd, MNT_DETACH, O_RDONLY, openFd, umount2 } from "../linux/mount_api.ts";
import {
  attachAt,
  bindMount,
  cloneTree,
  detachedTmpfs,
  overlayOver,
  transientOverlay,
} from "../mount/attach.ts";
import { mountComposefs } from "../mount/composefs.ts";
import { checkImageDigest } from "../mount/image_check.ts";
import { checkMeta, META_FILENAME } from "../repository/meta.ts";
import { metaHasVerity, readMetaFile } from "../repository/meta_file.ts";
import { fromHex } from "../util/bytes.ts";
import { type ComposefsKarg, parseComposefsKarg } from "./karg.ts";
import {
  defaultConfig,
  effectiveMount,
  type MountType,
  parseSetupRootConfig,
  type SetupRootConfig,
} from "./setup_root_config.ts";

/** A refusal before anything was mounted: the message is for an admin at an emergency shell. */
export class SetupRootRefused extends CfsError {
  override name = "SetupRootRefused";
}

export interface SetupRootOptions {
  /** Default /sysroot: the physical root, holding composefs/ and state/. */
  sysroot?: string;
  /** Default /usr/lib/composefs/setup-root-conf.toml; a missing file means defaults. */
  configPath?: string;
  /** Kernel command line (default: /proc/cmdline). */
  cmdline?: string;
  /** Testing: use this directory tree as the new root instead of the composefs image. */
  rootFs?: string;
  /** Testing: mount the new root here instead of over the sysroot. */
  target?: string;
}

export interface SetupRootResult {
  karg: ComposefsKarg;
  imageHex: string;
  target: string;
  /** How the image digest was checked ("kernel": fs-verity; "userspace": hashed now). */
  digestCheckedBy?: "kernel" | "userspace";
  verity: "require" | "none";
  etc: MountType;
  var: MountType;
  rootTransient: boolean;
  stateDir: string;
  /** Human-readable lines describing what was done (the CLI prints them). */
  log: string[];
  warnings: string[];
}

function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** The image file images/<hex> of the repository, refusing links that leave objects/. */
function imagePath(repoPath: string, hex: string): string {
  const link = `${repoPath}/images/${hex}`;
  let real: string;
  try {
    real = Deno.realPathSync(link);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new SetupRootRefused(
        `image ${hex} is not in the repository ${repoPath} (no ${link}): ` +
          `was it deployed there (cfsctl oci pull --bootable / oci prepare-boot)?`,
      );
    }
    throw e;
  }
  const objects = Deno.realPathSync(`${repoPath}/objects`);
  if (!real.startsWith(objects + "/")) {
    throw new SetupRootRefused(`${link} points outside the repository's objects (${real})`);
  }
  return real;
}

/** Runs setup-root; throws SetupRootRefused (nothing mounted) or another CfsError (mounts undone). */
export async function setupRoot(opts: SetupRootOptions = {}): Promise<SetupRootResult> {
  const sysroot = (opts.sysroot ?? "/sysroot").replace(/(.)\/+$/, "$1");
  const configPath = opts.configPath ?? "/usr/lib/composefs/setup-root-conf.toml";
  const target = opts.target ?? sysroot;
  const log: string[] = [];

  // 1. What to mount: the karg. 2. Configuration.
  const karg = readKarg(opts.cmdline);
  const hex = karg.hex;
  const cfgText = readText(configPath);
  const config: SetupRootConfig = cfgText !== null
    ? parseSetupRootConfig(cfgText, configPath)
    : defaultConfig();
  const etcMount = effectiveMount(config.etc, "overlay");
  const varMount = effectiveMount(config.var, "bind");

  // 3. Repository, verity policy, image digest (not with --root-fs, which replaces the image).
  if (!isDir(sysroot)) throw new SetupRootRefused(`sysroot ${sysroot} is not a directory`);
  const repoPath = `${sysroot}/composefs`;
  let image: CheckedImage = { verity: "none" };
  const stateDir = `${sysroot}/state/deploy/${hex}`;
  const mounted: string[] = [];
  try {
    if (opts.rootFs === undefined) image = await checkImage(repoPath, karg, log);
    else if (!isDir(opts.rootFs)) throw new SetupRootRefused(`--root-fs ${opts.rootFs} is not a directory`);
    if (!isDir(target)) throw new SetupRootRefused(`target ${target} is not a directory`);
    checkState(stateDir, etcMount, varMount, configPath);

    // 4. Mount. The sysroot is cloned first: once the new root covers it, the clone is what
    //    the booted system finds at /sysroot.
    const sysrootClone = cloneTree(sysroot);
    const warnings: string[] = [];
    try {
      if (opts.rootFs !== undefined) bindTestRoot(opts.rootFs, target, config.root.transient, mounted, log);
      else {
        const r = await mountImageRoot(image, repoPath, hex, target, config.root.transient, log);
        warnings.push(...r.warnings);
        mounted.push(target);
      }
      if (isDir(`${target}/sysroot`)) {
        attachAt(sysrootClone, `${target}/sysroot`);
        mounted.push(`${target}/sysroot`);
        log.push(`/sysroot: the physical root ${sysroot}`);
      }
    } finally {
      closeFd(sysrootClone);
    }
    for (const [sub, how] of [["etc", etcMount], ["var", varMount]] as const) {
      if (how === "none") continue;
      mounted.push(mountState(`${target}/${sub}`, sub, how, stateDir, log));
    }
    if (opts.target === undefined) gptAutoRootWorkaround(log);
    return {
      karg,
      imageHex: hex,
      target,
      digestCheckedBy: image.digestCheckedBy,
      verity: image.verity,
      etc: etcMount,
      var: varMount,
      rootTransient: config.root.transient,
      stateDir,
      log,
      warnings,
    };
  } catch (e) {
    for (const m of mounted.reverse()) {
      try {
        umount2(m, MNT_DETACH);
      } catch { /* keep undoing */ }
    }
    if (e instanceof CfsError && !(e instanceof SetupRootRefused) && mounted.length === 0) {
      throw new SetupRootRefused(e.message, { cause: e, context: e.context });
    }
    throw e;
  } finally {
    if (image.fd !== undefined) closeFd(image.fd);
  }
}

/** Testing (--root-fs): a directory bound as the new root, with a transient overlay if configured. */
function bindTestRoot(
  rootFs: string,
  target: string,
  transient: boolean,
  mounted: string[],
  log: string[],
): void {
  bindMount(rootFs, target);
  mounted.push(target);
  log.push(`root: bind mount of ${rootFs} (testing)`);
  if (transient) {
    transientOverlay(target);
    mounted.push(target);
    log.push(`root: transient overlay (changes are lost at reboot)`);
  }
}

/** The composefs karg of the kernel command line (`cmdline`, else /proc/cmdline); refuses without one. */
function readKarg(cmdline: string | undefined): ComposefsKarg {
  const cmdlineText = cmdline ?? readText("/proc/cmdline");
  if (cmdlineText === null) throw new SetupRootRefused("cannot read /proc/cmdline (is /proc mounted?)");
  let karg: ComposefsKarg | null;
  try {
    karg = parseComposefsKarg(cmdlineText);
  } catch (e) {
    throw new SetupRootRefused(
      `the kernel command line has a malformed composefs argument: ${(e as Error).message}`,
    );
  }
  if (!karg) {
    throw new SetupRootRefused(
      `the kernel command line names no composefs image (expected composefs=<hex> or ` +
        `composefs.digest=v1-<sha256|sha512>-12:<hex>; got: ${cmdlineText.trim() || "(empty)"})`,
    );
  }
  return karg;
}

/** The image to mount, once checked: its open file (owned by the caller) and the verity policy. */
interface CheckedImage {
  fd?: number;
  verity: "require" | "none";
  digestCheckedBy?: "kernel" | "userspace";
}

/** The repository's algorithm, as its meta.json says; refuses a missing or unusable one. */
async function repositoryAlg(repoPath: string) {
  if (!isDir(repoPath)) throw new SetupRootRefused(`no composefs repository at ${repoPath}`);
  let meta;
  try {
    meta = await readMetaFile(repoPath);
  } catch (e) {
    throw new SetupRootRefused(`repository ${repoPath}: ${(e as Error).message}`);
  }
  if (!meta) {
    throw new SetupRootRefused(
      `repository ${repoPath} has no ${META_FILENAME} (not initialized with cfsctl init)`,
    );
  }
  try {
    return checkMeta(meta.meta).alg;
  } catch (e) {
    throw new SetupRootRefused(`repository ${repoPath}: ${(e as Error).message}`);
  }
}

/**
 * Checks the repository against the karg (algorithm, fs-verity policy) and the image's digest;
 * returns the image opened. Refuses (and closes the image again) when anything does not match.
 */
async function checkImage(repoPath: string, karg: ComposefsKarg, log: string[]): Promise<CheckedImage> {
  const hex = karg.hex;
  const alg = await repositoryAlg(repoPath);
  if (alg !== karg.alg) {
    throw new SetupRootRefused(
      `the kernel command line names a ${karg.alg} image (${karg.text}), ` +
        `but the repository ${repoPath} uses ${alg}`,
    );
  }
  const secure = metaHasVerity(repoPath, alg);
  if (!karg.insecure && !secure) {
    throw new SetupRootRefused(
      `the kernel command line requires fs-verity (${karg.text} has no "?" after "="), but the ` +
        `repository ${repoPath} is not fs-verity protected (its ${META_FILENAME} has no fs-verity): ` +
        `refusing to boot an unverifiable root`,
    );
  }
  const fd = openFd(imagePath(repoPath, hex), O_RDONLY);
  try {
    let digestCheckedBy: "kernel" | "userspace";
    try {
      digestCheckedBy = await checkImageDigest(fd, `image ${hex}`, new ObjectId(alg, fromHex(hex)));
    } catch (e) {
      if (e instanceof IntegrityError || e instanceof FormatError) {
        throw new SetupRootRefused(
          `image ${hex} in ${repoPath} does not match the kernel command line: ${e.message}`,
        );
      }
      throw e;
    }
    if (!karg.insecure && digestCheckedBy !== "kernel") {
      throw new SetupRootRefused(
        `the kernel command line requires fs-verity (${karg.text}), but image ${hex} has no fs-verity ` +
          `enabled: refusing to boot an unverifiable root`,
      );
    }
    const verity = digestCheckedBy === "kernel" || (secure && !karg.insecure) ? "require" : "none";
    log.push(
      `image ${hex} (${alg}) from ${repoPath}: digest ${
        digestCheckedBy === "kernel"
          ? "measured by fs-verity"
          : "checked in userspace (no fs-verity on the image)"
      }, object verity ${verity === "require" ? "required" : "not required (insecure karg)"}`,
    );
    return { fd, verity, digestCheckedBy };
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

/** The deployment state directories the /etc and /var mounts need must exist. */
function checkState(stateDir: string, etcMount: MountType, varMount: MountType, configPath: string): void {
  const needsState = etcMount === "overlay" || etcMount === "bind" || varMount === "overlay" ||
    varMount === "bind";
  if (needsState && !isDir(stateDir)) {
    throw new SetupRootRefused(
      `deployment state ${stateDir} does not exist (create it with cfsctl oci prepare-boot, or set ` +
        `[etc]/[var] mount = "none" or "transient" in ${configPath})`,
    );
  }
  for (const [sub, how] of [["etc", etcMount], ["var", varMount]] as const) {
    if ((how === "bind" || how === "overlay") && !isDir(`${stateDir}/${sub}`)) {
      throw new SetupRootRefused(
        `deployment state ${stateDir}/${sub} does not exist (needed for ${how} /${sub})`,
      );
    }
  }
}

/** Mounts the composefs image at `target`: read-only, or (transient) writable on a tmpfs. */
async function mountImageRoot(
  image: CheckedImage,
  repoPath: string,
  hex: string,
  target: string,
  transient: boolean,
  log: string[],
): Promise<{ warnings: string[] }> {
  // A transient root is the composefs overlay itself with an upper layer on a tmpfs: a second
  // overlay on top would leave no stacking depth for the /etc overlay.
  const tmp = transient ? attachedTmpfs() : undefined;
  try {
    const r = await mountComposefs({
      imageFd: image.fd,
      objectsDir: `${repoPath}/objects`,
      mountpoint: target,
      name: hex,
      verity: image.verity,
      upperdir: tmp !== undefined ? `${tmp}/upper` : undefined,
      workdir: tmp !== undefined ? `${tmp}/work` : undefined,
      readWrite: tmp !== undefined,
    });
    log.push(
      tmp !== undefined
        ? `root: composefs image ${hex} mounted at ${r.mountpoint}, writable on a tmpfs (changes are lost at reboot)`
        : `root: composefs image ${hex} mounted read-only at ${r.mountpoint}`,
    );
    return r;
  } finally {
    // The overlay keeps the tmpfs alive; its temporary attachment goes.
    if (tmp !== undefined) {
      try {
        umount2(tmp, MNT_DETACH);
        Deno.removeSync(tmp);
      } catch { /* best effort */ }
    }
  }
}

/** Mounts the deployment's /etc or /var state at `at` (bind, overlay or transient); returns `at`. */
function mountState(
  at: string,
  sub: "etc" | "var",
  how: Exclude<MountType, "none">,
  stateDir: string,
  log: string[],
): string {
  if (!isDir(at)) throw new NotFoundError(`the image has no /${sub} to mount the deployment state on`);
  if (how === "bind") {
    bindMount(`${stateDir}/${sub}`, at);
    log.push(`/${sub}: bind mount of ${stateDir}/${sub}`);
  } else if (how === "overlay") {
    for (const d of ["upper", "work"]) {
      try {
        Deno.mkdirSync(`${stateDir}/${sub}/${d}`, { mode: 0o700 });
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }
    overlayOver(at, `${stateDir}/${sub}/upper`, `${stateDir}/${sub}/work`, "overlay");
    log.push(`/${sub}: overlay, changes in ${stateDir}/${sub}/upper`);
  } else {
    transientOverlay(at);
    log.push(`/${sub}: transient overlay (changes are lost at reboot)`);
  }
  return at;
}

/** A fresh tmpfs with upper/ and work/, attached at a temporary directory (returned). */
function attachedTmpfs(): string {
  let dir: string;
  try {
    dir = Deno.makeTempDirSync({ prefix: "composefs-transient-" });
  } catch {
    dir = Deno.makeTempDirSync({ dir: "/run", prefix: "composefs-transient-" });
  }
  const fd = detachedTmpfs("the transient root");
  try {
    attachAt(fd, dir);
  } finally {
    closeFd(fd);
  }
  Deno.mkdirSync(`${dir}/upper`, { mode: 0o755 });
  Deno.mkdirSync(`${dir}/work`, { mode: 0o700 });
  return dir;
}

/**
 * systemd's gpt-auto-generator looks for the root device behind /run/systemd/volatile-root when / is
 * not a block device (systemd issue 35017): point it at /dev/gpt-auto-root's device. Best effort.
 */
function gptAutoRootWorkaround(log: string[]): void {
  try {
    const st = Deno.statSync("/dev/gpt-auto-root");
    if (st.rdev === null) return;
    const major = (st.rdev >> 8) & 0xfff;
    const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
    Deno.mkdirSync("/run/systemd", { recursive: true });
    Deno.symlinkSync(`/dev/block/${major}:${minor}`, "/run/systemd/volatile-root");
    log.push(`/run/systemd/volatile-root -> /dev/block/${major}:${minor}`);
  } catch { /* no gpt-auto-root: nothing to do */ }
}
