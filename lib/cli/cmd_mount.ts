// `cfsctl mount NAME MOUNTPOINT` (spec §1.3, §9): mounts a repository image (the mount code is
// imported when the action starts).
import { type Command, Option } from "commander";
import { UsageError } from "../errors.ts";
import type { MountedComposefs } from "../mount/composefs.ts";
import { errln, outJson } from "./output.ts";
import { examplesText, globalsOf } from "./program.ts";

interface MountFlags {
  upperdir?: string;
  workdir?: string;
  readWrite?: boolean;
}

/** Checks the flag combinations the reference tool enforces before touching anything. */
export function checkMountFlags(f: MountFlags): void {
  if ((f.upperdir === undefined) !== (f.workdir === undefined)) {
    throw new UsageError("--upperdir and --workdir must be given together");
  }
  if (f.readWrite && f.upperdir === undefined) throw new UsageError("--read-write requires --upperdir");
}

export function registerMountCommands(program: Command): void {
  program
    .command("mount")
    .description("mount a composefs image of the repository")
    .argument("<NAME>", "image id (hex digest, verified) or refs/<name>")
    .argument("<MOUNTPOINT>", "where to mount it")
    .addOption(new Option("--upperdir <DIR>", "overlay upper directory (writable layer)"))
    .addOption(new Option("--workdir <DIR>", "overlay work directory (same file system as --upperdir)"))
    .option("--read-write", "mount read-write (needs --upperdir)")
    .option("--json", "describe the mount as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo mount refs/myimage /mnt",
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
          ...mountTweaksFromEnv(),
        });
        for (const w of r.warnings) errln(`kernel: ${w}`);
        if (flags.json) {
          const id = /^[0-9a-f]+$/.test(name) ? name : undefined;
          outJson(mountJson(name, r, Boolean(flags.readWrite), id));
        }
      },
    );
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
