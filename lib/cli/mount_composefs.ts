// mount.composefs: the mount(8) helper personality, option-compatible with C composefs
// (`mount -t composefs IMAGE MNT -o basedir=DIR` runs `/sbin/mount.composefs IMAGE MNT -o basedir=DIR`).
// mount(8) calls helpers as `SOURCE TARGET [-sfnv] [-o OPTIONS]`; options may come before or after.
import { describeError, UsageError } from "../errors.ts";
import { closeFd, O_NOCTTY, O_RDONLY, openPath } from "../linux/fs.ts";
import { ObjectId } from "../fsverity/object_id.ts";
import { mountComposefs, type MountComposefsOptions, mountTweaksFromEnv } from "../mount/composefs.ts";
import { errln, out } from "./output.ts";
import { reportError } from "./run.ts";

const USAGE = `Usage: mount.composefs [-sfnv] [-t composefs] [-o OPTIONS] IMAGE MOUNTPOINT

Mount a composefs image (an EROFS image whose files live in a content-addressed object directory).
mount(8) runs this helper for \`mount -t composefs\`.

Flags:
  -o OPTIONS  comma-separated mount options (below); may be repeated
  -t TYPE     file system type as mount(8) passes it; only "composefs"
  -s          sloppy: ignore options this helper does not know
  -f          fake: check everything, do not mount
  -n          no mtab (accepted; there is no /etc/mtab to write)
  -v          verbose: say what was mounted and how
  -h, --help  display this help

Options:
  basedir=DIR[:DIR...]  object directories the image's files are read from (required)
  digest=HEX            the image's expected fs-verity digest (SHA-256 or SHA-512)
  verity                require fs-verity on every object (overlayfs verity=require)
  tryverity             verity=require when the kernel's overlayfs has the option, else no verity
  idmap=PATH            id-mapped mount with the user namespace at PATH (e.g. /proc/PID/ns/user)
  nosuid, nodev, noexec mount attributes, for untrusted images (suid, dev, exec: the defaults)
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
  tryVerity: boolean;
  /** idmap=PATH: a user namespace file whose mapping the mount gets. */
  idmap?: string;
  nosuid: boolean;
  nodev: boolean;
  noexec: boolean;
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
      case "tryverity":
        into.tryVerity = true;
        break;
      case "idmap":
        into.idmap = need();
        break;
      case "nosuid":
      case "nodev":
      case "noexec":
        into[key] = true;
        break;
      case "suid":
        into.nosuid = false;
        break;
      case "dev":
        into.nodev = false;
        break;
      case "exec":
        into.noexec = false;
        break;
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
    if (a === "-t" || (a.startsWith("-t") && a.length > 2)) {
      // mount(8) passes the type it was given; C mount.composefs accepts only its own.
      const type = a === "-t" ? args[++i] : a.slice(2);
      if (type === undefined) throw new UsageError("-t needs an argument");
      if (type !== "composefs") throw new UsageError(`unsupported file system type ${JSON.stringify(type)}`);
    } else if (a === "-o") {
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
    tryVerity: false,
    nosuid: false,
    nodev: false,
    noexec: false,
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
    verity: a.verity ? "require" : a.tryVerity ? "try" : "none",
    nosuid: a.nosuid,
    nodev: a.nodev,
    noexec: a.noexec,
    digest,
    upperdir: a.upperdir,
    workdir: a.workdir,
    // Without an upper dir there is nothing to write to: such mounts are always read-only.
    readWrite: a.upperdir !== undefined && !a.readOnly,
    ...mountTweaksFromEnv(),
  };
}

/** Opens the user namespace file of idmap=PATH (a plain open, as C mount.composefs does). */
function openUserns(path: string): number {
  try {
    return openPath(path, O_RDONLY | O_NOCTTY);
  } catch (e) {
    throw new UsageError(`idmap=${path}: cannot open the user namespace: ${describeError(e)}`);
  }
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
    let r;
    let usernsFd: number | undefined;
    try {
      if (parsed.idmap !== undefined) usernsFd = openUserns(parsed.idmap);
      r = await mountComposefs({ ...opts, idmapUsernsFd: usernsFd });
    } finally {
      if (usernsFd !== undefined) closeFd(usernsFd);
    }
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
