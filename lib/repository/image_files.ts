// The dumpfile lines of paths inside a stored image (`dump-files`, docs/dumpfile.md): each path with its
// subtree, or only where each file's bytes are (`--backing-path-only`).
import { CfsError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { dumpfileEntryLines } from "../dumpfile/write.ts";
import { readErofs } from "../erofs/reader.ts";
import { type Directory, type Inode, lookup } from "../tree/tree.ts";
import { countLeafLinks } from "../tree/walk.ts";
import { utf8ToBstr } from "../util/bytes.ts";
import type { Repository } from "./repository.ts";

/**
 * The text dump-files prints for `paths` (UTF-8 paths; the text is a byte string, one char per byte):
 * dumpfile lines, or with `backingPathOnly` one `PATH inline` / `PATH XX/rest` line per file,
 * followed by an empty line. NotFoundError for a missing path; InvalidArgumentError for a directory
 * given with `backingPathOnly`.
 */
export async function imageFileLines(
  repo: Repository,
  image: string,
  paths: string[],
  opts: { backingPathOnly?: boolean } = {},
): Promise<string> {
  const { bytes } = await repo.readImage(image);
  let root: Directory;
  try {
    root = readErofs(bytes, { alg: repo.alg });
  } catch (e) {
    if (e instanceof CfsError) throw e.within(`image ${image}`);
    throw e;
  }
  const counts = countLeafLinks(root);
  let text = "";
  for (const p of paths) {
    const bpath = utf8ToBstr(p);
    const node: Inode | undefined = lookup(root, bpath);
    if (!node) throw new NotFoundError(`${p}: no such file in image ${image}`);
    if (opts.backingPathOnly) {
      if (node.kind === "dir") throw new InvalidArgumentError(`${p} is a directory (no backing path)`);
      text += `${bpath} ${backingPath(node)}\n`;
      continue;
    }
    const canonical = "/" + bpath.split("/").filter((c) => c !== "" && c !== ".").join("/");
    for (const line of dumpfileEntryLines(node, canonical, { counts, canonical: new Set() })) {
      text += line + "\n";
    }
  }
  return text + "\n";
}

/** Where a file's bytes are: its object path (or the image's redirect payload), or `inline`. */
function backingPath(node: Exclude<Inode, Directory>): string {
  const c = node.content;
  if (c.type === "external") return c.payload ?? c.id.objectPath();
  if (c.type === "external-noverity" && c.payload !== undefined) return c.payload;
  return "inline";
}
