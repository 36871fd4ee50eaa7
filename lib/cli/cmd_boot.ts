// Boot commands (docs/boot.md): compute-karg, oci compute-karg, oci prepare-boot, setup-root.
// The boot code is loaded when an action starts.
import type { Command } from "commander";
import { UsageError } from "../errors.ts";
import { outJson, outln } from "./output.ts";
import { examplesText, globalsOf } from "./program.ts";

interface KargFlags {
  propagateUsrToRoot?: boolean;
  json?: boolean;
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export function registerBootCommands(program: Command): void {
  program
    .command("compute-karg")
    .description(
      "print the kernel argument that boots a directory as a composefs image (boot transform applied)",
    )
    .argument("<PATH>", "directory to read")
    .option("--no-propagate-usr-to-root", "read the directory as is (all xattrs, no /usr → root metadata)")
    .option("--json", "print the karg and the image id as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --no-repo --hash sha256 compute-karg ./rootfs",
        "cfsctl --no-repo --insecure --erofs-version 1 compute-karg ./rootfs",
      ),
    )
    .action(async (path: string, flags: KargFlags, cmd: Command) => {
      const { fsverityDigest, hashForRepoless, readFsTree, writeErofs, repoPathFromGlobals } = await import(
        "./image_impl.ts"
      );
      const { formatKarg } = await import("../boot/karg.ts");
      const g = globalsOf(cmd);
      const alg = await hashForRepoless(g);
      const root = await readFsTree(
        path,
        { bootable: true, propagateUsrToRoot: flags.propagateUsrToRoot },
        alg,
      );
      const version = g.erofsVersion ?? 2;
      const hex = fsverityDigest(writeErofs(root, { version }), alg).hex();
      let insecure = Boolean(g.insecure);
      if (!insecure && !g.noRepo) {
        // The karg is for the repository it will boot from: an insecure one cannot satisfy a karg
        // that demands fs-verity, so it gets the "?" too.
        const { repositoryIsInsecure } = await import("./boot_impl.ts");
        insecure = await repositoryIsInsecure(repoPathFromGlobals(g), alg);
      }
      const karg = formatKarg(hex, alg, version, insecure);
      if (flags.json) outJson({ karg, image_id: hex, algorithm: alg, erofs_version: version, insecure });
      else outln(karg);
    });

  const oci = program.commands.find((c) => c.name() === "oci");
  if (oci) registerOciBootCommands(oci);

  program
    .command("setup-root")
    .description("initramfs: mount the image named on the kernel command line as the new root")
    .option("--sysroot <DIR>", "the physical root holding composefs/ and state/", "/sysroot")
    .option("--config <FILE>", "configuration", "/usr/lib/composefs/setup-root-conf.toml")
    .option("--cmdline <TEXT>", "kernel command line (default: /proc/cmdline)")
    .option("--root-fs <DIR>", "testing: bind-mount this tree as the root instead of the image")
    .option("--target <DIR>", "testing: mount the new root here instead of over the sysroot")
    .option("--json", "describe the result as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl setup-root",
        'cfsctl setup-root --sysroot /tmp/sysroot --cmdline "composefs=?<hex>" --target /tmp/newroot',
      ),
    )
    .action(async (opts) => {
      const { runSetupRoot } = await import("./setup_root.ts");
      const code = await runSetupRoot(opts);
      if (code !== 0) {
        const { ExitCode } = await import("./run.ts");
        throw new ExitCode(code);
      }
    });
}

function registerOciBootCommands(oci: Command): void {
  oci.command("compute-karg")
    .description("print the kernel argument that boots a pulled image (boot transform applied)")
    .argument("<NAME>", "tag, or @sha256:<config digest>")
    .argument("[CONFIG_VERITY]", "fs-verity id (hex) of the config splitstream")
    .option("--json", "print the karg and the image id as JSON")
    .addHelpText("after", examplesText("cfsctl --repo /var/tmp/repo oci compute-karg myimage"))
    .action(async (name: string, verity: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const { openRepoFromGlobals, openNamedImage, bootImageTree, bootKarg } = await import("./boot_impl.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      const { tree } = await bootImageTree(repo, await openNamedImage(repo, name, verity));
      const k = bootKarg(repo, tree);
      if (opts.json) {
        outJson({
          karg: k.karg,
          image_id: k.hex,
          algorithm: repo.alg,
          erofs_version: k.version,
          insecure: repo.insecure,
        });
      } else outln(k.karg);
    });

  oci.command("prepare-boot")
    .description("commit an image's boot image and write its boot entry (BLS or UKI) into the boot directory")
    .argument("<NAME>", "tag, or @sha256:<config digest>")
    .argument("[CONFIG_VERITY]", "fs-verity id (hex) of the config splitstream")
    .option("--bootdir <DIR>", "boot directory (the ESP or /boot partition)", "/boot")
    .option("--entry-id <ID>", "name the entry ID.conf (files under /ID/) or ID.efi")
    .option("--cmdline <ARG>", "extra kernel argument (repeatable; BLS entries only)", collect, [])
    .option("--json", "describe what was written as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /sysroot/composefs oci prepare-boot myos --bootdir /boot --entry-id myos --cmdline rw",
      ),
    )
    .action(async (name: string, verity: string | undefined, opts, cmd: Command) => {
      const { openRepoFromGlobals, openNamedImage, prepareBoot, stateRootFor } = await import(
        "./boot_impl.ts"
      );
      const g = globalsOf(cmd);
      using repo = await openRepoFromGlobals(g);
      await repo.ensureWritable();
      const img = await openNamedImage(repo, name, verity);
      if (!img.isContainer) throw new UsageError(`${name} is an artifact, not a container image`);
      const r = await prepareBoot(repo, img, {
        bootdir: opts.bootdir,
        entryId: opts.entryId,
        cmdline: opts.cmdline,
        stateRoot: stateRootFor(g.repo, repo.path),
      });
      if (opts.json) {
        outJson({
          image_id: r.imageId.hex(),
          karg: r.karg,
          kind: r.written.kind,
          files: r.written.files,
          state_dir: r.stateDir,
          entries_found: r.entries,
        });
        return;
      }
      outln(`image    ${r.imageId.hex()}`);
      outln(`karg     ${r.karg}`);
      for (const f of r.written.files) outln(`wrote    ${opts.bootdir.replace(/\/+$/, "")}/${f}`);
      outln(`state    ${r.stateDir}`);
    });
}
