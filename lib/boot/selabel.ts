// SELinux file labels for a boot image (docs/boot.md "SELinux"): the policy named by the image's
// /etc/selinux/config is read from the image itself (contexts/files/file_contexts + .homedirs + .local,
// path aliases from .subs and .subs_dist) and every node gets the `security.selinux` label libselinux's
// selabel_lookup would give it. Matching follows libselinux 3.4: each pattern is anchored as ^RE$ and
// compiled PCRE2-style with "." matching any byte (JavaScript RegExp with the `s` flag, on byte
// strings), patterns without regex metacharacters (exact paths) win over all others, otherwise the
// last matching line wins, `-d`/`--`/`-l`… restrict a line to one file type, `<<none>>` means "no
// label". test/boot_selabel_test.ts checks this against libselinux on a real Debian policy.
import { FormatError } from "../errors.ts";
import { type Directory, type Inode, type Leaf, NO_XATTRS } from "../tree/tree.ts";
import { forEachInode, joinPath } from "../tree/walk.ts";

export const XATTR_SELINUX = "security.selinux";

/** File type letters of file_contexts(5) (`--` = regular file). */
export type FileTypeCode = "-" | "d" | "l" | "b" | "c" | "p" | "s";

interface Spec {
  /** Position in load order (later lines win among regex specs). */
  index: number;
  source: string;
  regex: RegExp;
  /** Literal text every matching path starts with. */
  prefix: string;
  /** True when the pattern has no regex metacharacters: an exact path, which beats every regex. */
  exact: boolean;
  type?: FileTypeCode;
  /** null = `<<none>>`. */
  context: string | null;
}

const META = new Set([".", "^", "$", "?", "*", "+", "|", "[", "(", "{"]);

/** libselinux's notion of "has metacharacters" (a backslash escapes the next character). */
function hasMetaChars(re: string): boolean {
  for (let i = 0; i < re.length; i++) {
    const c = re[i];
    if (c === "\\") i++;
    else if (META.has(c)) return true;
  }
  return false;
}

/**
 * Literal prefix of a pattern: characters before the first metacharacter, with `\x` escapes of
 * punctuation taken literally. A character followed by a quantifier (`?`, `*`, `{`) is not part of
 * it, and a top-level alternative makes it empty (^A|B$ anchors each side separately).
 */
function literalPrefix(re: string): string {
  let depth = 0;
  for (let i = 0; i < re.length; i++) {
    if (re[i] === "\\") i++;
    else if (re[i] === "(") depth++;
    else if (re[i] === ")") depth--;
    else if (re[i] === "|" && depth === 0) return "";
    else if (re[i] === "[") {
      // skip the class so a ")" or "|" inside it is not counted
      let j = i + 1;
      if (re[j] === "^") j++;
      if (re[j] === "]") j++;
      while (j < re.length && re[j] !== "]") j++;
      i = j;
    }
  }
  let out = "";
  for (let i = 0; i < re.length; i++) {
    const c = re[i];
    let lit: string;
    let next: number;
    if (c === "\\") {
      const e = re[i + 1];
      if (e === undefined || /[0-9A-Za-z]/.test(e)) return out;
      lit = e;
      next = i + 2;
    } else if (META.has(c)) {
      return out;
    } else {
      lit = c;
      next = i + 1;
    }
    const q = re[next];
    if (q === "?" || q === "*" || q === "{") return out;
    out += lit;
    i = next - 1;
  }
  return out;
}

function compile(re: string, where: string): RegExp {
  try {
    return new RegExp(`^${re}$`, "s");
  } catch (e) {
    throw new FormatError(`${where}: regular expression ${re} does not compile: ${(e as Error).message}`);
  }
}

/** A loaded policy: lookups by path and file type. */
export class FileContexts {
  #specs: Spec[] = [];
  #subs: [string, string][] = [];
  #distSubs: [string, string][] = [];
  /** directory (substituted path, "" = root) → candidate specs, highest priority first. */
  #byDir = new Map<string, Spec[]>();

