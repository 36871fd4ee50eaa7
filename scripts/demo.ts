// The README's first command: pull the bundled demo image into a temporary repository, print its
// image id and files, and mount it when running as root.
//   deno task demo [IMAGE]      (default: oci:examples/demo-image:latest)
const root = new URL("../", import.meta.url).pathname;
const image = Deno.args[0] ?? `oci:${root}examples/demo-image:latest`;
const repo = await Deno.makeTempDir({ prefix: "cfsctl-demo-repo-" });

async function cfsctl(args: string[], inherit = true): Promise<string> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", `${root}main.ts`, "--repo", repo, ...args],
    stdout: "piped",
    stderr: inherit ? "inherit" : "piped",
  }).output();
  const text = new TextDecoder().decode(o.stdout);
  if (o.code !== 0) {
    console.error(`cfsctl ${args.join(" ")} failed (exit ${o.code})`);
    Deno.exit(o.code);
  }
  return text;
}

function show(title: string, text: string) {
  console.log(`\n$ ${title}\n${text.trimEnd()}`);
}

try {
  show("cfsctl init --insecure", await cfsctl(["init", "--insecure"]));
  show(`cfsctl oci pull ${image} demo`, await cfsctl(["oci", "pull", image, "demo"]));
  show("cfsctl oci images", await cfsctl(["oci", "images"]));
  show("cfsctl oci compute-id demo", await cfsctl(["oci", "compute-id", "demo"]));
  show("cfsctl oci dump demo", await cfsctl(["oci", "dump", "demo"]));
  if (Deno.uid() === 0) {
    const mnt = await Deno.makeTempDir({ prefix: "cfsctl-demo-mnt-" });
    try {
      await cfsctl(["oci", "mount", "demo", mnt]);
      const ls = await new Deno.Command("ls", { args: ["-lR", mnt], stdout: "piped" }).output();
      show(`cfsctl oci mount demo ${mnt} && ls -lR ${mnt}`, new TextDecoder().decode(ls.stdout));
      const cat = await new Deno.Command("cat", { args: [`${mnt}/etc/motd`], stdout: "piped" }).output();
      show(`cat ${mnt}/etc/motd`, new TextDecoder().decode(cat.stdout));
    } finally {
      await new Deno.Command("umount", { args: [mnt] }).output();
      await Deno.remove(mnt).catch(() => {});
    }
  } else {
    console.log("\n(not root: skipping the mount step)");
  }
} finally {
  await Deno.remove(repo, { recursive: true });
}
