// The composefs-setup-root personality and `cfsctl setup-root` (docs/boot.md "setup-root"). Runs in
// the initramfs: options are parsed by hand (no command tree to build) and only the setup-root code
// is loaded. What it did goes to stderr (the console at boot), one line per step; a refusal says
// what is wrong and that nothing was mounted.
import { describeError } from "../errors.ts";
import { errln, outJson } from "./output.ts";

const NAME = "composefs-setup-root";

export interface SetupRootFlags {
  sysroot?: string;
  config?: string;
  cmdline?: string;
  rootFs?: string;
  target?: string;
  json?: boolean;
}

const USAGE =
  `Usage: ${NAME} [--sysroot DIR] [--config FILE] [--cmdline TEXT] [--root-fs DIR] [--target DIR] [--json]

Mounts the composefs image named by composefs=<hex> or composefs.digest=v1-<alg>-12:<hex> on the
kernel command line from SYSROOT/composefs as the new root (over SYSROOT, or at --target), with /etc
as an overlay on SYSROOT/state/deploy/<hex>/etc and /var bound to SYSROOT/state/deploy/<hex>/var.

  --sysroot DIR    physical root holding composefs/ and state/ (default /sysroot)
  --config FILE    default /usr/lib/composefs/setup-root-conf.toml
  --cmdline TEXT   kernel command line (default: /proc/cmdline)
  --root-fs DIR    testing: bind-mount DIR as the root instead of the image
  --target DIR     testing: mount the new root at DIR instead of over the sysroot
  --json           print the result as JSON on stdout
`;

export async function runSetupRoot(flags: SetupRootFlags): Promise<number> {
  const { setupRoot, SetupRootRefused } = await import("../boot/setup_root.ts");
  try {
    const r = await setupRoot({
      sysroot: flags.sysroot,
      configPath: flags.config,
      cmdline: flags.cmdline,
      rootFs: flags.rootFs,
      target: flags.target,
    });
    for (const w of r.warnings) errln(`${NAME}: kernel: ${w}`);
    for (const l of r.log) errln(`${NAME}: ${l}`);
    if (flags.json) {
      outJson({
        image_id: r.imageHex,
        algorithm: r.karg.alg,
        karg: r.karg.text,
        target: r.target,
        digest_checked_by: r.digestCheckedBy ?? null,
        verity: r.verity,
        root_transient: r.rootTransient,
        etc: r.etc,
        var: r.var,
        state_dir: r.stateDir,
      });
    }
    return 0;
  } catch (e) {
    errln(`${NAME}: error: ${describeError(e)}`);
    if (e instanceof SetupRootRefused) errln(`${NAME}: nothing was mounted`);
    return 1;
  }
}

/** argv (after the program name) of the personality. */
export async function setupRootMain(args: string[]): Promise<number> {
  const flags: SetupRootFlags = {};
  const keys: Record<string, keyof SetupRootFlags> = {
    "--sysroot": "sysroot",
    "--config": "config",
    "--cmdline": "cmdline",
    "--root-fs": "rootFs",
    "--target": "target",
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--help" || a === "-h") {
      errln(USAGE.trimEnd());
      return 0;
    }
    if (a === "--json") {
      flags.json = true;
      continue;
    }
    const eq = a.indexOf("=");
    const key = eq > 0 ? a.slice(0, eq) : a;
    const k = keys[key];
    if (!k) {
      errln(`${NAME}: error: unknown argument ${a}\nTry '${NAME} --help' for more information.`);
      return 2;
    }
    const v = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (v === undefined) {
      errln(`${NAME}: error: ${key} needs a value\nTry '${NAME} --help' for more information.`);
      return 2;
    }
    (flags as Record<string, string>)[k] = v;
  }
  return await runSetupRoot(flags);
}
