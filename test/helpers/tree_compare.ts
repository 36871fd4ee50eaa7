// Flattens a file tree into comparable lines (one per path, name-ordered DFS, hard links by first
// path) so two trees can be compared with assertEquals and a readable diff.
import { toHex } from "../../lib/util/bytes.ts";
import { type Directory, type Inode, type Leaf, sortedEntries } from "../../lib/tree/tree.ts";

export interface FlattenOptions {
  /** V2 images keep whole seconds only. */
  dropNsec?: boolean;
}

function leafLine(leaf: Leaf): string {
  const c = leaf.content;
  switch (c.type) {
    case "inline":
      return `inline ${toHex(c.data)}`;
    case "external":
      return `external ${c.id.toId()} ${c.size}${
        c.payload !== undefined ? " " + JSON.stringify(c.payload) : ""
      }`;
    case "external-noverity":
      return `external-noverity ${c.size}${c.payload !== undefined ? " " + JSON.stringify(c.payload) : ""}`;
    case "symlink":
      return `symlink ${JSON.stringify(c.target)}`;
    case "chardev":
    case "blockdev":
      return `${c.type} ${c.rdev}`;
    default:
      return c.type;
  }
}

function statLine(node: Inode, o: FlattenOptions): string {
  const s = node.stat;
  const xattrs = [...s.xattrs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([k, v]) => `${JSON.stringify(k)}=${toHex(v)}`);
  const nsec = o.dropNsec ? 0 : s.mtimeNsec;
  return `mode=${s.mode.toString(8)} uid=${s.uid} gid=${s.gid} mtime=${
    s.mtimeSecExact ?? s.mtimeSec
  }.${nsec} [${xattrs.join(",")}]`;
}

export function flattenTree(root: Directory, o: FlattenOptions = {}): string[] {
  const out: string[] = [];
  const firstPath = new Map<Leaf, string>();
  const walk = (dir: Directory, path: string) => {
    out.push(`${JSON.stringify(path || "/")} dir ${statLine(dir, o)}`);
    for (const [name, node] of sortedEntries(dir)) {
      const p = path + "/" + name;
      if (node.kind === "dir") {
        walk(node, p);
        continue;
      }
      const first = firstPath.get(node);
      if (first !== undefined) {
        out.push(`${JSON.stringify(p)} hardlink ${JSON.stringify(first)}`);
        continue;
      }
      firstPath.set(node, p);
      out.push(`${JSON.stringify(p)} ${leafLine(node)} ${statLine(node, o)}`);
    }
  };
  walk(root, "");
  return out;
}
