// `cfsctl images [--json] [--no-trunc]` (composefs-rs 0.9.0): the named image refs of the repository
// (`images/refs/<name>`, made by `create-image PATH NAME`, `import-image NAME`, …) and the EROFS
// image each resolves to. The listing itself is the repository's (lib/repository/images.ts).
import type { Command } from "commander";
import { out, outJson, outln } from "./output.ts";
import { examplesText, globalsOf } from "./program.ts";
import { renderTable } from "./cmd_oci.ts";

export function registerImagesCommand(program: Command): void {
  program
    .command("images")
    .description("list named images (images/refs/…) and the image id each points to")
    .option("--json", "print as JSON")
    .option("--no-trunc", "show full image ids (default: the first 12 hex digits)")
    .addHelpText(
      "after",
      examplesText("cfsctl --repo /var/tmp/repo images", "cfsctl images --json", "cfsctl images --no-trunc"),
    )
    .action(async (opts, cmd: Command) => {
      const { openRepoFromGlobals } = await import("./repo_open.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      const refs = (await repo.listImages())
        .filter((e) => e.name.startsWith("refs/"))
        .map((e) => ({ name: e.name.slice("refs/".length), id: e.id }));
      if (opts.json) {
        outJson({ images: refs.map((r) => ({ name: r.name, image_id: r.id ? r.id.hex() : null })) });
        return;
      }
      if (refs.length === 0) {
        outln("No images found");
        return;
      }
      const full = opts.trunc === false;
      const rows = refs.map((
        r,
      ) => [r.name, r.id ? (full ? r.id.hex() : r.id.hex().slice(0, 12)) : "(broken link)"]);
      out(renderTable(["NAME", "IMAGE ID"], rows));
    });
}
