// mount.composefs: the mount(8) helper personality, option-compatible with C composefs
// (`mount -t composefs IMAGE MNT -o basedir=DIR` runs `/sbin/mount.composefs IMAGE MNT -o basedir=DIR`).
// mount(8) calls helpers as `SOURCE TARGET [-sfnv] [-o OPTIONS]`; options may come before or after.
import { UsageError } from "../errors.ts";
import { ObjectId } from "../fsverity/object_id.ts";
import { mountComposefs, type MountComposefsOptions, mountTweaksFromEnv } from "../mount/composefs.ts";
import { errln, out } from "./output.ts";
import { reportError } from "./run.ts";

const USAGE = `Usage: mount.composefs [-sfnv] [-o OPTIONS] IMAGE MOUNTPOINT

Mount a composefs image (an EROFS image whose files live in a content-addressed object directory).
mount(8) runs this helper for \`mount -t composefs\`.

Flags:
  -o OPTIONS  comma-separated mount options (below); may be repeated
  -s          sloppy: ignore options this helper does not know
  -f          fake: check everything, do not mount
  -n          no mtab (accepted; there is no /etc/mtab to write)
  -v          verbose: say what was mounted and how
  -h, --help  display this help

Options:
  basedir=DIR[:DIR...]  object directories the image's files are read from (required)
  digest=HEX            the image's expected fs-verity digest (SHA-256 or SHA-512)
  verity                require fs-verity on every object (overlayfs verity=require)
  upperdir=DIR          writable overlay layer (needs workdir)
  workdir=DIR           overlay work directory on the same file system as upperdir
  ro, rw                read-only (default without upperdir) / read-write

Examples:
  mount -t composefs image.cfs /mnt -o basedir=/composefs/objects
  mount.composefs image.cfs /mnt -o basedir=/composefs/objects,digest=<hex>,verity
  mount.composefs -o basedir=/objects,upperdir=/var/up,workdir=/var/work image.cfs /mnt
`;

export interface MountComposefsArgs {
  image: string;
  mountpoint: string;
  basedirs: string[];
  digest?: string;
  verity: boolean;
  upperdir?: string;
  workdir?: string;
  readOnly: boolean;
  /** -f: do everything but the mount itself. */
  fake: boolean;
  verbose: boolean;
}

// Generic mount(8) options that carry no meaning for composefs; mount(8) may pass them along.
const IGNORED = new Set(["defaults", "auto", "noauto", "user", "nouser", "nofail", "_netdev", "loop"]);

function parseOptions(opts: string, into: MountComposefsArgs, sloppy: boolean): void {
  for (const opt of opts.split(",")) {
    if (opt === "") continue;
    const eq = opt.indexOf("=");
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? undefined : opt.slice(eq + 1);
    const need = () => {
      if (value === undefined || value === "") throw new UsageError(`option ${key} needs a value (${key}=…)`);
      return value;
    };
    switch (key) {
      case "basedir":
        into.basedirs = need().split(":").filter((d) => d !== "");
        break;
      case "digest":
        into.digest = need();
        break;
      case "verity":
        into.verity = true;
        break;
      case "upperdir":
        into.upperdir = need();
        break;
      case "workdir":
        into.workdir = need();
        break;
      case "ro":
        into.readOnly = true;
        break;
      case "rw":
        into.readOnly = false;
        break;
      case "idmap":
        throw new UsageError("option idmap is not supported by this mount.composefs");
      default:
        if (IGNORED.has(key) || key.startsWith("x-") || sloppy) break;
        throw new UsageError(`unsupported option ${JSON.stringify(opt)}`);
    }
  }
}

/** Parses argv (without the program name) the way mount(8) passes it. */
export function parseMountComposefsArgs(args: string[]): MountComposefsArgs {
  const positional: string[] = [];
  const optionStrings: string[] = [];
  let sloppy = false, fake = false, verbose = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (a === "-o") {
      if (i + 1 >= args.length) throw new UsageError("-o needs an argument");
      optionStrings.push(args[++i]);
    } else if (a.startsWith("-o")) {
      optionStrings.push(a.slice(2));
    } else if (/^-[sfnv]+$/.test(a)) {
      sloppy ||= a.includes("s");
      fake ||= a.includes("f");
      verbose ||= a.includes("v");
      // -n (no mtab) needs nothing: there is no /etc/mtab to write.
    } else if (a.startsWith("-") && a !== "-") {
      throw new UsageError(`unknown flag ${a}`);
    } else {
      positional.push(a);
    }
  }
  if (positional.length !== 2) {
    throw new UsageError(`expected IMAGE and MOUNTPOINT, got ${positional.length} argument(s)`);
  }
  const parsed: MountComposefsArgs = {
    image: positional[0],
    mountpoint: positional[1],
    basedirs: [],
    verity: false,
    readOnly: false,
    fake,
    verbose,
  };
  for (const o of optionStrings) parseOptions(o, parsed, sloppy);
  if (parsed.basedirs.length === 0) throw new UsageError("option basedir=DIR is required");
  if ((parsed.upperdir === undefined) !== (parsed.workdir === undefined)) {
    throw new UsageError("upperdir and workdir must be given together");
  }
  return parsed;
}

/** The library options for parsed arguments (digest must be SHA-256 or SHA-512 hex). */
export function toMountOptions(a: MountComposefsArgs): MountComposefsOptions {
  let digest: ObjectId | undefined;
  if (a.digest !== undefined) {
    try {
      digest = ObjectId.fromHex(a.digest.toLowerCase());
    } catch {
      throw new UsageError(`digest=${a.digest} is not a fs-verity digest (64 or 128 hex digits)`);
    }
  }
  return {
    imagePath: a.image,
    objectsDir: a.basedirs,
    mountpoint: a.mountpoint,
    verity: a.verity ? "require" : "none",
    digest,
    upperdir: a.upperdir,
    workdir: a.workdir,
    // Without an upper dir there is nothing to write to: such mounts are always read-only.
    readWrite: a.upperdir !== undefined && !a.readOnly,
    ...mountTweaksFromEnv(),
  };
}

export async function mountComposefsMain(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    out(USAGE);
    return 0;
  }
  let parsed: MountComposefsArgs;
  try {
    parsed = parseMountComposefsArgs(args);
  } catch (e) {
    return reportError(e, "mount.composefs");
  }
  try {
    const opts = toMountOptions(parsed);
    if (parsed.fake) {
      if (parsed.verbose) {
        errln(`mount.composefs: -f given: not mounting ${parsed.image} on ${parsed.mountpoint}`);
      }
      return 0;
    }
    const r = await mountComposefs(opts);
    for (const w of r.warnings) errln(`mount.composefs: kernel: ${w}`);
    if (r.digestCheckedBy === "userspace") {
      errln(
        `mount.composefs: warning: ${parsed.image} has no fs-verity: its digest was checked once at mount time, ` +
          "later reads are not protected",
      );
    }
    if (parsed.verbose) {
      errln(
        `mount.composefs: mounted ${parsed.image} on ${r.mountpoint} (layers as ${r.layerMode}` +
          (r.loopDevice ? `, through ${r.loopDevice}` : "") + `, verity ${r.verity})`,
      );
    }
    return 0;
  } catch (e) {
    return reportError(e);
  }
}
