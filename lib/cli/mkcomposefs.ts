// `mkcomposefs`: the C-compatible image builder (README.md#command-reference). SOURCE is a directory, or a
// dumpfile with --from-file (`-` = stdin). IMAGE `-` = stdout (never a terminal). Always SHA-256. The image
// file is written to a temporary name beside IMAGE and renamed into place: no output file on any error.
import { CfsError, UsageError } from "../errors.ts";
import { writeErofsTo } from "../erofs/writer.ts";
import { parseDumpfileFlatFrom } from "../dumpfile/parse.ts";
import { filterXattrsFlat, removeDevicesFlat, zeroMtimes, zeroMtimesFlat } from "../tree/transform.ts";
import type { Directory } from "../tree/tree.ts";
import type { FlatTree } from "../tree/flat.ts";
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import { errln, outBytes, outln } from "./output.ts";
import { reportError } from "./run.ts";
import { type CommandSpec, examplesText, helpText, parseCommandLine } from "./small_command.ts";
import { parseErofsVersion } from "./arg_values.ts";
import { nodeLayerReady } from "./node_layer.ts";

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

/** The command line (lib/cli/small_command.ts: commander-compatible, without loading commander). */
export const MKCOMPOSEFS_SPEC: CommandSpec = {
  name: "mkcomposefs",
  description: "create a composefs EROFS image from a directory or a dumpfile",
  args: [
    { name: "SOURCE", required: true, description: "directory, or dumpfile with --from-file (- = stdin)" },
    { name: "IMAGE", required: false, description: "output image (- = stdout)" },
  ],
  options: [
    { flags: "--from-file", description: "SOURCE is a dumpfile" },
    { flags: "--digest-store <DIR>", description: "copy regular files over 64 bytes to DIR/XX/<rest>" },
    { flags: "--print-digest", description: "print the image's fs-verity digest after writing it" },
    { flags: "--print-digest-only", description: "print the digest; do not write an image (no IMAGE)" },
    { flags: "--use-epoch", description: "set every mtime to 0" },
    { flags: "--skip-devices", description: "leave out block and character devices" },
    { flags: "--skip-xattrs", description: "leave out all xattrs" },
    { flags: "--user-xattrs", description: "keep only user.* xattrs" },
    {
      flags: "--min-version <N>",
      description: "lowest format version, 0 or 1 (default 0)",
      parse: intArg("min version", 0),
    },
    {
      flags: "--max-version <N>",
      description: "highest format version, 0 or 1 (default 1; raised to --min-version)",
      parse: intArg("max version", 0),
    },
    {
      flags: "--erofs-version <N>",
      description: "image format 0, 1 or 2 (overrides --min/--max-version; 2 = composefs-rs V2)",
      parse: parseErofsVersion,
    },
    {
      flags: "--threads <N>",
      description: "files read at once (default: CPU count)",
      parse: intArg("threads count", 1),
    },
    {
      flags: "--hardlinks",
      description: "keep hard links found on disk as one inode (default: one inode per path, like C)",
    },
  ],
  helpAfter: examplesText(
    "mkcomposefs --digest-store=/composefs/objects ./rootfs rootfs.cfs",
    "mkcomposefs --from-file rootfs.dump rootfs.cfs",
    "mkcomposefs --print-digest-only ./rootfs",
    "mkcomposefs --min-version 1 --from-file - - < rootfs.dump > rootfs.cfs",
  ),
};