  /** Adds the lines of a file_contexts file (later files and lines take precedence). */
  addSpecs(text: string, file: string): void {
    const lines = text.split("\n");
    for (let n = 0; n < lines.length; n++) {
      const parts = lines[n].trim().split(/[ \t]+/).filter((p) => p !== "");
      if (parts.length === 0 || parts[0].startsWith("#")) continue;
      const where = `${file}:${n + 1}`;
      let type: FileTypeCode | undefined;
      let context: string;
      if (parts.length === 3) {
        const t = parts[1];
        if (!/^-[-dlbcps]$/.test(t)) throw new FormatError(`${where}: invalid file type ${t}`);
        type = t[1] as FileTypeCode;
        context = parts[2];
      } else if (parts.length === 2) {
        context = parts[1];
      } else {
        throw new FormatError(`${where}: expected "REGEX [-TYPE] CONTEXT", got ${parts.length} fields`);
      }
      const source = parts[0];
      this.#specs.push({
        index: this.#specs.length,
        source,
        regex: compile(source, where),
        prefix: literalPrefix(source),
        exact: !hasMetaChars(source),
        type,
        context: context === "<<none>>" ? null : context,
      });
    }
    this.#byDir.clear();
  }

  /** Adds a .subs / .subs_dist file: `ALIAS ORIGINAL` per line. */
  addSubs(text: string, file: string, dist: boolean): void {
    const lines = text.split("\n");
    for (let n = 0; n < lines.length; n++) {
      const parts = lines[n].trim().split(/[ \t]+/).filter((p) => p !== "");
      if (parts.length === 0 || parts[0].startsWith("#")) continue;
      if (parts.length !== 2) throw new FormatError(`${file}:${n + 1}: expected "ALIAS ORIGINAL"`);
      (dist ? this.#distSubs : this.#subs).push([parts[0], parts[1]]);
    }
  }

  get size(): number {
    return this.#specs.length;
  }

  /** Applies the path aliases the way libselinux does: .subs first, then .subs_dist on the result. */
  substitute(path: string): string {
    const sub1 = (list: [string, string][], p: string): string | null => {
      for (const [from, to] of list) {
        if (p.startsWith(from) && (p.length === from.length || p[from.length] === "/")) {
          return to + p.slice(from.length);
        }
      }
      return null;
    };
    const a = sub1(this.#subs, path);
    const b = sub1(this.#distSubs, a ?? path);
    return b ?? a ?? path;
  }

  /**
   * Specs that can match something inside directory DIR (a substituted path): the parent's list
   * narrowed to those whose literal prefix agrees with DIR + "/". Cached per directory.
   */
  #dirCandidates(dir: string): Spec[] {
    let list = this.#byDir.get(dir);
    if (list) return list;
    let parentList: Spec[];
    if (dir === "") {
      // Priority order: exact specs (last first), then regex specs (last first).
      parentList = [
        ...this.#specs.filter((s) => s.exact).reverse(),
        ...this.#specs.filter((s) => !s.exact).reverse(),
      ];
    } else {
      parentList = this.#dirCandidates(dir.slice(0, dir.lastIndexOf("/")));
    }
    const d = dir + "/";
    list = parentList.filter((s) =>
      s.prefix.length <= d.length ? d.startsWith(s.prefix) : s.prefix.startsWith(d)
    );
    if (this.#byDir.size > 20000) this.#byDir.clear();
    this.#byDir.set(dir, list);
    return list;
  }

  /** The label for PATH (absolute, "/"-separated byte string) of file type TYPE; null = none. */
  lookup(path: string, type: FileTypeCode): string | null {
    const key = this.substitute(path);
    const slash = key.lastIndexOf("/");
    const candidates = key === "/" ? this.#dirCandidates("") : this.#dirCandidates(key.slice(0, slash));
    for (const s of candidates) {
      if (s.type !== undefined && s.type !== type) continue;
      if (!key.startsWith(s.prefix)) continue;
      if (s.regex.test(key)) return s.context;
    }
    return null;
  }
}

/** Reads a file of the image (by absolute byte-string path); null when it does not exist. */
export type ImageFileReader = (path: string) => Promise<Uint8Array | null>;

const latin1 = new TextDecoder("latin1");

/** SELINUXTYPE from /etc/selinux/config, or null. */
export function policyName(configText: string): string | null {
  for (const line of configText.split("\n")) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    if (line.slice(0, eq).trim().toUpperCase() === "SELINUXTYPE") return line.slice(eq + 1).trim();
  }
  return null;
}

/** Loads the policy the image names, or null when it names none (no /etc/selinux/config or no SELINUXTYPE). */
export async function loadImagePolicy(read: ImageFileReader): Promise<FileContexts | null> {
  const config = await read("/etc/selinux/config");
  if (config === null) return null;
  const name = policyName(latin1.decode(config));
  if (name === null || name === "") return null;
  if (name.includes("/") || name === "." || name === "..") {
    throw new FormatError(`/etc/selinux/config: SELINUXTYPE=${name} is not a policy name`);
  }
  const dir = `/etc/selinux/${name}/contexts/files`;
  const fc = new FileContexts();
  for (const suffix of ["", ".homedirs", ".local"]) {
    const data = await read(`${dir}/file_contexts${suffix}`);
    if (data === null) {
      if (suffix === "") {
        throw new FormatError(
          `/etc/selinux/config names the SELinux policy ${name}, but ${dir}/file_contexts does not exist`,
        );
      }
      continue;
    }
    fc.addSpecs(latin1.decode(data), `${dir}/file_contexts${suffix}`);
  }
  for (const [suffix, dist] of [[".subs", false], [".subs_dist", true]] as const) {
    const data = await read(`${dir}/file_contexts${suffix}`);
    if (data !== null) fc.addSubs(latin1.decode(data), `${dir}/file_contexts${suffix}`, dist);
  }
  return fc;
}

function typeCode(node: Inode): FileTypeCode {
  if (node.kind === "dir") return "d";
  switch (node.content.type) {
    case "symlink":
      return "l";
    case "chardev":
      return "c";
    case "blockdev":
      return "b";
    case "fifo":
      return "p";
    case "socket":
      return "s";
    default:
      return "-";
  }
}

function setLabel(node: Inode, label: string | null): void {
  const x = node.stat.xattrs;
  if (label === null) {
    if (x.has(XATTR_SELINUX)) node.stat.xattrs = withoutKey(x, XATTR_SELINUX);
    return;
  }
  const m = x === NO_XATTRS ? new Map<string, Uint8Array>() : x;
  m.set(XATTR_SELINUX, new TextEncoder().encode(label));
  node.stat.xattrs = m;
}

function withoutKey(m: Map<string, Uint8Array>, key: string): Map<string, Uint8Array> {
  const out = new Map(m);
  out.delete(key);
  return out;
}

export interface RelabelStats {
  labelled: number;
  unlabelled: number;
  /** Hard links split because their paths get different labels. */
  linksSplit: number;
}

/**
 * Sets every node's security.selinux from the policy. A hard-linked leaf whose paths get different
 * labels is split: the later paths get their own copy of the leaf (one inode cannot carry two labels).
 */
export function relabelTree(root: Directory, policy: FileContexts): RelabelStats {
  const stats: RelabelStats = { labelled: 0, unlabelled: 0, linksSplit: 0 };
  const leafLabel = new Map<Leaf, string | null>();
  const apply = (node: Inode, path: string) => {
    const label = policy.lookup(path, typeCode(node));
    setLabel(node, label);
    if (label === null) stats.unlabelled++;
    else stats.labelled++;
  };
  apply(root, "/");
  const stack: [Directory, string][] = [[root, "/"]];
  while (stack.length > 0) {
    const [dir, path] = stack.pop()!;
    for (const [name, child] of dir.entries) {
      const p = joinPath(path, name);
      if (child.kind === "dir") {
        apply(child, p);
        stack.push([child, p]);
        continue;
      }
      const label = policy.lookup(p, typeCode(child));
      if (!leafLabel.has(child)) {
        leafLabel.set(child, label);
        setLabel(child, label);
        if (label === null) stats.unlabelled++;
        else stats.labelled++;
      } else if (leafLabel.get(child) !== label) {
        const copy: Leaf = {
          kind: "leaf",
          stat: { ...child.stat, xattrs: new Map(child.stat.xattrs) },
          content: child.content,
        };
        setLabel(copy, label);
        leafLabel.set(copy, label);
        dir.entries.set(name, copy);
        stats.linksSplit++;
        if (label === null) stats.unlabelled++;
        else stats.labelled++;
      }
    }
  }
  return stats;
}

/** Removes security.selinux from every node (an image without a policy). */
export function stripLabels(root: Directory): number {
  let n = 0;
  forEachInode(root, (node) => {
    if (node.stat.xattrs.has(XATTR_SELINUX)) {
      node.stat.xattrs = withoutKey(node.stat.xattrs, XATTR_SELINUX);
      n++;
    }
  });
  return n;
}
