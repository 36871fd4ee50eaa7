// `cfsctl oci pull` (README.md#command-reference): one pull, then its result printed. What it runs
// comes from ./oci_impl.ts, loaded when the action starts.
import type { Command } from "commander";
import { CfsError } from "../errors.ts";
import type { Repository } from "../repository/repository.ts";
import type { PullResult } from "../oci/pull.ts";
import type { LinkedBootImages } from "../boot/oci_boot.ts";
import { addProgressOptions } from "./common_options.ts";
import { addRemoteOptions, remoteOptionsFrom } from "./remote_options.ts";
import { examplesText } from "./program.ts";
import { outJson, outln } from "./output.ts";
import { createReporter } from "./progress_render.ts";
import { withRepo } from "./with_repo.ts";

/** Every failure says which pull it ended, OS errors from the filesystem (ENOSPC) included. */
function inPull(image: string) {
  return (e: unknown): never => {
    if (e instanceof CfsError) throw e.within(`pulling ${image}`);
    if (e instanceof Error && typeof (e as { code?: unknown }).code === "string") {
      throw new CfsError(e.message, { cause: e, context: [`pulling ${image}`] });
    }
    throw e;
  };
}

/** How a pull ended, with the boot images when --bootable linked them. */
interface Pulled {
  r: PullResult;
  boot?: LinkedBootImages;
  /** containers-storage read in place: how each object got into the repository (docs/containers-storage.md). */
  localFetch?: Record<string, number>;
}

function pullJson(repo: Repository, { r, boot, localFetch }: Pulled) {
  return {
    manifest: r.manifestDigest,
    config: r.configDigest,
    manifest_verity: (boot?.manifestVerity ?? r.manifestVerity).hex(),
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
      ...(localFetch ? { local_fetch: localFetch } : {}),
    },
  };
}

async function printPull({ r, boot, localFetch }: Pulled): Promise<void> {
  const { formatStats, formatLocalFetchStats } = await import("./oci_impl.ts");
  outln(`manifest ${r.manifestDigest}`);
  outln(`config   ${r.configDigest}`);
  outln(`verity   ${(boot?.manifestVerity ?? r.manifestVerity).hex()}`);
  if (r.tag !== undefined) outln(`tagged   ${r.tag}`);
  outln(`objects  ${localFetch ? formatLocalFetchStats(localFetch, r.stats) : formatStats(r.stats)}`);
  if (boot) outln(`Boot image: ${[...boot.images.values()][0].hex()}`);
}

async function pullAction(image: string, name: string | undefined, opts: Record<string, any>, cmd: Command) {
  const { pullImage, parsePlatform, parseImageReference, openImageSource, remoteSourceFactory } =
    await import(
      "./oci_impl.ts"
    );
  const ref = parseImageReference(image);
  const platform = opts.platform ? parsePlatform(opts.platform) : undefined;
  await withRepo(cmd, async (repo) => {
    const source = await openImageSource(ref, { remote: remoteSourceFactory(remoteOptionsFrom(opts)) })
      .catch(inPull(image));
    const reporter = createReporter(opts.progress, opts.progressFd);
    try {
      const r = await pullImage(repo, source, { name: name ?? image, platform, reporter }).catch(
        inPull(image),
      );
      reporter.finish?.();
      const localFetch = (source as { localFetchStats?: Record<string, number> }).localFetchStats;
      const boot = opts.bootable
        ? await (await import("../boot/oci_boot.ts")).linkBootImages(repo, r.manifestDigest)
        : undefined;
      if (boot) { for (const [k, v] of boot.images) r.images.set(k, v); }
      if (opts.json) outJson(pullJson(repo, { r, boot, localFetch }));
      else await printPull({ r, boot, localFetch });
    } finally {
      reporter.finish?.();
      await source.close();
    }
  });
}

export function registerOciPull(oci: Command): void {
  const pull = addProgressOptions(
    oci.command("pull")
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
      .option("--json", "print the result as JSON"),
  )
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
    .action(pullAction);
  addRemoteOptions(pull);
}
