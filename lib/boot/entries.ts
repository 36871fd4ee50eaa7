// Boot entries found in an image tree (docs/boot.md "Boot entries"), collected before the boot
// transform empties /boot: Boot Loader Specification type 1 entries (/boot/loader/entries/*.conf and
// the files they name), type 2 UKIs (*.efi under /boot/EFI/Linux and /usr/lib/modules/<kver>/, addons
// in subdirectories), and plain kernels /usr/lib/modules/<kver>/vmlinuz (+ initramfs.img).
import { FormatError } from "../errors.ts";
import { type Directory, type Leaf, lookup, sortedEntries } from "../tree/tree.ts";
import { bstrToUtf8 } from "../util/bytes.ts";

/** Reads a regular file of the image tree (inline data or its object). */
export type LeafReader = (leaf: Leaf, path: string) => Promise<Uint8Array>;

/** A BLS entry file, kept as its lines. */
export class BlsEntry {
  lines: string[];
  constructor(text: string) {
    this.lines = text.split("\n");
    if (this.lines.length > 0 && this.lines[this.lines.length - 1] === "") this.lines.pop();
  }

  static #value(line: string, key: string): string | null {
    if (!line.startsWith(key)) return null;
    const rest = line.slice(key.length);
    if (!/^[ \t]/.test(rest)) return null;
    return rest.replace(/^[ \t]+/, "");
  }

  values(key: string): string[] {
    return this.lines.map((l) => BlsEntry.#value(l, key)).filter((v): v is string => v !== null);
  }

  value(key: string): string | null {
    return this.values(key)[0] ?? null;
  }

  /** Sets the argument KEY=… (or KEY) on the first `options` line, replacing one with the same key. */
  addOption(arg: string): void {
    const eq = arg.indexOf("=");
    const key = eq >= 0 ? arg.slice(0, eq + 1) : arg;
    for (let i = 0; i < this.lines.length; i++) {
      const v = BlsEntry.#value(this.lines[i], "options");
      if (v === null) continue;
      const words = v.split(/[ \t]+/).filter((w) => w !== "");
      const at = words.findIndex((w) => (eq >= 0 ? w.startsWith(key) : w === key));
      if (at >= 0) words[at] = arg;
      else words.push(arg);
      this.lines[i] = `options ${words.join(" ")}`;
      return;
    }
    this.lines.push(`options ${arg}`);
  }

  /** Replaces the directory of every linux/initrd/efi path with `/DIR/`. */
  relocate(dir: string): void {
    for (let i = 0; i < this.lines.length; i++) {
      for (const key of ["linux", "initrd", "efi"]) {
        const v = BlsEntry.#value(this.lines[i], key);
        if (v === null) continue;
        this.lines[i] = `${key} ${dir}/${v.slice(v.lastIndexOf("/") + 1)}`;
      }
    }
  }

  toString(): string {
    return this.lines.join("\n") + "\n";
  }
}

export interface Type1Entry {
  kind: "bls";
  /** File name under /boot/loader/entries (byte string). */
  filename: string;
  entry: BlsEntry;
  /** Files the entry names (linux, initrd, efi), by the path written in it (relative to /boot). */
  files: Map<string, Leaf>;
}

export interface Type2Entry {
  kind: "uki";
  /** Kernel version directory for UKIs under /usr/lib/modules; undefined for /boot/EFI/Linux. */
  kver?: string;
  /** Path relative to the directory searched (e.g. `foo.efi`, `foo.efi.extra.d/x.addon.efi`). */
  relPath: string;
  leaf: Leaf;
  /** A UKI itself (top level of the directory) or an addon (in a subdirectory). */
  peType: "uki" | "addon";
}

export interface PlainKernelEntry {
  kind: "vmlinuz";
  kver: string;
  vmlinuz: Leaf;
  initramfs?: Leaf;
  osRelease?: Leaf;
}

export type BootEntry = Type1Entry | Type2Entry | PlainKernelEntry;

function dirAt(root: Directory, path: string): Directory | null {
  const n = lookup(root, path);
  if (!n) return null;
  if (n.kind !== "dir") throw new FormatError(`${path} in the image is not a directory`);
  return n;
}

