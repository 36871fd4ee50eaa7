// Repository commands (README.md#command-reference): init, cat, gc, fsck, import-image, transaction. The
// repository code is imported when an action starts, not at start-up.
import { type Command, Option } from "commander";
import { UsageError } from "../errors.ts";
import type { FsckReport } from "../repository/fsck.ts";
import type { GcResult } from "../repository/gc.ts";
import { outBytes, outJson, outln } from "./output.ts";
import { examplesText, globalsOf, parseErofsVersion } from "./program.ts";
import { ExitCode } from "./run.ts";

export function registerRepoCommands(program: Command): void {
  registerInit(program);
  registerCat(program);
  registerGc(program);
  registerFsck(program);
  registerImportImage(program);
  registerTransaction(program);
}

function registerInit(program: Command): void {
  program
    .command("init")
    .description("create a repository (writes meta.json)")
    .argument("[PATH]", "repository path (default: from --repo/--user/--system)")
    .addOption(
      new Option("--algorithm <ALG>", "fs-verity algorithm").choices([
        "fsverity-sha256-12",
        "fsverity-sha512-12",
      ])
        .default("fsverity-sha512-12"),
    )
    .option("--insecure", "do not require fs-verity (meta.json without verity)")
    .option("--reset-metadata", "delete streams/, images/ and meta.json first (objects/ is kept)")
    .addOption(
      new Option("--erofs-version <N>", "default EROFS format (0, 1 or 2; default 2)").argParser(
        parseErofsVersion,
      ),
    )
    .option("--json", "print the repository's configuration as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo init",
        "cfsctl init --insecure --algorithm fsverity-sha256-12 /var/tmp/repo",
        "cfsctl --system init --erofs-version 1",
      ),
    )
    .action(async (path: string | undefined, opts, cmd: Command) => {
      const { Repository } = await import("../repository/repository.ts");
      const { effectiveErofsFormats } = await import("../repository/meta.ts");
      const { repoPathFromGlobals } = await import("./repo_open.ts");
      const g = globalsOf(cmd);
      const repoPath = path ?? repoPathFromGlobals(g);
      const insecure = Boolean(opts.insecure || g.insecure);
      const r = await Repository.init(repoPath, {
        algorithm: opts.algorithm,
        insecure,
        resetMetadata: Boolean(opts.resetMetadata),
        erofsVersion: opts.erofsVersion ?? g.erofsVersion,
      });
      if (opts.json) {
        const f = effectiveErofsFormats(r.meta);
        outJson({
          path: repoPath,
          created: r.created,
          algorithm: r.meta.algorithm,
          verity_required: !r.insecure,
          erofs_versions: [f.default, ...f.extra],
        });
        return;
      }
      if (!r.created) {
        outln(`Repository already initialized at ${repoPath}`);
        return;
      }
      outln(`Initialized composefs repository at ${repoPath}`);
      outln(`  algorithm: ${r.meta.algorithm}`);
      outln(insecure ? "  verity:    not required (insecure)" : "  verity:    required");
    });
}

function registerCat(program: Command): void {
  program
    .command("cat")
    .description("write the reassembled content of a stream to stdout")
    .argument("<NAME>", "stream content id (e.g. oci-layer-sha256:…) or refs/<ref>")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo cat refs/mylayer > layer.tar",
        "cfsctl cat oci-layer-sha256:<hex> | tar -tv",
      ),
    )
    .action(async (name: string, _opts, cmd: Command) => {
      const { reassemble } = await import("../splitstream/mod.ts");
      const { openRepoFromGlobals } = await import("./repo_open.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      const reader = await repo.openStream(name);
      for await (const piece of reassemble(reader, (id) => repo.openObjectStream(id))) outBytes(piece);
    });
}

