// `cfsctl oci layer` and `cfsctl oci import-layer` (README.md#command-reference): one stored layer
// stream shown (its tar, its entries or a summary) or imported from stdin.
import { type Command, Option } from "commander";
import { UsageError } from "../errors.ts";
import { examplesText } from "./program.ts";
import { outBytes, outJson, outln } from "./output.ts";
import { withRepo } from "./with_repo.ts";

export function registerOciLayer(oci: Command): void {
  oci.command("layer")
    .description("show a stored layer: the original tar (default), its entries, or a summary")
    .argument("<DIFF_ID>", "sha256:<hex> (the layer's diff_id, or an artifact layer digest)")
    .addOption(new Option("--dumpfile", "one dumpfile line per tar entry").conflicts("json"))
    .option("--json", "summary as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci layer sha256:<diff_id> > layer.tar",
        "cfsctl oci layer sha256:<diff_id> --dumpfile",
        "cfsctl oci layer sha256:<diff_id> --json",
      ),
    )
    .action(async (diffId: string, opts, cmd: Command) => {
      const { parseDigest, storedLayerVerity, layerSummary, layerDumpLines, layerBytes, bstrToBytes } =
        await import("./oci_impl.ts");
      parseDigest(diffId, "diff_id");
      await withRepo(cmd, async (repo) => {
        const verity = await storedLayerVerity(repo, diffId);
        if (opts.json) {
          const s = await layerSummary(repo, diffId, verity);
          return outJson({
            diffId,
            verity: verity.hex(),
            size: s.size,
            entryCount: s.entryCount,
            splitstream: {
              externalObjects: s.externalObjects,
              externalSize: s.externalSize,
              inlineSize: s.inlineSize,
            },
          });
        }
        if (opts.dumpfile) {
          for await (const line of layerDumpLines(repo, diffId, verity)) outBytes(bstrToBytes(line + "\n"));
          return;
        }
        if (Deno.stdout.isTerminal()) {
          throw new UsageError("refusing to write a tar archive to a terminal; redirect stdout");
        }
        for await (const chunk of layerBytes(repo, diffId, verity)) outBytes(chunk);
      });
    });
}

export function registerOciImportLayer(oci: Command): void {
  oci.command("import-layer")
    .description("import an uncompressed tar layer from stdin (its sha256 must equal DIGEST)")
    .argument("<DIGEST>", "sha256:<hex> diff_id of the tar")
    .argument("[NAME]", "also name the stream streams/refs/NAME")
    .option("--json", "print the stream id as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci import-layer sha256:$(sha256sum < layer.tar | cut -d' ' -f1) mylayer < layer.tar",
      ),
    )
    .action(async (digest: string, name: string | undefined, opts, cmd: Command) => {
      const { parseDigest, importTarLayer, layerStreamId } = await import("./oci_impl.ts");
      parseDigest(digest, "diff_id");
      await withRepo(cmd, async (repo) => {
        const id = await importTarLayer(repo, digest, Deno.stdin.readable, name);
        if (opts.json) {
          outJson({
            diff_id: digest,
            stream: layerStreamId(digest),
            verity: id.hex(),
            algorithm: repo.alg,
            ref: name ?? null,
          });
        } else outln(id.toId());
      });
    });
}
