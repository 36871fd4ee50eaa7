// `mkcomposefs`: the C-compatible image builder (README.md#command-reference). SOURCE is a directory, or a
// dumpfile with --from-file (`-` = stdin). IMAGE `-` = stdout (never a terminal). Always SHA-256. The image
// file is written to a temporary name beside IMAGE and renamed into place: no output file on any error.
import { Command, Option } from "commander";
import { CfsError, UsageError } from "../errors.ts";
import { examplesText, exitCodeForThrown, parseErofsVersion } from "./program.ts";
import { writeErofs } from "../erofs/writer.ts";
import { fsverityDigest } from "../fsverity/hasher.ts";
import { parseDumpfileFrom } from "../dumpfile/parse.ts";
import { scanDirectory } from "../tree/scan.ts";
import { FlatDigestStore } from "../objects/digest_store.ts";
import { filterXattrs, removeDevices, zeroMtimes } from "../tree/transform.ts";
import type { Directory } from "../tree/tree.ts";
import { err, errln, outBytes, outln } from "./output.ts";

interface MkcomposefsOptions {
  fromFile?: boolean;
  digestStore?: string;
  printDigest?: boolean;
  printDigestOnly?: boolean;
  useEpoch?: boolean;
  skipDevices?: boolean;
  skipXattrs?: boolean;
  userXattrs?: boolean;
  minVersion?: number;
  maxVersion?: number;
  erofsVersion?: 0 | 1 | 2;
  threads?: number;
  hardlinks?: boolean;
}

function intArg(name: string, min: number) {
  return (v: string): number => {
    if (!/^[0-9]+$/.test(v) || Number(v) < min) throw new UsageError(`invalid ${name} ${JSON.stringify(v)}`);
    return Number(v);
  };
}

function buildCommand(): Command {
  return new Command("mkcomposefs")
    .description("create a composefs EROFS image from a directory or a dumpfile")
    .argument("<SOURCE>", "directory, or dumpfile with --from-file (- = stdin)")
    .argument("[IMAGE]", "output image (- = stdout)")
    .option("--from-file", "SOURCE is a dumpfile")
    .option("--digest-store <DIR>", "copy regular files over 64 bytes to DIR/XX/<rest>")
    .option("--print-digest", "print the image's fs-verity digest after writing it")
    .option("--print-digest-only", "print the digest; do not write an image (no IMAGE)")
    .option("--use-epoch", "set every mtime to 0")
    .option("--skip-devices", "leave out block and character devices")
    .option("--skip-xattrs", "leave out all xattrs")
    .option("--user-xattrs", "keep only user.* xattrs")
    .addOption(
      new Option("--min-version <N>", "lowest format version, 0 or 1 (default 0)").argParser(
        intArg("min version", 0),
      ),
    )
    .addOption(
      new Option("--max-version <N>", "highest format version, 0 or 1 (default 1; raised to --min-version)")
        .argParser(
          intArg("max version", 0),
        ),
    )
    .addOption(
      new Option(
        "--erofs-version <N>",
        "image format 0, 1 or 2 (overrides --min/--max-version; 2 = composefs-rs V2)",
      )
        .argParser(parseErofsVersion),
    )
    .addOption(
      new Option("--threads <N>", "files read at once (default: CPU count)").argParser(
        intArg("threads count", 1),
      ),
    )
    .option("--hardlinks", "keep hard links found on disk as one inode (default: one inode per path, like C)")
    .addHelpText(
      "after",
      examplesText(
        "mkcomposefs --digest-store=/composefs/objects ./rootfs rootfs.cfs",
        "mkcomposefs --from-file rootfs.dump rootfs.cfs",
        "mkcomposefs --print-digest-only ./rootfs",
        "mkcomposefs --min-version 1 --from-file - - < rootfs.dump > rootfs.cfs",
      ),
    )
    .configureOutput({ writeOut: (s) => outBytes(new TextEncoder().encode(s)), writeErr: err })
    .exitOverride()
    .showHelpAfterError(false);
}

/**
 * Format version and V0 promotion limit from the C version flags (docs/c-compatibility.md).
 * Like C 1.0.8: without either flag min 0 / max 1; giving only one makes the other 0, then a max
 * below min is raised to min (so `--min-version 1` alone writes V1). Versions above 1 are refused
 * like C refuses them: V2 is composefs-rs's format, chosen with --erofs-version 2, not a C version.
 */