/** Columns of the help text: the terminal's width on a terminal, else 80 (as commander). */
function helpWidth(): number {
  try {
    return Deno.stdout.isTerminal() ? Deno.consoleSize().columns : 80;
  } catch {
    return 80;
  }
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

/** The tree to write: a dumpfile is read into columns (lib/tree/flat.ts), a directory into objects. */
async function readSource(source: string, o: MkcomposefsOptions): Promise<Directory | FlatTree> {
  if (o.fromFile) {
    if (o.digestStore) errln("mkcomposefs: warning: --digest-store is ignored with --from-file");
    const strict = (() => {
      try {
        return Deno.env.get("CFS_PARSE_STRICT") !== undefined;
      } catch {
        return false;
      }
    })();
    let root: FlatTree;
    if (source === "-") {
      root = await parseDumpfileFlatFrom(Deno.stdin, { strict, alg: "sha256" });
    } else {
      using f = await Deno.open(source, { read: true });
      try {
        root = await parseDumpfileFlatFrom(f, { strict, alg: "sha256" });
      } catch (e) {
        if (e instanceof CfsError) e.within(source);
        throw e;
      }
    }
    // The C tool ignores these with --from-file; applying them is what a user asking for them means.
    if (o.skipXattrs) filterXattrsFlat(root, () => false);
    else if (o.userXattrs) filterXattrsFlat(root, (n) => n.startsWith("user."));
    if (o.skipDevices) removeDevicesFlat(root);
    if (o.useEpoch) zeroMtimesFlat(root);
    return root;
  }
  // The directory scan hashes files and copies them to the digest store: modules using node:*.
  await nodeLayerReady();
  const { scanDirectory } = await import("../tree/scan.ts");
  const { FlatDigestStore } = await import("../objects/digest_store.ts");
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

function writeAll(f: { writeSync(p: Uint8Array): number }, data: Uint8Array): void {
  for (let off = 0; off < data.length;) off += f.writeSync(data.subarray(off));
}

/**
 * Where the image goes: a file (through a temporary name beside it and a rename, so no partial image is
 * ever visible), stdout, nowhere. Two cases are written in place instead, as the C tool does: a path that
 * is not a regular file (`/dev/null`, a FIFO, a device: a rename would replace the node with a plain
 * file), and a symlink, whose target is written (atomically when it is a regular file).
 */
class ImageOutput {
  #file: Deno.FsFile | undefined;
  #tmp = "";
  #path: string | undefined;
  #stdout: boolean;

  constructor(path: string | undefined) {
    this.#stdout = path === "-";
    if (path === undefined || path === "-") return;
    let target = path;
    try {
      target = Deno.realPathSync(path);
    } catch { /* not there yet: created below */ }
    let special = false;
    try {
      special = !Deno.statSync(target).isFile;
    } catch { /* not there yet */ }
    if (special) {
      this.#file = Deno.openSync(target, { write: true });
      return;
    }
    const slash = target.lastIndexOf("/");
    const dir = slash < 0 ? "." : slash === 0 ? "/" : target.slice(0, slash);
    this.#path = target;
    this.#tmp = `${dir}/.${target.slice(slash + 1)}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    this.#file = Deno.openSync(this.#tmp, { write: true, createNew: true, mode: 0o644 });
  }

  write(piece: Uint8Array): void {
    if (this.#file) writeAll(this.#file, piece);
    else if (this.#stdout) outBytes(piece);
  }

  async commit(): Promise<void> {
    if (!this.#file) return;
    this.#file.close();
    this.#file = undefined;
    if (this.#path !== undefined) await Deno.rename(this.#tmp, this.#path);
  }

  /** Removes the temporary file when the image was not committed. */
  async abandon(): Promise<void> {
    if (!this.#file) return;
    this.#file.close();
    this.#file = undefined;
    if (this.#path !== undefined) await Deno.remove(this.#tmp).catch(() => {});
  }
}

/** A streaming fs-verity hasher of the image's pieces (hasher.ts uses node:crypto without libcrypto). */
async function imageHasher(alg: HashAlgorithm): Promise<{ update(p: Uint8Array): void; digest(): ObjectId }> {
  await nodeLayerReady();
  const { FsVerityHasher } = await import("../fsverity/hasher.ts");
  return new FsVerityHasher(alg);
}

/** Usage errors get the `--help` hint and exit code 2, failures exit code 1. */
function fail(e: unknown): number {
  return reportError(e, "mkcomposefs");
}

export async function mkcomposefsMain(args: string[]): Promise<number> {
  let o: MkcomposefsOptions, source: string, image: string | undefined;
  try {
    const parsed = parseCommandLine(MKCOMPOSEFS_SPEC, args);
    if (parsed.help) {
      outBytes(new TextEncoder().encode(helpText(MKCOMPOSEFS_SPEC, helpWidth())));
      return 0;
    }
    o = parsed.opts as MkcomposefsOptions;
    [source, image] = parsed.args as [string, string | undefined];
  } catch (e) {
    return fail(e);
  }
  try {
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
    const hasher = o.printDigest ? await imageHasher("sha256") : undefined;
    const out = new ImageOutput(image);
    try {
      writeErofsTo(root, format, (piece) => {
        out.write(piece);
        hasher?.update(piece);
      });
      await out.commit();
    } finally {
      await out.abandon();
    }
    if (hasher) outln(hasher.digest().hex());
    return 0;
  } catch (e) {
    return fail(e);
  }
}
