// `cfsctl oci …`: pulling, listing, inspecting, tagging and dumping OCI images (README.md#command-reference).
// Only the command tree is built at start-up: what the actions run comes from ./oci_impl.ts, loaded
// when an action starts, so `--help` and unrelated commands do not load the OCI code.
import { type Command, Option } from "commander";
import { CfsError, NotFoundError, UsageError } from "../errors.ts";
import type { Repository } from "../repository/repository.ts";
import type { Directory } from "../tree/tree.ts";
import { addRemoteOptions, remoteOptionsFrom } from "./remote_options.ts";
import { examplesText, globalsOf } from "./program.ts";
import { errln, out, outBytes, outJson, outln } from "./output.ts";
import { createReporter } from "./progress_render.ts";
import { ExitCode } from "./run.ts";
import { checkMountFlags, mountAttrs, mountJson, warnMountRef } from "./cmd_mount.ts";
import { fsckJson, printFsck } from "./cmd_repo.ts";

/** The boot transform (--bootable) on an OCI image's merged tree. */
async function bootTransform(repo: Repository, tree: Directory): Promise<void> {
  const { repoLeafReader, transformForBoot } = await import("../boot/transform.ts");
  await transformForBoot(tree, repoLeafReader(repo));
}

async function withRepo<T>(cmd: Command, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const { openRepoFromGlobals } = await import("./repo_open.ts");
  using repo = await openRepoFromGlobals(globalsOf(cmd));
  return await fn(repo);
}

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

  const pull = oci.command("pull")
    .description("pull an image into the repository and build its composefs image")
    .argument(
      "<IMAGE>",
      "oci:PATH[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF], dir:PATH, docker://…, containers-storage:IMAGE",
    )
    .argument("[NAME]", "tag to give it (default: the IMAGE string)")
    .option(
      "--platform <OS/ARCH[/VARIANT]>",
      "platform to choose from a multi-platform image (default: this host)",
    )
    .option(
      "--bootable",
      "also build the boot image (boot transform: /boot, /sysroot emptied, SELinux labels)",
    )
    .option("--json", "print the result as JSON")
    .addOption(
      new Option(
        "--progress <MODE>",
        "progress output on stderr (auto: bars on a terminal, else plain lines)",
      )
        .choices(["auto", "plain", "json", "none"]).default("auto"),
    )
    .option("--progress-fd <N>", "write progress to this file descriptor")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci pull oci:./image:latest myimage",
        "cfsctl oci pull docker://quay.io/fedora/fedora:latest fedora --platform linux/arm64",
        "cfsctl oci pull docker://registry.example:5000/app:1.0 app --creds user:secret --tls-verify=false",
        "cfsctl oci pull --progress json --progress-fd 3 oci-archive:image.tar img 3>progress.jsonl",
        "cfsctl oci pull --local-fetch zerocopy containers-storage:quay.io/fedora/fedora:41 fedora",
      ),
    )
    .action(async (image: string, name: string | undefined, opts, cmd: Command) => {
      const {
        formatStats,
        formatLocalFetchStats,
        pullImage,
        parsePlatform,
        parseImageReference,
        openImageSource,
        remoteSourceFactory,
      } = await import("./oci_impl.ts");
      const ref = parseImageReference(image);
      const platform = opts.platform ? parsePlatform(opts.platform) : undefined;
      await withRepo(cmd, async (repo) => {
        // Every failure says which pull it ended, OS errors from the filesystem (ENOSPC) included.
        const inPull = (e: unknown) => {
          if (e instanceof CfsError) return e.within(`pulling ${image}`);
          if (e instanceof Error && typeof (e as { code?: unknown }).code === "string") {
            return new CfsError(e.message, { cause: e, context: [`pulling ${image}`] });
          }
          return e;
        };
        const source = await openImageSource(ref, { remote: remoteSourceFactory(remoteOptionsFrom(opts)) })
          .catch((e) => {
            throw inPull(e);
          });
        const reporter = createReporter(opts.progress, opts.progressFd);
        try {
          const r = await pullImage(repo, source, { name: name ?? image, platform, reporter }).catch((e) => {
            throw inPull(e);
          });
          reporter.finish?.();
          // containers-storage read in place: how each object got into the repository
          // (docs/containers-storage.md).
          const lf = (source as { localFetchStats?: Record<string, number> }).localFetchStats;
          const boot = opts.bootable
            ? await (await import("../boot/oci_boot.ts")).linkBootImages(repo, r.manifestDigest)
            : undefined;
          if (boot) { for (const [k, v] of boot.images) r.images.set(k, v); }
          const manifestVerity = boot?.manifestVerity ?? r.manifestVerity;
          if (opts.json) {
            outJson({
              manifest: r.manifestDigest,
              config: r.configDigest,
              manifest_verity: manifestVerity.hex(),
              config_verity: (boot?.configVerity ?? r.configVerity).hex(),
              algorithm: repo.alg,
              tagged: r.tag ?? null,
              is_container: r.isContainer,
              images: Object.fromEntries([...r.images].map(([k, v]) => [k, v.hex()])),
              stats: {
                layers: r.stats.layers,
                layers_skipped: r.stats.layersSkipped,
                objects_new: r.stats.objectsNew,
                objects_present: r.stats.objectsPresent,
                bytes_stored: r.stats.bytesStored,
                bytes_inlined: r.stats.bytesInlined,
                bytes_fetched: r.stats.bytesFetched,
                ...(lf ? { local_fetch: lf } : {}),
              },
            });
          } else {
            outln(`manifest ${r.manifestDigest}`);
            outln(`config   ${r.configDigest}`);
            outln(`verity   ${manifestVerity.hex()}`);
            if (r.tag !== undefined) outln(`tagged   ${r.tag}`);
            outln(`objects  ${lf ? formatLocalFetchStats(lf, r.stats) : formatStats(r.stats)}`);
            if (boot) outln(`Boot image: ${[...boot.images.values()][0].hex()}`);
          }
        } finally {
          reporter.finish?.();
          await source.close();
        }
      });
    });
  addRemoteOptions(pull);

  oci.command("images")
    .description("list tagged images")
    .option("--json", "print as JSON")
    .addHelpText("after", examplesText("cfsctl --repo /var/tmp/repo oci images", "cfsctl oci images --json"))
    .action(async (opts, cmd: Command) => {
      const { listImages } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        const images = await listImages(repo);
        // A bad tag is reported on stderr and does not hide the good ones (exit 1 when there is one).
        for (const i of images) if (i.error !== undefined) errln(`oci images: tag ${i.name}: ${i.error}`);
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
              ...(i.error !== undefined ? { error: i.error } : {}),
            })),
          });
          if (images.some((i) => i.error !== undefined)) throw new ExitCode(1);
          return;
        }
        const good = images.filter((i) => i.error === undefined);
        if (images.length === 0) outln("No images found");
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
      const { imageRefKey, openConfig, openManifest, resolveManifestDigest } = await import("./oci_impl.ts");
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

  oci.command("dump")
    .description("print the dumpfile of an image's merged file tree")
    .argument("<NAME>", "tag, or @sha256:<config digest>")
    .argument(
      "[CONFIG_VERITY]",
      "fs-verity id (hex) of the config splitstream: trust it instead of re-hashing layers",
    )
    .option("--bootable", "apply the boot transform (/boot, /sysroot emptied, SELinux labels)")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci dump myimage > myimage.dump",
        "cfsctl oci dump @sha256:<config digest>",
      ),
    )
    .action(async (name: string, verity: string | undefined, opts, cmd: Command) => {
      const { buildImageTree, writeDumpfile, resolveConfig, treeAsStoredIn } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        const cfg = await resolveConfig(repo, name, verity);
        if (!cfg.isContainer) throw new UsageError(`${name} is an artifact, not a container image`);
        const tree = await buildImageTree(repo, cfg.diffIds);
        if (opts.bootable) await bootTransform(repo, tree);
        // What the repository's (default) image stores, not more (issue 11.12).
        const stored = treeAsStoredIn(tree, repo.erofsVersions()[0]);
        for (const chunk of writeDumpfile(stored)) Deno.stdout.writeSync(chunk);
      });
    });

  oci.command("compute-id")
    .description("compute the composefs image id of an image (nothing is stored)")
    .argument("<NAME>", "tag, or @sha256:<config digest>")
    .argument(
      "[CONFIG_VERITY]",
      "fs-verity id (hex) of the config splitstream: trust it instead of re-hashing layers",
    )
    .option("--bootable", "apply the boot transform (/boot, /sysroot emptied, SELinux labels)")
    .option("--json", "print as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo oci compute-id myimage",
        "cfsctl oci compute-id myimage --json",
      ),
    )
    .action(async (name: string, verity: string | undefined, opts, cmd: Command) => {
      const { fsverityDigest, writeErofs, buildImageTree, resolveConfig } = await import("./oci_impl.ts");
      await withRepo(cmd, async (repo) => {
        const cfg = await resolveConfig(repo, name, verity);
        if (!cfg.isContainer) throw new UsageError(`${name} is an artifact, not a container image`);
        const tree = await buildImageTree(repo, cfg.diffIds);
        if (opts.bootable) await bootTransform(repo, tree);
        const version = repo.erofsVersions()[0];
        const id = fsverityDigest(writeErofs(tree, { version }), repo.alg);
        if (opts.json) outJson({ image_id: id.hex(), algorithm: repo.alg, erofs_version: version });
        else outln(id.hex());
      });
    });

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
      const {
        imageRefKey,
        openConfig,
        openManifest,
        resolveManifestDigest,
        mountRepositoryImage,
        mountTweaksFromEnv,
      } = await import("./oci_impl.ts");
      checkMountFlags(opts);
      await withRepo(cmd, async (repo) => {
        const digest = await resolveManifestDigest(repo, image);
        const m = await openManifest(repo, digest);
        const c = await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m);
        const id = c.refs.get(imageRefKey(repo.erofsVersions()[0], Boolean(opts.bootable)));
        if (!id) {
          throw new NotFoundError(
            opts.bootable
              ? "No boot EROFS image linked — try pulling with --bootable"
              : "No composefs EROFS image linked — try re-pulling the image",
          );
        }
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
      const {
        parseDigest,
        layerStreamId,
        tarEntriesFromSplitstream,
        layerChunks,
        reassembleSplitstream,
        bstrToBytes,
        tarEntryDumpLine,
      } = await import("./oci_impl.ts");
      parseDigest(diffId, "diff_id");
      await withRepo(cmd, async (repo) => {
        const verity = await repo.hasStream(layerStreamId(diffId));
        if (!verity) throw new NotFoundError(`layer ${diffId} is not in the repository`);
        if (opts.json) {
          const reader = await repo.openStream(layerStreamId(diffId), verity);
          let externalSize = 0;
          let inlineSize = 0;
          const sizes = new Map<string, number>();
          for await (const c of reader.chunks()) {
            if (c.kind === "inline") inlineSize += c.data.length;
            else {
              const hex = c.id.hex();
              if (!sizes.has(hex)) {
                sizes.set(hex, (await Deno.stat(`${repo.path}/objects/${c.id.objectPath()}`)).size);
              }
              externalSize += sizes.get(hex)!;
            }
          }
          let entryCount = 0;
          for await (const _ of tarEntriesFromSplitstream(layerChunks(repo, diffId, verity))) entryCount++;
          outJson({
            diffId,
            verity: verity.hex(),
            size: inlineSize + externalSize,
            entryCount,
            splitstream: { externalObjects: reader.objectRefs.length, externalSize, inlineSize },
          });
          return;
        }
        if (opts.dumpfile) {
          for await (const e of tarEntriesFromSplitstream(layerChunks(repo, diffId, verity))) {
            outBytes(bstrToBytes(tarEntryDumpLine(e) + "\n"));
          }
          return;
        }
        if (Deno.stdout.isTerminal()) {
          throw new UsageError("refusing to write a tar archive to a terminal; redirect stdout");
        }
        // Any content type: tar layers and raw artifact blobs come back the same way.
        const tar = reassembleSplitstream(
          layerChunks(repo, diffId, verity, null),
          (id) => repo.openObjectStream(id),
        );
        for await (const chunk of tar) outBytes(chunk);
      });
    });

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
      const { parseDigest, layerStreamId, splitTarInto, CONTENT_TYPE, SplitStreamWriter } = await import(
        "./oci_impl.ts"
      );
      parseDigest(digest, "diff_id");
      await withRepo(cmd, async (repo) => {
        await repo.checkWritable();
        const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_LAYER);
        await splitTarInto(Deno.stdin.readable, repo, w, { expectedDiffId: digest });
        const id = await repo.writeStream(layerStreamId(digest), w, name);
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
