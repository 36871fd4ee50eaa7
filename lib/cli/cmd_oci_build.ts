// `cfsctl oci dump` and `cfsctl oci compute-id` (README.md#command-reference): an image's merged file
// tree, as a dumpfile or as the id of its composefs image. NAME is a tag or `@<config digest>`; without
// CONFIG_VERITY a config digest's layers are re-hashed first (docs/oci.md#verification).
import type { Command } from "commander";
import { UsageError } from "../errors.ts";
import type { Repository } from "../repository/repository.ts";
import { examplesText } from "./program.ts";
import { outJson, outln } from "./output.ts";
import { withRepo } from "./with_repo.ts";

const NAME_HELP = "tag, or @sha256:<config digest>";
const VERITY_HELP = "fs-verity id (hex) of the config splitstream: trust it instead of re-hashing layers";
const BOOTABLE_HELP = "apply the boot transform (/boot, /sysroot emptied, SELinux labels)";

/** The image's merged tree, with the boot transform when asked; an artifact has none (usage error). */
async function imageTree(repo: Repository, name: string, verity: string | undefined, bootable: boolean) {
  const { openNamedImage } = await import("./oci_impl.ts");
  const img = await openNamedImage(repo, name, verity);
  if (!img.isContainer) throw new UsageError(`${name} is an artifact, not a container image`);
  if (!bootable) return await img.tree();
  const { bootImageTree } = await import("../boot/oci_boot.ts");
  return (await bootImageTree(repo, img)).tree;
}

export function registerOciDump(oci: Command): void {
  oci.command("dump")
    .description("print the dumpfile of an image's merged file tree")
    .argument("<NAME>", NAME_HELP)
    .argument("[CONFIG_VERITY]", VERITY_HELP)
    .option("--bootable", BOOTABLE_HELP)
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci dump myimage > myimage.dump",
        "cfsctl oci dump @sha256:<config digest>",
      ),
    )
    .action(async (name: string, verity: string | undefined, opts, cmd: Command) => {
      const { writeDumpfile, treeAsStoredIn } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        const tree = await imageTree(repo, name, verity, Boolean(opts.bootable));
        // What the repository's (default) image stores, not more (issue 11.12).
        const stored = treeAsStoredIn(tree, repo.erofsVersions()[0]);
        for (const chunk of writeDumpfile(stored)) Deno.stdout.writeSync(chunk);
      });
    });
}

export function registerOciComputeId(oci: Command): void {
  oci.command("compute-id")
    .description("compute the composefs image id of an image (nothing is stored)")
    .argument("<NAME>", NAME_HELP)
    .argument("[CONFIG_VERITY]", VERITY_HELP)
    .option("--bootable", BOOTABLE_HELP)
    .option("--json", "print as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci compute-id myimage",
        "cfsctl oci compute-id myimage --json",
      ),
    )
    .action(async (name: string, verity: string | undefined, opts, cmd: Command) => {
      const { computeImageId } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        const tree = await imageTree(repo, name, verity, Boolean(opts.bootable));
        const version = repo.erofsVersions()[0];
        const id = computeImageId(repo, tree, version);
        if (opts.json) outJson({ image_id: id.hex(), algorithm: repo.alg, erofs_version: version });
        else outln(id.hex());
      });
    });
}
