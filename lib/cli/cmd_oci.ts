// `cfsctl oci …`: pulling, listing, inspecting, tagging and dumping OCI images (spec §1.4).
import type { Command } from "commander";
import { NotFoundError, UsageError } from "../errors.ts";
import { fsverityDigest } from "../fsverity/hasher.ts";
import { writeErofs } from "../erofs/writer.ts";
import { parseDigest, sha256Digest } from "../oci/digest.ts";
import {
  imageRefKey,
  listImages,
  openConfig,
  openManifest,
  resolveManifestDigest,
  tagImage,
  untagImage,
} from "../oci/image_store.ts";
import { buildImageTree } from "../oci/image_tree.ts";
import { formatStats, pullImage } from "../oci/pull.ts";
import { parsePlatform } from "../oci/platform.ts";
import { parseImageReference } from "../oci/reference.ts";
import { openImageSource } from "../oci/transport/open_source.ts";
import type { Repository } from "../repository/repository.ts";
import { globalsOf } from "./program.ts";
import { out, outJson, outln } from "./output.ts";
import { openRepoFromGlobals } from "./repo_open.ts";
import { createReporter } from "./progress_render.ts";
import { writeDumpfile } from "../dumpfile/write.ts";
import { configStreamId } from "../oci/tags.ts";
import { layerChunks } from "../oci/image_tree.ts";
import { createHash } from "node:crypto";
import { IntegrityError } from "../errors.ts";
import { reassembleSplitstream } from "../oci/layer_split.ts";

async function withRepo<T>(cmd: Command, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await openRepoFromGlobals(globalsOf(cmd));
  try {
    return await fn(repo);
  } finally {
    repo.close();
  }
}

/**
 * NAME (a tag) or `@sha256:…` (a config digest, whose layers are re-verified by hashing) → the
 * config digest and the layer diff_ids, for dump and compute-id (§7.8).
 */
async function resolveConfig(repo: Repository, name: string, configVerity?: string) {
  if (name.startsWith("@")) {
    const digest = parseDigest(name.slice(1), "config digest").digest;
    const cfg = await openConfig(repo, digest, configVerity ? repo.parseObjectId(configVerity) : undefined);
    if (!configVerity) {
      for (const diffId of cfg.diffIds) {
        const h = createHash("sha256");
        for await (
          const c of reassembleSplitstream(layerChunks(repo, diffId), (id) => repo.openObjectStream(id))
        ) {
          h.update(c);
        }
        const got = "sha256:" + h.digest("hex");
        if (got !== diffId) throw new IntegrityError(`layer ${diffId}: stored stream hashes to ${got}`);
      }
    }
    return cfg;
  }
  const manifestDigest = await resolveManifestDigest(repo, name);
  const m = await openManifest(repo, manifestDigest);
  return await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m);
}

