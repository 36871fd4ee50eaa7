// `cfsctl oci …`: pulling, listing, inspecting, tagging and dumping OCI images (README.md#command-reference).
// One function registers each subcommand (the larger ones in ./cmd_oci_*.ts). Only the command tree is
// built at start-up: what the actions run comes from ./oci_impl.ts, loaded when an action starts, so
// `--help` and unrelated commands do not load the OCI code.
import { type Command, Option } from "commander";
import { examplesText } from "./program.ts";
import { errln, out, outJson, outln } from "./output.ts";
import { ExitCode } from "./run.ts";
import { fsckJson, printFsck } from "./cmd_repo.ts";
import { registerOciPull } from "./cmd_oci_pull.ts";
import { registerOciComputeId, registerOciDump } from "./cmd_oci_build.ts";
import { registerOciMount } from "./cmd_oci_mount.ts";
import { registerOciImportLayer, registerOciLayer } from "./cmd_oci_layer.ts";
import { withRepo } from "./with_repo.ts";

export function registerOciCommands(program: Command): void {
  const oci = program.command("oci").description("OCI container images in the repository")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci pull oci:examples/demo-image:latest demo",
        "cfsctl --repo /var/tmp/repo oci images",
        "cfsctl --repo /var/tmp/repo oci mount demo /mnt",
      ),
    );
  registerOciPull(oci);
  registerOciImages(oci);
  registerOciInspect(oci);
  registerOciTag(oci);
  registerOciUntag(oci);
  registerOciDump(oci);
  registerOciComputeId(oci);
  registerOciMount(oci);
  registerOciLayer(oci);
  registerOciImportLayer(oci);
  registerOciFsck(oci);
}

function registerOciImages(oci: Command): void {
  oci.command("images")
    .description("list tagged images")
    .option("--json", "print as JSON")
    .addHelpText("after", examplesText("cfsctl --repo /var/tmp/repo oci images", "cfsctl oci images --json"))
    .action(async (opts, cmd: Command) => {
      const { listImages, imageListFields } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        const images = await listImages(repo);
        // A bad tag is reported on stderr and does not hide the good ones (exit 1 when there is one).
        for (const i of images) if (i.error !== undefined) errln(`oci images: tag ${i.name}: ${i.error}`);
        const good = images.filter((i) => i.error === undefined);
        if (opts.json) {
          outJson({
            images: images.map((i) => ({
              ...imageListFields(i),
              ...(i.error !== undefined ? { error: i.error } : {}),
            })),
          });
        } else if (images.length === 0) outln("No images found");
        else if (good.length > 0) {
          const rows = good.map((i) => [
            i.name,
            i.manifestDigest.replace(/^sha256:/, "").slice(0, 12),
            i.architecture || "artifact",
            String(i.layerCount),
            String(i.referrerCount),
          ]);
          out(renderTable(["NAME", "DIGEST", "ARCH", "LAYERS", "REFS"], rows));
        }
        if (good.length < images.length) throw new ExitCode(1);
      });
    });
}

function registerOciInspect(oci: Command): void {
  oci.command("inspect")
    .description("show an image's manifest, config and composefs images")
    .argument("<IMAGE>", "tag or @sha256:<manifest digest>")
    .addOption(new Option("--manifest", "print only the raw manifest").conflicts("config"))
    .option("--config", "print only the raw config")
    .addOption(
      new Option("--json", "the default output (accepted for uniformity)").conflicts(["manifest", "config"]),
    )
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci inspect myimage",
        "cfsctl oci inspect --config myimage",
        "cfsctl oci inspect @sha256:<manifest digest>",
      ),
    )
    .action(async (image: string, opts, cmd: Command) => {
      const { OciImage, inspectFields } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        const fields = inspectFields(await OciImage.open(repo, image));
        if (opts.manifest) return outln(fields.manifest!);
        if (opts.config) return outln(fields.config);
        outJson(fields);
      });
    });
}

function registerOciTag(oci: Command): void {
  oci.command("tag")
    .description("tag a stored manifest")
    .argument("<MANIFEST_DIGEST>", "sha256:<hex>")
    .argument("<NAME>", "the tag")
    .option("--json", "print the result as JSON")
    .addHelpText("after", examplesText("cfsctl --repo /var/tmp/repo oci tag sha256:<manifest digest> stable"))
    .action(async (digest: string, name: string, opts, cmd: Command) => {
      const { parseDigest, tagImage } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        await tagImage(repo, parseDigest(digest, "manifest digest").digest, name);
        if (opts.json) outJson({ name, manifest_digest: digest });
        else outln(`Tagged ${digest} as ${name}`);
      });
    });
}

function registerOciUntag(oci: Command): void {
  oci.command("untag")
    .description("remove a tag (the image's data stays until gc)")
    .argument("<NAME>", "the tag")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      examplesText("cfsctl --repo /var/tmp/repo oci untag stable && cfsctl --repo /var/tmp/repo gc"),
    )
    .action(async (name: string, opts, cmd: Command) => {
      const { untagImage } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        await untagImage(repo, name);
        if (opts.json) outJson({ name, removed: true });
        else outln(`Removed tag ${name}`);
      });
    });
}

function registerOciFsck(oci: Command): void {
  oci.command("fsck")
    .description("check the repository and every tagged image (or only IMAGE)")
    .argument("[IMAGE]", "tag to check")
    .option("--json", "print the report as JSON (exit status 0)")
    .option("--metadata-only", "skip re-hashing every object")
    .addHelpText(
      "after",
      examplesText("cfsctl --repo /var/tmp/repo oci fsck", "cfsctl oci fsck myimage --json"),
    )
    .action(async (image: string | undefined, opts, cmd: Command) => {
      const { ociFsck } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        const base = await repo.fsck({ metadataOnly: Boolean(opts.metadataOnly) });
        const oci = await ociFsck(repo, image);
        if (opts.json) {
          outJson({
            ok: base.ok && oci.ok,
            images_checked: oci.imagesChecked,
            images_corrupted: oci.imagesCorrupted,
            errors: oci.errors,
            repo: await fsckJson(base),
          });
          return;
        }
        printFsck(base);
        outln(`oci images: ${oci.imagesChecked - oci.imagesCorrupted}/${oci.imagesChecked} ok`);
        outln(`oci errors: ${oci.errors.length}`);
        for (const e of oci.errors) outln(`  - ${e}`);
        if (!base.ok || !oci.ok) throw new ExitCode(1);
      });
    });
}

/** A table with UTF-8 box drawing, as cfsctl prints it. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (l: string, m: string, r: string) =>
    l + widths.map((w) => "─".repeat(w + 2)).join(m) + r + "\n";
  const row = (cells: string[]) => "│" + cells.map((c, i) => ` ${c.padEnd(widths[i])} `).join("│") + "│\n";
  return line("┌", "┬", "┐") + row(header) + line("├", "┼", "┤") + rows.map(row).join("") +
    line("└", "┴", "┘");
}
