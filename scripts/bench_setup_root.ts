// Benchmark: composefs-setup-root on the boot's critical path (root only).
//
//   deno run -A scripts/bench_setup_root.ts [--dump FILE.dump.gz] [--runs N] [--bundle dist/cfsctl.js]
//
// Builds a cs9-sized image (default: the cs9-x86_64-developer vector, ~46k external files) as a V2
// sha256 image in an insecure repository under a minimal root (only deno, its libraries and the
// bundle, like an initramfs: see test/boot_prepare_test.ts), with its deployment state, then times
// inside that root (`chroot`), median of N, each from process spawn to exit:
//   1. an empty script (`deno run` start-up floor),
//   2. `cfsctl --version` (the bundle's start-up),
//   3. `composefs-setup-root` with no karg (refuses at once: start-up and loading the setup-root code),
//   4. `composefs-setup-root --cmdline composefs=?<id> --target /newroot` — process start to mounted
//      target (image digest checked in userspace: no fs-verity here; /etc overlay, /var bind),
// and on the host the same setup-root run in-process (library time only, no start-up).
import { gunzipSync } from "node:zlib";
import { parseDumpfileSync } from "../lib/dumpfile/parse.ts";
import { writeErofs } from "../lib/erofs/writer.ts";
import { fsverityDigest } from "../lib/fsverity/hasher.ts";
import { setupRoot } from "../lib/boot/setup_root.ts";
import { newDirectory, newStat } from "../lib/tree/tree.ts";

const ROOT = new URL("../", import.meta.url).pathname;
function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(name);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}
const dumpPath = arg("--dump", `${ROOT}../shared/vectors/composefs-c/cs9-x86_64-developer.dump.gz`);
const runs = Number(arg("--runs", "7"));
const bundle = arg("--bundle", `${ROOT}dist/cfsctl.js`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function sh(cmd: string, args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!o.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  return new TextDecoder().decode(o.stdout);
}

const base = await Deno.makeTempDir({ prefix: "cfsctl-bench-setup-root-" });
const mr = `${base}/root`;
try {
  // The image.
  const tree = parseDumpfileSync(gunzipSync(await Deno.readFile(dumpPath)), { alg: "sha256" });
  // cs9 is an ostree tree (its /etc is /usr/etc): give it the /etc that setup-root overlays.
  if (!tree.entries.has("etc")) tree.entries.set("etc", newDirectory(newStat({ mode: 0o755 })));
  const image = writeErofs(tree, { version: 2 });
  const id = fsverityDigest(image, "sha256");
  const hex = id.hex();
  // The minimal root with its sysroot: repository (image + no objects: nothing is read) and state.
  for (
    const d of [
      "bin",
      "tmp",
      "proc",
      "newroot",
      "sysroot/composefs/images",
      `sysroot/state/deploy/${hex}/etc`,
    ]
  ) {
    await Deno.mkdir(`${mr}/${d}`, { recursive: true });
  }
  await Deno.mkdir(`${mr}/sysroot/state/deploy/${hex}/var`);
  const repo = `${mr}/sysroot/composefs`;
  await sh(Deno.execPath(), [
    "run",
    "-A",
    "--no-config",
    bundle,
    "--repo",
    repo,
    "init",
    "--insecure",
    "--algorithm",
    "fsverity-sha256-12",
  ]);
  await Deno.mkdir(`${repo}/objects/${hex.slice(0, 2)}`, { recursive: true });
  await Deno.writeFile(`${repo}/objects/${hex.slice(0, 2)}/${hex.slice(2)}`, image);
  await Deno.symlink(`../objects/${hex.slice(0, 2)}/${hex.slice(2)}`, `${repo}/images/${hex}`);
  await Deno.copyFile(Deno.execPath(), `${mr}/bin/deno`);
  await Deno.chmod(`${mr}/bin/deno`, 0o755);
  for (const lib of (await sh("ldd", [Deno.execPath()])).split("\n").map((l) => /(\/\S+)/.exec(l)?.[1])) {
    if (!lib) continue;
    await Deno.mkdir(`${mr}${lib.slice(0, lib.lastIndexOf("/"))}`, { recursive: true });
    await Deno.copyFile(await Deno.realPath(lib), `${mr}${lib}`);
  }
  await Deno.copyFile(bundle, `${mr}/cfsctl.js`);
  await Deno.writeTextFile(`${mr}/empty.js`, "");
  await sh("mount", ["-t", "proc", "proc", `${mr}/proc`]);

  const timeInRoot = async (
    args: string[],
    env: Record<string, string>,
    after?: () => Promise<void>,
    expectFailure = false,
  ) => {
    const times: number[] = [];
    for (let i = 0; i < runs + 1; i++) {
      const t0 = performance.now();
      const o = await new Deno.Command("/usr/sbin/chroot", {
        args: [mr, "/bin/deno", "run", "-A", "--no-config", ...args],
        env: { PATH: "/bin", HOME: "/tmp", DENO_DIR: "/tmp/deno", ...env },
        clearEnv: true,
        stdout: "null",
        stderr: "piped",
      }).output();
      const t = performance.now() - t0;
      if (o.success === expectFailure) {
        throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
      }
      if (after) await after();
      if (i > 0) times.push(t); // the first run warms the page cache
    }
    return median(times);
  };
  const unmount = () => sh("umount", ["-R", `${mr}/newroot`]).then(() => {});
  const empty = await timeInRoot(["/empty.js"], {});
  const version = await timeInRoot(["/cfsctl.js", "--version"], {});
  const setup = await timeInRoot(
    ["/cfsctl.js", "--cmdline", `quiet composefs=?${hex}`, "--target", "/newroot"],
    { CFSCTL_INVOKED_AS: "composefs-setup-root" },
    unmount,
  );
  const refusal = await timeInRoot(
    ["/cfsctl.js", "--cmdline", "quiet", "--target", "/newroot"],
    { CFSCTL_INVOKED_AS: "composefs-setup-root" },
    undefined,
    true,
  );
  const lib: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await setupRoot({
      sysroot: `${mr}/sysroot`,
      cmdline: `composefs=?${hex}`,
      target: `${mr}/newroot`,
      configPath: "/nonexistent",
    });
    lib.push(performance.now() - t0);
    await unmount();
  }
  console.log(
    `image: ${dumpPath.split("/").pop()} → V2 sha256, ${image.length} bytes, id ${hex.slice(0, 16)}…`,
  );
  console.log(`medians of ${runs} runs, ms, inside a minimal root (chroot: deno + libraries + bundle):`);
  console.log(`  deno run empty.js                       ${empty.toFixed(0)}`);
  console.log(`  cfsctl --version                        ${version.toFixed(0)}`);
  console.log(`  composefs-setup-root (start → mounted)  ${setup.toFixed(0)}   goal < 300`);
  console.log(
    `  composefs-setup-root refusing (no karg)  ${refusal.toFixed(0)}   (start-up + setup-root code load)`,
  );
  console.log(`  setupRoot() in-process (library only)   ${median(lib).toFixed(0)}`);
} finally {
  await new Deno.Command("umount", { args: ["-R", "-l", `${mr}/newroot`] }).output();
  await new Deno.Command("umount", { args: ["-l", `${mr}/proc`] }).output();
  await Deno.remove(base, { recursive: true });
}