function registerGc(program: Command): void {
  program
    .command("gc")
    .description("remove objects not reachable from any ref (or --root)")
    .option("-r, --root <NAME>", "additional root (image or stream name); repeatable", collect, [])
    .option("-n, --dry-run", "only report what would be removed")
    .option("--json", "JSON output")
    .addHelpText(
      "after",
      examplesText("cfsctl --repo /var/tmp/repo gc --dry-run", "cfsctl gc --root refs/keep-me --json"),
    )
    .action(async (opts, cmd: Command) => {
      const { openRepoFromGlobals } = await import("./repo_open.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      const dryRun = Boolean(opts.dryRun);
      const r = await repo.gc({ roots: opts.root, dryRun });
      if (opts.json) outJson((await import("../repository/gc_json.ts")).gcReportFields(r, dryRun));
      else printGc(r, dryRun);
    });
}

function registerFsck(program: Command): void {
  program
    .command("fsck")
    .description("check the repository's consistency")
    .option("--json", "JSON output (exit status 0 even when errors are found)")
    .option("--metadata-only", "skip the object digest check")
    .addHelpText(
      "after",
      examplesText("cfsctl --repo /var/tmp/repo fsck", "cfsctl fsck --metadata-only --json"),
    )
    .action(async (opts, cmd: Command) => {
      const { openRepoFromGlobals } = await import("./repo_open.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd), { lenientMeta: true });
      const report = await repo.fsck({ metadataOnly: Boolean(opts.metadataOnly) });
      if (opts.json) {
        outJson(await fsckJson(report));
        return;
      }
      printFsck(report);
      if (!report.ok) throw new ExitCode(1);
    });
}

function registerImportImage(program: Command): void {
  program
    .command("import-image")
    .description("store an EROFS image read from stdin (not validated) and name it")
    .argument("<REF>", "name for images/refs/<REF>")
    .option("--json", "print the image id as JSON")
    .addHelpText("after", examplesText("cfsctl --repo /var/tmp/repo import-image myimage < image.cfs"))
    .action(async (ref: string, opts, cmd: Command) => {
      const { openRepoFromGlobals } = await import("./repo_open.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      await repo.ensureWritable();
      const bytes = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
      const id = await repo.writeImage(bytes, ref);
      if (opts.json) outJson({ image_id: id.hex(), algorithm: repo.alg, ref, size: bytes.length });
      else outln(id.toId());
    });
}

function registerTransaction(program: Command): void {
  program
    .command("transaction")
    .description("hold the repository open (shared lock) until killed: blocks gc meanwhile")
    .addHelpText(
      "after",
      examplesText("cfsctl --repo /var/tmp/repo transaction &   # gc waits until this process ends"),
    )
    .action(async (_opts, cmd: Command) => {
      const { openRepoFromGlobals } = await import("./repo_open.ts");
      const repo = await openRepoFromGlobals(globalsOf(cmd));
      // A pending timer keeps the process alive; the lock goes with the process.
      await new Promise<void>(() => setInterval(() => repo.path, 1 << 30));
    });
}

function collect(v: string, prev: string[]): string[] {
  if (v === "") throw new UsageError("--root needs a name");
  return [...prev, v];
}

function printGc(r: GcResult, dryRun: boolean): void {
  if (dryRun) outln("Dry run (no files deleted):");
  outln(`Objects: ${r.objectsRemoved} removed (${r.bytesRemoved} bytes)`);
  if (r.imagesPruned > 0 || r.streamsPruned > 0) {
    outln(`Pruned symlinks: ${r.imagesPruned} images, ${r.streamsPruned} streams`);
  }
}

/** `fsck --json`: the report's fields, plus the stale mount refs fsck removed (loads lib/repository lazily). */
export async function fsckJson(r: FsckReport) {
  const { fsckReportFields } = await import("../repository/fsck_json.ts");
  return {
    ...fsckReportFields(r),
    // only when fsck removed some (docs/gc.md), so the usual key set is unchanged
    ...(r.staleMountRefsRemoved.length ? { stale_mount_refs_removed: r.staleMountRefsRemoved } : {}),
  };
}

export function printFsck(r: FsckReport): void {
  outln(`meta.json: ${r.metadata}`);
  outln(`objects: ${r.objectsChecked - r.objectsCorrupted}/${r.objectsChecked} ok`);
  outln(`streams: ${r.streamsChecked - r.streamsCorrupted}/${r.streamsChecked} ok`);
  outln(`images: ${r.imagesChecked - r.imagesCorrupted}/${r.imagesChecked} ok`);
  if (r.brokenLinks > 0) outln(`broken symlinks: ${r.brokenLinks}`);
  if (r.missingObjects > 0) outln(`missing objects: ${r.missingObjects}`);
  for (const m of r.staleMountRefsRemoved) outln(`removed stale mount ref: images/refs/mounts/${m}`);
  if (r.ok) {
    outln("status: ok");
    return;
  }
  outln(`status: ${r.errors.length} error(s)`);
  for (const e of r.errors) outln(`  - ${e}`);
}
