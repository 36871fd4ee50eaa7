// Image commands (README.md#command-reference): create-image, compute-id, create-dumpfile, image-objects,
// dump-files. The image code (./image_impl.ts) is loaded when an action starts, not at start-up.
import type { Command } from "commander";
import { Buffer } from "node:buffer";
import { outBytes, outJson, outln } from "./output.ts";
import { examplesText, globalsOf } from "./program.ts";
import type { ReadFlags } from "./image_impl.ts";

interface JsonFlag {
  json?: boolean;
}

function addReadFlags(cmd: Command): Command {
  return cmd
    .option("--bootable", "boot transform: empty /boot and /sysroot, SELinux labels from the image's policy")
    .option("--no-propagate-usr-to-root", "read the directory as is (all xattrs, no /usr → root metadata)");
}

function writeBytesOut(chunks: Iterable<Uint8Array>): void {
  for (const c of chunks) outBytes(c);
}

export function registerImageCommands(program: Command): void {
  registerCreateImage(program);
  registerComputeId(program);
  registerCreateDumpfile(program);
  registerImageObjects(program);
  registerDumpFiles(program);
}

function registerCreateImage(program: Command): void {
  addReadFlags(
    program
      .command("create-image")
      .description("store a directory's files and commit its EROFS image(s); prints the image id")
      .argument("<PATH>", "directory to read")
      .argument("[NAME]", "image ref to create (images/refs/NAME)")
      .option("--json", "print the image id(s) as JSON"),
  ).addHelpText(
    "after",
    examplesText(
      "cfsctl --repo /var/tmp/repo create-image ./rootfs myimage",
      "cfsctl create-image --no-propagate-usr-to-root ./rootfs",
    ),
  ).action(async (path: string, name: string | undefined, flags: ReadFlags & JsonFlag, cmd: Command) => {
    const { commitImages, openRepoFromGlobals, readFsTree } = await import("./image_impl.ts");
    using repo = await openRepoFromGlobals(globalsOf(cmd));
    const committed = await commitImages(repo, await readFsTree(path, flags, repo.alg, repo), name);
    const defaultId = committed[0][1];
    if (flags.json) {
      const images = committed.map(([version, id]) => ({ erofs_version: version, image_id: id.hex() }));
      outJson({ image_id: defaultId.hex(), algorithm: repo.alg, ref: name ?? null, images });
    } else outln(defaultId.toId());
  });
}

function registerComputeId(program: Command): void {
  addReadFlags(
    program
      .command("compute-id")
      .description("print the image id a directory would get (stores nothing; V2 unless --erofs-version)")
      .argument("<PATH>", "directory to read")
      .option("--json", "print the image id as JSON"),
  ).addHelpText(
    "after",
    examplesText(
      "cfsctl --no-repo compute-id ./rootfs",
      "cfsctl --no-repo --hash sha256 --erofs-version 1 compute-id ./rootfs",
    ),
  ).action(async (path: string, flags: ReadFlags & JsonFlag, cmd: Command) => {
    const { writeErofs, fsverityDigest, hashForRepoless, readFsTree } = await import("./image_impl.ts");
    const g = globalsOf(cmd);
    const alg = await hashForRepoless(g);
    const root = await readFsTree(path, flags, alg);
    const version = g.erofsVersion ?? 2;
    const id = fsverityDigest(writeErofs(root, { version }), alg).hex();
    if (flags.json) outJson({ image_id: id, algorithm: alg, erofs_version: version });
    else outln(id);
  });
}

function registerCreateDumpfile(program: Command): void {
  addReadFlags(
    program
      .command("create-dumpfile")
      .description("print the dumpfile of a directory as create-image would read it")
      .argument("<PATH>", "directory to read"),
  ).addHelpText("after", examplesText("cfsctl --no-repo create-dumpfile ./rootfs > rootfs.dump")).action(
    async (path: string, flags: ReadFlags, cmd: Command) => {
      const { hashForRepoless, readFsTree, writeDumpfile } = await import("./image_impl.ts");
      const alg = await hashForRepoless(globalsOf(cmd));
      writeBytesOut(writeDumpfile(await readFsTree(path, flags, alg)));
    },
  );
}

function registerImageObjects(program: Command): void {
  program
    .command("image-objects")
    .description("list the objects an image refers to (one sha256:/sha512: id per line)")
    .argument("<NAME>", "image digest or refs/<name>")
    .option("--json", "print the object ids as JSON")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo image-objects refs/myimage",
        "cfsctl image-objects <image-id> --json",
      ),
    )
    .action(async (name: string, opts: JsonFlag, cmd: Command) => {
      const { collectObjects, openRepoFromGlobals } = await import("./image_impl.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      const { bytes } = await repo.readImage(name);
      if (opts.json) {
        outJson({ algorithm: repo.alg, objects: collectObjects(bytes, repo.alg).map((id) => id.hex()) });
        return;
      }
      let text = "";
      for (const id of collectObjects(bytes, repo.alg)) text += id.toId() + "\n";
      outBytes(new TextEncoder().encode(text));
    });
}

function registerDumpFiles(program: Command): void {
  program
    .command("dump-files")
    .description("print dumpfile lines for paths inside an image (a directory with its subtree)")
    .argument("<IMAGE>", "image digest or refs/<name>")
    .argument("<PATH...>", "paths inside the image")
    .option("--backing-path-only", "print only `PATH inline` or `PATH XX/rest`")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo dump-files refs/myimage /etc/os-release /usr/bin",
        "cfsctl dump-files --backing-path-only refs/myimage /usr/bin/bash",
      ),
    )
    .action(async (image: string, paths: string[], opts: { backingPathOnly?: boolean }, cmd: Command) => {
      const { imageFileLines, openRepoFromGlobals } = await import("./image_impl.ts");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      const text = await imageFileLines(repo, image, paths, { backingPathOnly: opts.backingPathOnly });
      outBytes(Buffer.from(text, "latin1"));
    });
}