export function registerOciCommands(program: Command): void {
  const oci = program.command("oci").description("OCI container images in the repository");

  oci.command("pull")
    .description("pull an image into the repository and build its composefs image")
    .argument(
      "<IMAGE>",
      "oci:PATH[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF], dir:PATH, docker://…",
    )
    .argument("[NAME]", "tag to give it (default: the IMAGE string)")
    .option(
      "--platform <OS/ARCH[/VARIANT]>",
      "platform to choose from a multi-platform image (default: this host)",
    )
    .option("--bootable", "also build the boot image (not supported yet)")
    .option("--json", "print the result as JSON")
    .option("--progress <MODE>", "progress output: auto, plain, json or none", "auto")
    .option("--progress-fd <N>", "write progress to this file descriptor")
    .addHelpText("after", "\nExample:\n  cfsctl --repo /var/tmp/repo oci pull oci:./image:latest myimage")
    .action(async (image: string, name: string | undefined, opts, cmd: Command) => {
      if (opts.bootable) throw new UsageError("--bootable is not supported yet");
      const ref = parseImageReference(image);
      const platform = opts.platform ? parsePlatform(opts.platform) : undefined;
      await withRepo(cmd, async (repo) => {
        const source = await openImageSource(ref);
        const reporter = createReporter(opts.progress, opts.progressFd);
        try {
          const r = await pullImage(repo, source, { name: name ?? image, platform, reporter });
          reporter.finish?.();
          if (opts.json) {
            outJson({
              manifest: r.manifestDigest,
              config: r.configDigest,
              manifest_verity: r.manifestVerity.hex(),
              config_verity: r.configVerity.hex(),
              tagged: r.tag ?? null,
              is_container: r.isContainer,
              images: Object.fromEntries([...r.images].map(([k, v]) => [k, v.hex()])),
              stats: r.stats,
            });
          } else {
            outln(`manifest ${r.manifestDigest}`);
            outln(`config   ${r.configDigest}`);
            outln(`verity   ${r.manifestVerity.hex()}`);
            if (r.tag !== undefined) outln(`tagged   ${r.tag}`);
            outln(`objects  ${formatStats(r.stats)}`);
          }
        } finally {
          reporter.finish?.();
          await source.close();
        }
      });
    });

  oci.command("images")
    .description("list tagged images")
    .option("--json", "print as JSON")
    .action(async (opts, cmd: Command) => {
      await withRepo(cmd, async (repo) => {
        const images = await listImages(repo);
        if (opts.json) {
          outJson({
            images: images.map((i) => ({
              name: i.name,
              manifest_digest: i.manifestDigest,
              is_container: i.isContainer,
              architecture: i.architecture,
              os: i.os,
              created: i.created,
              layer_count: i.layerCount,
              referrer_count: i.referrerCount,
            })),
          });
          return;
        }
        if (images.length === 0) {
          outln("No images found");
          return;
        }
        const rows = images.map((i) => [
          i.name,
          i.manifestDigest.replace(/^sha256:/, "").slice(0, 12),
          i.architecture || "artifact",
          String(i.layerCount),
          String(i.referrerCount),
        ]);
        out(renderTable(["NAME", "DIGEST", "ARCH", "LAYERS", "REFS"], rows));
      });
    });

  oci.command("inspect")
    .description("show an image's manifest, config and composefs images")
    .argument("<IMAGE>", "tag or @sha256:<manifest digest>")
    .option("--manifest", "print only the raw manifest")
    .option("--config", "print only the raw config")
    .action(async (image: string, opts, cmd: Command) => {
      if (opts.manifest && opts.config) {
        throw new UsageError("--manifest and --config are mutually exclusive");
      }
      await withRepo(cmd, async (repo) => {
        const digest = await resolveManifestDigest(repo, image);
        const m = await openManifest(repo, digest);
        const c = await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m);
        const dec = new TextDecoder();
        if (opts.manifest) return outln(dec.decode(m.bytes));
        if (opts.config) return outln(dec.decode(c.bytes));
        const v = repo.erofsVersions()[0];
        outJson({
          manifest: dec.decode(m.bytes),
          config: dec.decode(c.bytes),
          referrers: [],
          composefs_erofs: c.refs.get(imageRefKey(v))?.hex() ?? null,
          composefs_boot_erofs: c.refs.get(imageRefKey(v, true))?.hex() ?? null,
        });
      });
    });

  oci.command("tag")
    .description("tag a stored manifest")
    .argument("<MANIFEST_DIGEST>", "sha256:<hex>")
    .argument("<NAME>")
    .action(async (digest: string, name: string, _opts, cmd: Command) => {
      await withRepo(cmd, async (repo) => {
        await tagImage(repo, parseDigest(digest, "manifest digest").digest, name);
        outln(`Tagged ${digest} as ${name}`);
      });
    });

  oci.command("untag")
    .description("remove a tag (the image's data stays until gc)")
    .argument("<NAME>")
    .action(async (name: string, _opts, cmd: Command) => {
      await withRepo(cmd, async (repo) => {
        await untagImage(repo, name);
        outln(`Removed tag ${name}`);
      });
    });

  oci.command("dump")
    .description("print the dumpfile of an image's merged file tree")
    .argument("<NAME>", "tag, or @sha256:<config digest>")
    .argument("[CONFIG_VERITY]")
    .option("--bootable", "apply the boot transform (not supported yet)")
    .action(async (name: string, verity: string | undefined, opts, cmd: Command) => {
      if (opts.bootable) throw new UsageError("--bootable is not supported yet");
      await withRepo(cmd, async (repo) => {
        const cfg = await resolveConfig(repo, name, verity);
        if (!cfg.isContainer) throw new UsageError(`${name} is an artifact, not a container image`);
        const tree = await buildImageTree(repo, cfg.diffIds);
        for (const chunk of writeDumpfile(tree)) Deno.stdout.writeSync(chunk);
      });
    });

  oci.command("compute-id")
    .description("compute the composefs image id of an image (nothing is stored)")
    .argument("<NAME>", "tag, or @sha256:<config digest>")
    .argument("[CONFIG_VERITY]")
    .option("--bootable", "apply the boot transform (not supported yet)")
    .option("--json", "print as JSON")
    .action(async (name: string, verity: string | undefined, opts, cmd: Command) => {
      if (opts.bootable) throw new UsageError("--bootable is not supported yet");
      await withRepo(cmd, async (repo) => {
        const cfg = await resolveConfig(repo, name, verity);
        if (!cfg.isContainer) throw new UsageError(`${name} is an artifact, not a container image`);
        const tree = await buildImageTree(repo, cfg.diffIds);
        const version = repo.erofsVersions()[0];
        const id = fsverityDigest(writeErofs(tree, { version }), repo.alg);
        if (opts.json) outJson({ image_id: id.hex(), algorithm: repo.alg, erofs_version: version });
        else outln(id.hex());
      });
    });

  void configStreamId;
  void sha256Digest;
  void NotFoundError;
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
