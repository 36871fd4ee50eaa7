// `composefs-info`: the C-compatible image inspector (README.md#command-reference): ls, dump, objects,
// missing-objects, measure-file. Images are read with the strict reader; output formats follow the C tool.
import { Command } from "commander";
import { examplesText, exitCodeForThrown } from "./program.ts";
import { CfsError, UsageError } from "../errors.ts";
import { readErofs } from "../erofs/reader.ts";
import { dumpfileEntryLines } from "../dumpfile/write.ts";
import { measureFileWithFallback } from "../fsverity/measure.ts";
import type { Directory, Leaf } from "../tree/tree.ts";
import { walkTree } from "../tree/walk.ts";
import { err, outBytes, outJson, outln } from "./output.ts";
import { bstrToUtf8Lossy } from "../util/bytes.ts";
import { Buffer } from "node:buffer";

/** Accumulates byte-string output and flushes it in large writes. */
class ByteOut {
  #buf = "";
  write(s: string): void {
    this.#buf += s;
    if (this.#buf.length >= 65536) this.flush();
  }
  flush(): void {
    if (this.#buf.length > 0) outBytes(Buffer.from(this.#buf, "latin1"));
    this.#buf = "";
  }
}

/** C composefs-info escaping: \\ \n \r \t, other bytes outside printable ASCII as \xHH; space is
 *  kept in `ls` paths (keepSpace) and escaped elsewhere. */
function lsEscape(s: string, keepSpace: boolean): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c) out += "\\\\";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if ((c === 0x20 && keepSpace) || (c > 0x20 && c < 0x7f)) out += s[i];
    else out += "\\x" + c.toString(16).padStart(2, "0");
  }
  return out;
}

/** The backing path of a regular file stored outside the image, if any. */
function backingPath(leaf: Leaf): string | undefined {
  const c = leaf.content;
  if (c.type === "external") return c.payload ?? c.id.objectPath();
  if (c.type === "external-noverity") return c.payload;
  return undefined;
}

/**
 * Reads an image. `filters` (top-level names) are applied here, as C applies --filter when it loads
 * the image: every command then sees only those top-level entries (the root itself stays), so a
 * hard link whose first path was filtered out is printed in full at the path that remains.
 */
async function loadImage(path: string, filters: readonly string[] = []): Promise<Directory> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new CfsError(`failed to open: ${(e as Error).message}`, { context: [path] });
  }
  let root: Directory;
  try {
    root = readErofs(bytes);
  } catch (e) {
    if (e instanceof CfsError) throw e.within(path);
    throw e;
  }
  if (filters.length > 0) {
    for (const name of [...root.entries.keys()]) {
      if (!filters.includes(name)) root.entries.delete(name);
    }
  }
  return root;
}

function printLs(root: Directory, out: ByteOut): void {
  const seen = new Set<Leaf>();
  for (const { path, node } of walkTree(root)) {
    if (path === "/") continue;
    let line = lsEscape(path, true);
    if (node.kind === "dir") {
      line += "/\t";
    } else if (node.content.type === "symlink") {
      line += "\t-> " + lsEscape(node.content.target, false);
    } else {
      const backing = backingPath(node);
      if (backing !== undefined && !seen.has(node)) line += "\t@ " + lsEscape(backing, false);
      seen.add(node);
    }
    out.write(line + "\n");
  }
}

/** `ls --json` entries: the same walk as `ls`, every hard link with its backing path. */
function lsJson(root: Directory) {
  const entries = [];
  for (const { path, node } of walkTree(root)) {
    if (path === "/") continue;
    const e: Record<string, unknown> = { path: bstrToUtf8Lossy(path) };
    if (node.kind === "dir") e.type = "directory";
    else {
      const c = node.content;
      e.type = c.type === "symlink"
        ? "symlink"
        : c.type === "chardev"
        ? "chardev"
        : c.type === "blockdev"
        ? "blockdev"
        : c.type === "fifo"
        ? "fifo"
        : c.type === "socket"
        ? "socket"
        : "file";
      if (c.type === "symlink") e.target = bstrToUtf8Lossy(c.target);
      if (c.type === "inline") e.size = c.data.length;
      if (c.type === "external" || c.type === "external-noverity") e.size = c.size;
      const backing = backingPath(node);
      if (backing !== undefined) e.backing = bstrToUtf8Lossy(backing);
    }
    entries.push(e);
  }
  return entries;
}

