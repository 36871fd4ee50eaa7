// `cfsctl mount NAME MOUNTPOINT` (README.md#command-reference, docs/mount.md): mounts a repository image (the
// mount code is imported when the action starts).
import { type Command, Option } from "commander";
import { UsageError } from "../errors.ts";
import type { MountComposefsOptions, MountedComposefs } from "../mount/composefs.ts";
import { errln, outJson } from "./output.ts";
import { examplesText, globalsOf } from "./program.ts";

/** The mount options as commander hands them over (named as the mount library names them). */
type MountFlags = Pick<
  MountComposefsOptions,
  "upperdir" | "workdir" | "readWrite" | "nosuid" | "nodev" | "noexec"
>;

/** `--nosuid --nodev --noexec` on a mount command (what to use for an untrusted image). */
export function addMountAttrOptions(cmd: Command): Command {
  return cmd
    .option("--nosuid", "ignore set-user-id and set-group-id bits (use for untrusted images)")
    .option("--nodev", "do not allow access to device nodes (use for untrusted images)")
    .option("--noexec", "do not allow execution of programs (use for untrusted images)");
}

/** The mount-attribute options as the mount library takes them. */
export function mountAttrs(f: MountFlags): { nosuid: boolean; nodev: boolean; noexec: boolean } {
  return { nosuid: Boolean(f.nosuid), nodev: Boolean(f.nodev), noexec: Boolean(f.noexec) };
}

/** Warns when the mount could not record its mount ref (gc may then collect the image). */
export function warnMountRef(r: MountedComposefs): void {
  if (r.mountRefError !== undefined) {
    errln(`warning: mount ref not recorded (gc may remove this image's objects): ${r.mountRefError}`);
  }
}

/** Checks the flag combinations the reference tool enforces before touching anything. */
export function checkMountFlags(f: MountFlags): void {
  if ((f.upperdir === undefined) !== (f.workdir === undefined)) {
    throw new UsageError("--upperdir and --workdir must be given together");
  }
  if (f.readWrite && f.upperdir === undefined) throw new UsageError("--read-write requires --upperdir");
}

export function registerMountCommands(program: Command): void {
  registerMount(program);
  registerUnmount(program);
}

function registerMount(program: Command): void {
  const mount = program
    .command("mount")
    .description("mount a composefs image of the repository")
    .argument("<NAME>", "image id (hex digest, verified) or refs/<name>")
    .argument("<MOUNTPOINT>", "where to mount it")
    .addOption(new Option("--upperdir <DIR>", "overlay upper directory (writable layer)"))
    .addOption(new Option("--workdir <DIR>", "overlay work directory (same file system as --upperdir)"))
    .option("--read-write", "mount read-write (needs --upperdir)")
    .option("--json", "describe the mount as JSON");
  addMountAttrOptions(mount)
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo mount refs/myimage /mnt",
        "cfsctl mount refs/untrusted /mnt --nosuid --nodev --noexec",
        "cfsctl mount <image-id> /mnt --upperdir /var/upper --workdir /var/work --read-write",
      ),
    )
    .action(
      async (name: string, mountpoint: string, flags: MountFlags & { json?: boolean }, cmd: Command) => {
        checkMountFlags(flags);
        const { mountTweaksFromEnv } = await import("../mount/composefs.ts");
        const { mountRepositoryImage } = await import("../mount/repository_image.ts");
        const { openRepoFromGlobals } = await import("./repo_open.ts");
        using repo = await openRepoFromGlobals(globalsOf(cmd));
        const r = await mountRepositoryImage(repo, name, mountpoint, {
          upperdir: flags.upperdir,
          workdir: flags.workdir,
          readWrite: Boolean(flags.readWrite),
          ...mountAttrs(flags),
          ...mountTweaksFromEnv(),
        });
        for (const w of r.warnings) errln(`kernel: ${w}`);
        warnMountRef(r);
        if (flags.json) {
          const id = /^[0-9a-f]+$/.test(name) ? name : undefined;
          outJson(mountJson(name, r, Boolean(flags.readWrite), id));
        }
      },
    );
}

function registerUnmount(program: Command): void {
  program
    .command("unmount")
    .description("unmount a repository mount and drop its mount ref (its objects become collectable)")
    .argument("<MOUNTPOINT>", "where the image is mounted")
    .option("--lazy", "detach even when busy (MNT_DETACH)")
    .option("--json", "print the removed mount refs as JSON")
    .addHelpText("after", examplesText("cfsctl --repo /var/tmp/repo unmount /mnt"))
    .action(async (mountpoint: string, flags: { lazy?: boolean; json?: boolean }, cmd: Command) => {
      const { unmountRepositoryImage } = await import("../mount/repository_image.ts");
      const { openRepoFromGlobals } = await import("./repo_open.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      const removed = unmountRepositoryImage(repo, mountpoint, { lazy: Boolean(flags.lazy) });
      if (flags.json) outJson({ mountpoint, mount_refs_removed: removed });
    });
}

/** `--json` of `mount` and `oci mount`: what was mounted where, and how. */
export function mountJson(image: string, r: MountedComposefs, readWrite: boolean, imageId?: string) {
  return {
    image,
    image_id: imageId ?? null,
    mountpoint: r.mountpoint,
    source: r.source,
    layer_mode: r.layerMode,
    loop_device: r.loopDevice ?? null,
    verity: r.verity,
    digest_checked_by: r.digestCheckedBy ?? null,
    read_write: readWrite,
    warnings: r.warnings,
  };
}
