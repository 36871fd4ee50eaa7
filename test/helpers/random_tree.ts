// Seeded random file trees for round-trip and robustness tests: deterministic for a given seed,
// with the awkward cases composefs images must survive (wide and deep directories, long and
// non-UTF-8 names, hard links across directories, long symlinks, shared and unique xattrs, user
// whiteouts, big ids, odd mtimes).
import { ObjectId } from "../../lib/fsverity/object_id.ts";
import {
  type Directory,
  type Inode,
  type Leaf,
  type LeafContent,
  newDirectory,
  newLeaf,
  newStat,
  type Stat,
} from "../../lib/tree/tree.ts";

/** mulberry32: tiny, fast, good enough for test data. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(0, a.length - 1)];
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }
}

export interface RandomTreeOptions {
  /** Rough number of entries in the tree. */
  entries?: number;
  /** Maximum directory depth. */
  maxDepth?: number;
  /** Digest algorithm of external files. */
  alg?: "sha256" | "sha512";
  /** Allow user whiteouts (chr 0:0) outside the root. */
  whiteouts?: boolean;
}

const NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+=~,@ ";
/** Xattr names the reader drops by design (overlay bookkeeping): never generated. */
const RESERVED_XATTRS = new Set([
  "trusted.overlay.whiteout",
  "trusted.overlay.whiteouts",
  "trusted.overlay.opaque",
  "user.overlay.whiteout",
  "user.overlay.whiteouts",
  "user.overlay.opaque",
]);

function randomName(rng: Rng): string {
  const r = rng.next();
  let len: number;
  if (r < 0.6) len = rng.int(1, 12);
  else if (r < 0.9) len = rng.int(13, 80);
  else len = rng.int(200, 255);
  let s = "";
  const binary = rng.chance(0.15);
  for (let i = 0; i < len; i++) {
    if (binary) {
      let c = rng.int(1, 255);
      if (c === 0x2f) c = 0x80; // '/'
      s += String.fromCharCode(c);
    } else {
      s += NAME_CHARS[rng.int(0, NAME_CHARS.length - 1)];
    }
  }
  if (s === "." || s === "..") s += "x";
  return s;
}

function randomXattrName(rng: Rng): string {
  const prefix = rng.pick([
    "user.",
    "user.",
    "trusted.",
    "security.",
    "lustre.",
    "trusted.overlay.",
    "system.posix_acl_access",
    "system.posix_acl_default",
    "",
  ]);
  if (prefix.startsWith("system.")) return prefix;
  for (;;) {
    let s = prefix === "" ? "x-" : prefix;
    const n = rng.int(1, 30);
    for (let i = 0; i < n; i++) s += NAME_CHARS[rng.int(0, 61)];
    if (!RESERVED_XATTRS.has(s)) return s;
  }
}

