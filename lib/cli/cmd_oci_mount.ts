// `cfsctl oci mount` (README.md#command-reference): the composefs image a pulled image links, mounted.
import type { Command } from "commander";
import { errln, outJson } from "./output.ts";
import { examplesText } from "./program.ts";
import { checkMountFlags, mountAttrs, mountJson, warnMountRef } from "./cmd_mount.ts";
import { withRepo } from "./with_repo.ts";

export function registerOciMount(oci: Command): void {
  oci.command("mount")
    .description("mount the composefs image of a pulled image")
    .argument("<IMAGE>", "tag, or sha256:<manifest digest>")
    .argument("<MOUNTPOINT>", "where to mount it")
    .option("--bootable", "mount the boot image (pulled with --bootable)")
    .option("--upperdir <DIR>", "overlay upper directory (writable layer)")
    .option("--workdir <DIR>", "overlay work directory")
    .option("--read-write", "mount read-write (needs --upperdir)")
    .option("--json", "describe the mount as JSON")
    .option("--nosuid", "ignore set-user-id and set-group-id bits (use for untrusted images)")
    .option("--nodev", "do not allow access to device nodes (use for untrusted images)")
    .option("--noexec", "do not allow execution of programs (use for untrusted images)")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci mount myimage /mnt",
        "cfsctl oci mount untrusted:latest /mnt --nosuid --nodev --noexec",
        "cfsctl oci mount sha256:<manifest digest> /mnt --upperdir /var/up --workdir /var/work --read-write",
      ),
    )
    .action(async (image: string, mountpoint: string, opts, cmd: Command) => {
      const { OciImage, mountRepositoryImage, mountTweaksFromEnv } = await import("./oci_impl.ts");
      checkMountFlags(opts);
      await withRepo(cmd, async (repo) => {
        const img = await OciImage.open(repo, image);
        const id = img.requireImageId(repo.erofsVersions()[0], Boolean(opts.bootable));
        const r = await mountRepositoryImage(repo, id.hex(), mountpoint, {
          upperdir: opts.upperdir,
          workdir: opts.workdir,
          readWrite: Boolean(opts.readWrite),
          ...mountAttrs(opts),
          ...mountTweaksFromEnv(),
        });
        for (const w of r.warnings) errln(`kernel: ${w}`);
        warnMountRef(r);
        if (opts.json) outJson(mountJson(image, r, Boolean(opts.readWrite), id.hex()));
      });
    });
}