function regularAt(root: Directory, path: string, what: string): Leaf {
  const n = lookup(root, path);
  if (!n) throw new FormatError(`${what}: ${path} does not exist in the image`);
  if (n.kind !== "leaf" || !["inline", "external", "external-noverity"].includes(n.content.type)) {
    throw new FormatError(`${what}: ${path} is not a regular file`);
  }
  return n;
}

function isRegular(n: Leaf): boolean {
  return n.content.type === "inline" || n.content.type === "external" ||
    n.content.type === "external-noverity";
}

async function loadType1(root: Directory, read: LeafReader): Promise<Type1Entry[]> {
  const dir = dirAt(root, "/boot/loader/entries");
  if (!dir) return [];
  const out: Type1Entry[] = [];
  for (const [name, node] of sortedEntries(dir)) {
    if (!name.endsWith(".conf")) continue;
    const path = `/boot/loader/entries/${name}`;
    if (node.kind !== "leaf" || !isRegular(node)) throw new FormatError(`${path} is not a regular file`);
    const entry = new BlsEntry(new TextDecoder().decode(await read(node, path)));
    const files = new Map<string, Leaf>();
    for (const key of ["linux", "initrd", "efi"]) {
      for (const p of entry.values(key)) {
        // composefs-rs resolves the path from the image root; an entry written for the boot partition
        // (paths relative to /boot) is found under /boot.
        const rel = p.replace(/^\/+/, "");
        const at = lookup(root, `/${rel}`) ? `/${rel}` : `/boot/${rel}`;
        files.set(p, regularAt(root, at, `${path} (${key} ${p})`));
      }
    }
    out.push({ kind: "bls", filename: name, entry, files });
  }
  return out;
}

function findUkis(dir: Directory, rel: string, kver: string | undefined, out: Type2Entry[]): void {
  for (const [name, node] of sortedEntries(dir)) {
    const r = rel ? `${rel}/${name}` : name;
    if (node.kind === "dir") {
      findUkis(node, r, kver, out);
      continue;
    }
    if (!name.endsWith(".efi")) continue;
    if (!isRegular(node)) throw new FormatError(`${r} is not a regular file`);
    out.push({ kind: "uki", kver, relPath: r, leaf: node, peType: rel === "" ? "uki" : "addon" });
  }
}

function loadType2(root: Directory): Type2Entry[] {
  const out: Type2Entry[] = [];
  const efi = dirAt(root, "/boot/EFI/Linux");
  if (efi) findUkis(efi, "", undefined, out);
  const modules = dirAt(root, "/usr/lib/modules");
  if (modules) {
    for (const [kver, node] of sortedEntries(modules)) {
      if (node.kind === "dir") findUkis(node, "", kver, out);
    }
  }
  return out;
}

function loadPlain(root: Directory): PlainKernelEntry[] {
  const modules = dirAt(root, "/usr/lib/modules");
  if (!modules) return [];
  const out: PlainKernelEntry[] = [];
  const osr = lookup(root, "/usr/lib/os-release");
  for (const [kver, node] of sortedEntries(modules)) {
    if (node.kind !== "dir") continue;
    const vmlinuz = node.entries.get("vmlinuz");
    if (!vmlinuz || vmlinuz.kind !== "leaf" || !isRegular(vmlinuz)) continue;
    const initramfs = node.entries.get("initramfs.img");
    out.push({
      kind: "vmlinuz",
      kver: bstrToUtf8(kver),
      vmlinuz,
      initramfs: initramfs?.kind === "leaf" && isRegular(initramfs) ? initramfs : undefined,
      osRelease: osr?.kind === "leaf" && isRegular(osr) ? osr : undefined,
    });
  }
  return out;
}

/** Every boot entry of the tree, type 1 first, then UKIs, then plain kernels. */
export async function collectBootEntries(root: Directory, read: LeafReader): Promise<BootEntry[]> {
  return [...await loadType1(root, read), ...loadType2(root), ...loadPlain(root)];
}