export function randomTree(seed: number, opts: RandomTreeOptions = {}): Directory {
  const rng = new Rng(seed);
  const target = opts.entries ?? 200;
  const maxDepth = opts.maxDepth ?? 6;
  const alg = opts.alg ?? "sha256";
  const digestLen = alg === "sha256" ? 32 : 64;

  // A pool of xattrs that several inodes share (→ shared xattr table).
  const sharedPool: [string, Uint8Array][] = [];
  for (let i = 0; i < 12; i++) sharedPool.push([randomXattrName(rng), rng.bytes(rng.int(0, 40))]);
  const mtimePool = [0, 1, -1, -86400 * 365 * 70, 1633950376, 2 ** 31, 2 ** 33 + 7, 4102444800];

  const randomStat = (perm: number): Stat => {
    const xattrs = new Map<string, Uint8Array>();
    const nx = rng.chance(0.5) ? 0 : rng.int(1, 6);
    for (let i = 0; i < nx; i++) {
      if (rng.chance(0.5)) {
        const [k, v] = rng.pick(sharedPool);
        xattrs.set(k, v);
      } else {
        const big = rng.chance(0.05);
        xattrs.set(randomXattrName(rng), rng.bytes(big ? rng.int(200, 1500) : rng.int(0, 30)));
      }
    }
    const bigIds = rng.chance(0.1);
    return newStat({
      mode: perm,
      uid: bigIds ? rng.int(65536, 0xffffffff) : rng.int(0, 1000),
      gid: bigIds ? rng.int(65536, 0xffffffff) : rng.int(0, 1000),
      mtimeSec: rng.chance(0.7) ? rng.pick(mtimePool) : rng.int(-(2 ** 40), 2 ** 40),
      mtimeNsec: rng.chance(0.5) ? 0 : rng.int(0, 999_999_999),
      xattrs,
    });
  };

  const randomContent = (): LeafContent => {
    const r = rng.next();
    if (r < 0.3) {
      const big = rng.chance(0.1);
      return { type: "inline", data: rng.bytes(big ? rng.int(65, 5000) : rng.int(0, 64)) };
    }
    if (r < 0.5) {
      const size = rng.chance(0.1) ? rng.int(2 ** 32, 2 ** 45) : rng.int(65, 10_000_000);
      const id = new ObjectId(alg, rng.bytes(digestLen));
      const p = rng.next();
      // C dumpfiles may name a backing path other than the object path, or give no digest at all.
      if (p < 0.05) return { type: "external", id, size, payload: "backing/" + randomName(rng) };
      if (p < 0.08) return { type: "external-noverity", size, payload: id.objectPath() };
      if (p < 0.1) return { type: "external-noverity", size };
      return { type: "external", id, size };
    }
    if (r < 0.7) {
      // Symlink targets: mostly short, some long enough to hit block-boundary handling.
      const len = rng.chance(0.8) ? rng.int(1, 100) : rng.int(500, 1024);
      let t = "";
      for (let i = 0; i < len; i++) {
        t += String.fromCharCode(rng.chance(0.1) ? rng.int(1, 255) : 0x61 + (i % 26));
      }
      return { type: "symlink", target: t };
    }
    if (r < 0.78) {
      // rdev within the 32-bit encoding: major < 4096, minor < 2^20, as glibc makedev.
      const major = rng.int(0, 4095), minor = rng.int(1, 0xfffff);
      const rdev = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12);
      return { type: rng.chance(0.5) ? "chardev" : "blockdev", rdev: rdev >>> 0 };
    }
    if (r < 0.86) return { type: "fifo" };
    if (r < 0.92) return { type: "socket" };
    if (opts.whiteouts !== false) return { type: "chardev", rdev: 0 };
    return { type: "fifo" };
  };

  const root = newDirectory(randomStat(0o755));
  const dirs: { dir: Directory; depth: number }[] = [{ dir: root, depth: 0 }];
  const linkable: Leaf[] = [];
  let count = 0;

  const add = (parent: Directory, node: Inode, name?: string): boolean => {
    const n = name ?? randomName(rng);
    if (parent.entries.has(n)) return false;
    // Root names of two hex digits that are whiteouts would be taken for the stub table.
    if (
      parent === root && /^[0-9a-fA-F]{2}$/.test(n) && node.kind === "leaf" &&
      node.content.type === "chardev" && node.content.rdev === 0
    ) return false;
    parent.entries.set(n, node);
    count++;
    return true;
  };

  // One directory wide enough to spill over several 4 KiB dirent blocks.
  if (target >= 100) {
    const wide = newDirectory(randomStat(0o755));
    add(root, wide, "wide");
    dirs.push({ dir: wide, depth: 1 });
    const n = Math.min(400, Math.floor(target / 3));
    for (let i = 0; i < n; i++) {
      const name = "entry-" + i.toString().padStart(4, "0") + "-" + "x".repeat(rng.int(0, 40));
      add(wide, newLeaf(randomStat(0o644), { type: "inline", data: rng.bytes(rng.int(0, 8)) }), name);
    }
  }
  // A deep chain of directories.
  {
    let d = root;
    for (let depth = 1; depth <= maxDepth; depth++) {
      const sub = newDirectory(randomStat(0o700));
      if (!add(d, sub, "d" + depth)) break;
      dirs.push({ dir: sub, depth });
      d = sub;
    }
  }
  // Root entries that look like stub slots but are not whiteouts (they must survive).
  add(root, newLeaf(randomStat(0o644), { type: "inline", data: rng.bytes(3) }), "0a");

  while (count < target) {
    const { dir, depth } = rng.pick(dirs);
    const r = rng.next();
    if (r < 0.15 && depth < maxDepth) {
      const sub = newDirectory(randomStat(rng.pick([0o755, 0o700, 0o1777, 0o555])));
      if (add(dir, sub)) dirs.push({ dir: sub, depth: depth + 1 });
    } else if (r < 0.25 && linkable.length > 0) {
      add(dir, rng.pick(linkable)); // hard link, possibly across directories
    } else {
      const content = randomContent();
      const leaf = newLeaf(randomStat(rng.pick([0o644, 0o755, 0o4755, 0o600, 0o777, 0])), content);
      if (add(dir, leaf) && !(content.type === "chardev" && content.rdev === 0)) linkable.push(leaf);
    }
  }
  return root;
}