function chooseFormat(o: MkcomposefsOptions): { version: 0 | 1 | 2; maxVersion: 0 | 1 } {
  if (o.erofsVersion !== undefined) return { version: o.erofsVersion, maxVersion: 1 };
  const given = o.minVersion !== undefined || o.maxVersion !== undefined;
  const min = given ? o.minVersion ?? 0 : 0;
  const max = Math.max(given ? o.maxVersion ?? 0 : 1, min);
  for (const [flag, v] of [["--min-version", o.minVersion], ["--max-version", o.maxVersion]] as const) {
    if (v !== undefined && v > 1) {
      throw new UsageError(
        `${flag} ${v}: format version ${v} is not supported (0 or 1; --erofs-version 2 writes the composefs-rs V2 format)`,
      );
    }
  }
  return { version: min as 0 | 1, maxVersion: max as 0 | 1 };
}

async function readSource(source: string, o: MkcomposefsOptions): Promise<Directory> {
  if (o.fromFile) {
    if (o.digestStore) errln("mkcomposefs: warning: --digest-store is ignored with --from-file");
    const strict = (() => {
      try {
        return Deno.env.get("CFS_PARSE_STRICT") !== undefined;
      } catch {
        return false;
      }
    })();
    let root: Directory;
    if (source === "-") {
      root = await parseDumpfileFrom(Deno.stdin, { strict, alg: "sha256" });
    } else {
      using f = await Deno.open(source, { read: true });
      try {
        root = await parseDumpfileFrom(f, { strict, alg: "sha256" });
      } catch (e) {
        if (e instanceof CfsError) e.within(source);
        throw e;
      }
    }
    // The C tool ignores these with --from-file; applying them is what a user asking for them means.
    if (o.skipXattrs) filterXattrs(root, () => false);
    else if (o.userXattrs) filterXattrs(root, (n) => n.startsWith("user."));
    if (o.skipDevices) removeDevices(root);
    if (o.useEpoch) zeroMtimes(root);
    return root;
  }
  const root = await scanDirectory(source, {
    alg: "sha256",
    store: o.digestStore ? new FlatDigestStore(o.digestStore, "sha256") : undefined,
    hardlinks: Boolean(o.hardlinks),
    concurrency: o.threads,
    skipXattrs: Boolean(o.skipXattrs),
    xattrFilter: o.userXattrs ? (n) => n.startsWith("user.") : undefined,
    skipDevices: Boolean(o.skipDevices),
  });
  if (o.useEpoch) zeroMtimes(root);
  return root;
}

/**
 * Writes `data` to `path` through a temporary file in the same directory and a rename, so no partial
 * image is ever visible. Two cases write in place instead, as the C tool does: a path that is not a
 * regular file (`/dev/null`, a FIFO, a device: a rename would replace the node with a plain file), and a
 * symlink, whose target is written (atomically, when it is a regular file).
 */
async function writeAtomically(path: string, data: Uint8Array): Promise<void> {
  const target = await Deno.realPath(path).catch(() => path);
  const st = await Deno.stat(target).catch(() => undefined);
  if (st !== undefined && !st.isFile) {
    await Deno.writeFile(target, data, { create: false });
    return;
  }
  const slash = target.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : target.slice(0, slash);
  const tmp = `${dir}/.${target.slice(slash + 1)}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeFile(tmp, data, { createNew: true, mode: 0o644 });
    await Deno.rename(tmp, target);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

export async function mkcomposefsMain(args: string[]): Promise<number> {
  const cmd = buildCommand();
  try {
    cmd.parse(args, { from: "user" });
  } catch (e) {
    return exitCodeForThrown(e, cmd, args);
  }
  try {
    const o = cmd.opts<MkcomposefsOptions>();
    const [source, image] = cmd.args as [string, string | undefined];
    if (o.printDigestOnly) o.printDigest = true;
    if (source === "") throw new UsageError("empty source path");
    if (image === undefined && !o.printDigestOnly) throw new UsageError("no destination IMAGE given");
    if (image !== undefined && o.printDigestOnly) {
      throw new UsageError("cannot give a destination IMAGE with --print-digest-only");
    }
    if (image === "-" && Deno.stdout.isTerminal()) {
      throw new UsageError("stdout is a terminal: refusing to write an image to it");
    }
    const format = chooseFormat(o);

    const root = await readSource(source, o);
    const bytes = writeErofs(root, format);
    if (image === "-") outBytes(bytes);
    else if (image !== undefined) await writeAtomically(image, bytes);
    if (o.printDigest) outln(fsverityDigest(bytes, "sha256").hex());
    return 0;
  } catch (e) {
    return exitCodeForThrown(e, cmd, args);
  }
}