/** Sorted unique backing paths of an image's external files. */
function objectPaths(root: Directory): string[] {
  const set = new Set<string>();
  for (const { node } of walkTree(root)) {
    if (node.kind === "leaf") {
      const b = backingPath(node);
      if (b !== undefined) set.add(b);
    }
  }
  return [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

function addFilter(v: string, prev: string[]): string[] {
  if (v.includes("/")) throw new UsageError(`filter must be a single name: ${v}`);
  return [...prev, v];
}

const FILTER_HELP = "only these top-level entries, applied when the image is loaded (repeatable)";

function buildCommand(): Command {
  const program = new Command("composefs-info")
    .description("inspect composefs images")
    .addHelpText(
      "after",
      examplesText(
        "composefs-info ls image.cfs",
        "composefs-info missing-objects --basedir /composefs/objects image.cfs",
        "composefs-info measure-file image.cfs",
      ),
    )
    .configureOutput({ writeOut: (s) => outBytes(new TextEncoder().encode(s)), writeErr: err })
    .exitOverride()
    .showHelpAfterError(false)
    // The C tool takes its options before the command: accept them there too.
    .option("--filter <NAME>", FILTER_HELP, addFilter, [] as string[])
    .option("--basedir <DIR>", "object directory (missing-objects)");
  const globals = () => program.opts<InfoGlobals>();
  registerLs(program, globals);
  registerDump(program, globals);
  registerObjects(program, globals);
  registerMissingObjects(program, globals);
  registerMeasureFile(program);
  return program;
}

/** The options composefs-info takes before its command (as the C tool does). */
interface InfoGlobals {
  filter: string[];
  basedir?: string;
}

type Globals = () => InfoGlobals;

function registerLs(program: Command, globals: Globals): void {
  program
    .command("ls")
    .description("list the files of the images")
    .argument("<IMAGE...>", "composefs image files")
    .option("--filter <NAME>", FILTER_HELP, addFilter, [] as string[])
    .option("--json", "print the listing as JSON")
    .addHelpText(
      "after",
      examplesText("composefs-info ls image.cfs", "composefs-info ls --filter etc --json image.cfs"),
    )
    .action(async (images: string[], opts: { filter: string[]; json?: boolean }) => {
      const filters = [...globals().filter, ...opts.filter];
      if (opts.json) {
        const list = [];
        for (const image of images) list.push({ image, entries: lsJson(await loadImage(image, filters)) });
        outJson({ images: list });
        return;
      }
      const out = new ByteOut();
      for (const image of images) printLs(await loadImage(image, filters), out);
      out.flush();
    });
}

function registerDump(program: Command, globals: Globals): void {
  program
    .command("dump")
    .description("print the images as dumpfiles")
    .argument("<IMAGE...>", "composefs image files")
    .option("--filter <NAME>", FILTER_HELP, addFilter, [] as string[])
    .addHelpText(
      "after",
      examplesText(
        "composefs-info dump image.cfs > image.dump",
        "composefs-info dump --filter etc image.cfs",
      ),
    )
    .action(async (images: string[], opts: { filter: string[] }) => {
      const filters = [...globals().filter, ...opts.filter];
      const out = new ByteOut();
      for (const image of images) {
        for (const line of dumpfileEntryLines(await loadImage(image, filters))) out.write(line + "\n");
      }
      out.flush();
    });
}

function registerObjects(program: Command, globals: Globals): void {
  program
    .command("objects")
    .description("list the backing objects the images refer to")
    .argument("<IMAGE...>", "composefs image files")
    .option("--filter <NAME>", FILTER_HELP, addFilter, [] as string[])
    .option("--json", "print the object paths as JSON")
    .addHelpText("after", examplesText("composefs-info objects image.cfs"))
    .action(async (images: string[], opts: { filter: string[]; json?: boolean }) => {
      const filters = [...globals().filter, ...opts.filter];
      if (opts.json) {
        const list = [];
        for (const image of images) {
          list.push({ image, objects: objectPaths(await loadImage(image, filters)).map(bstrToUtf8Lossy) });
        }
        outJson({ images: list });
        return;
      }
      for (const image of images) {
        for (const p of objectPaths(await loadImage(image, filters))) {
          outBytes(Buffer.from(p + "\n", "latin1"));
        }
      }
    });
}

function registerMissingObjects(program: Command, globals: Globals): void {
  program
    .command("missing-objects")
    .description("list the backing objects missing under --basedir")
    .argument("<IMAGE...>", "composefs image files")
    .option("--basedir <DIR>", "object directory to look in (required)")
    .option("--filter <NAME>", FILTER_HELP, addFilter, [] as string[])
    .option("--json", "print the missing object paths as JSON")
    .addHelpText(
      "after",
      "\n--basedir is required here. C composefs-info without it looks the objects up relative to\n" +
        "file descriptor 0 and so reports every object as missing; that list is what `objects`\n" +
        "prints, and a forgotten --basedir should not look like an empty object store.\n" +
        examplesText("composefs-info missing-objects --basedir /composefs/objects image.cfs"),
    )
    .action(async (images: string[], opts: { basedir?: string; filter: string[]; json?: boolean }) => {
      const filters = [...globals().filter, ...opts.filter];
      const basedir = opts.basedir ?? globals().basedir;
      if (basedir === undefined) {
        throw new UsageError("missing-objects needs --basedir DIR (use `objects` to list every object)");
      }
      const isDir = await Deno.stat(basedir).then((s) => s.isDirectory, (e: Error) => e.message);
      if (isDir !== true) {
        throw new CfsError(`can't open basedir: ${isDir || "not a directory"}`, { context: [basedir] });
      }
      const list = [];
      for (const image of images) {
        const missing: string[] = [];
        for (const p of objectPaths(await loadImage(image, filters))) {
          const rel = p.replace(/^\/+/, "");
          const utf8Path = bstrToUtf8Lossy(rel);
          if (await exists(`${basedir}/${utf8Path}`)) continue;
          if (opts.json) missing.push(bstrToUtf8Lossy(p));
          else outBytes(Buffer.from(p + "\n", "latin1"));
        }
        list.push({ image, missing });
      }
      if (opts.json) outJson({ basedir, images: list });
    });
}

function registerMeasureFile(program: Command): void {
  program
    .command("measure-file")
    .description("print the fs-verity (SHA-256) digest of files")
    .argument("<FILE...>", "files to measure")
    .option("--json", "print the digests as JSON")
    .addHelpText(
      "after",
      examplesText("composefs-info measure-file image.cfs /composefs/objects/ab/cdef0123\u2026"),
    )
    .action(async (files: string[], opts: { json?: boolean }) => {
      const list = [];
      for (const f of files) {
        try {
          const digest = (await measureFileWithFallback(f, "sha256")).hex();
          if (opts.json) list.push({ path: f, digest });
          else outln(digest);
        } catch (e) {
          if (e instanceof CfsError) throw e;
          throw new CfsError(`failed to measure: ${(e as Error).message}`, { context: [f] });
        }
      }
      if (opts.json) outJson({ algorithm: "sha256", files: list });
    });
}

export async function composefsInfoMain(args: string[]): Promise<number> {
  const program = buildCommand();
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (e) {
    return exitCodeForThrown(e, program, args);
  }
}
