// Tar fixtures made by independent tools (GNU tar, Python's tarfile) plus the facts to check them
// against: the source tree's lstat() as Python sees it, or the values the Python script set.
import { createHash } from "node:crypto";
import { ByteSource } from "../../lib/oci/tar/byte_source.ts";
import type { TarEntry } from "../../lib/oci/tar/entry.ts";
import { TarReader } from "../../lib/oci/tar/reader.ts";
import { concatBytes } from "../../lib/util/bytes.ts";

export const isRoot = Deno.uid() === 0;

import { runTool as run } from "./process.ts";
export { run };

export function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** What Python's os.lstat() says about one file of a source tree. */
export interface FileFacts {
  type: "file" | "dir" | "symlink" | "chardev" | "blockdev" | "fifo";
  mode: number;
  uid: number;
  gid: number;
  mtime_ns: string; // decimal, may be negative
  size: number;
  rdev: number;
  major: number;
  minor: number;
  target: string; // symlink target as latin1 byte string
  xattrs: Record<string, string>; // name → hex value
  ino: number;
  nlink: number;
}

// Builds a source tree under argv[1] and prints {relpath: facts}. Profile "ustar" avoids what
// ustar cannot hold (names beyond prefix+name, long link targets, negative times, big devices).
const TREE_PY = String.raw`
import os, sys, json, stat
root, profile = sys.argv[1], sys.argv[2]
is_root = os.geteuid() == 0
def w(p, data):
    with open(os.path.join(root, p), "wb") as f: f.write(data)
os.makedirs(os.path.join(root, "a/b"))
rnd = os.urandom
w("empty", b"")
w("one", b"x")
w("a/f64", b"6" * 64)
w("a/f65", b"7" * 65)
w("a/f511", rnd(511)); w("a/f512", rnd(512)); w("a/f513", rnd(513))
w("a/b/f100k", rnd(100 * 1024))
w("a/b/f1500k", rnd(1536 * 1024 + 7))
w("a/dup1", b"same content in two files, longer than sixty-four bytes ..........")
w("a/dup2", b"same content in two files, longer than sixty-four bytes ..........")
os.symlink("../one", os.path.join(root, "a/lnk"))
os.link(os.path.join(root, "a/f65"), os.path.join(root, "a/hard65"))
os.mkfifo(os.path.join(root, "fifo"))
if is_root:
    os.mknod(os.path.join(root, "null"), 0o620 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(root, "sda1"), 0o660 | stat.S_IFBLK, os.makedev(8, 1))
    if profile != "ustar":
        os.mknod(os.path.join(root, "bigdev"), 0o600 | stat.S_IFCHR, os.makedev(4095, 1048575))
os.chmod(os.path.join(root, "a/f511"), 0o4751)
os.chmod(os.path.join(root, "a/f512"), 0o1600)
if profile == "ustar":
    d = "p" * 60 + "/" + "q" * 60
    os.makedirs(os.path.join(root, d))
    w(d + "/" + "n" * 90, b"prefix and name" * 10)
else:
    d = "long" + "d" * 120 + "/" + "e" * 130
    os.makedirs(os.path.join(root, d))
    w(d + "/" + "n" * 200, b"long name" * 20)
    os.symlink("t" * 300, os.path.join(root, "longlink"))
    os.link(os.path.join(root, d + "/" + "n" * 200), os.path.join(root, "hard_to_long"))
    w("negtime", b"n")
    os.utime(os.path.join(root, "negtime"), ns=(0, -1_500_000_000))
    w("a/nonascii-\u00e9\u4e2d", b"utf-8 name")
    os.setxattr(os.path.join(root, "one"), "user.foo", b"bar")
    os.setxattr(os.path.join(root, "one"), "user.empty", b"")
    os.setxattr(os.path.join(root, "a/f65"), "user.bin", bytes(range(256)))
os.utime(os.path.join(root, "one"), ns=(0, 1234567890_123456789))
os.utime(os.path.join(root, "a/f64"), ns=(0, 1700000000_000000001))
out = {}
for dp, dns, fns in os.walk(root):
    for n in [""] + dns + fns:
        p = os.path.join(dp, n) if n else dp
        rel = os.path.relpath(p, root)
        if n == "" and dp != root: continue
        st = os.lstat(p)
        m = st.st_mode
        t = ("dir" if stat.S_ISDIR(m) else "symlink" if stat.S_ISLNK(m) else "file" if stat.S_ISREG(m)
             else "chardev" if stat.S_ISCHR(m) else "blockdev" if stat.S_ISBLK(m) else "fifo")
        xs = {}
        if t != "symlink":
            for x in os.listxattr(p, follow_symlinks=False):
                xs[x] = os.getxattr(p, x, follow_symlinks=False).hex()
        out["/" if rel == "." else "/" + rel] = dict(
            type=t, mode=stat.S_IMODE(m), uid=st.st_uid, gid=st.st_gid, mtime_ns=str(st.st_mtime_ns),
            size=st.st_size if t == "file" else 0, rdev=st.st_rdev, major=os.major(st.st_rdev),
            minor=os.minor(st.st_rdev), target=os.readlink(p).encode().decode("latin1") if t == "symlink" else "",
            xattrs=xs, ino=st.st_ino, nlink=st.st_nlink)
json.dump(out, sys.stdout)
`;

export async function makeSourceTree(
  dir: string,
  profile: "full" | "ustar",
): Promise<Record<string, FileFacts>> {
  const out = await run("python3", ["-c", TREE_PY, dir, profile]);
  const facts = JSON.parse(new TextDecoder().decode(out)) as Record<string, FileFacts>;
  // Keys come from Python as Unicode; our paths are byte strings (latin1 of the UTF-8 bytes).
  const res: Record<string, FileFacts> = {};
  for (const [k, v] of Object.entries(facts)) {
    res[String.fromCharCode(...new TextEncoder().encode(k))] = v;
  }
  return res;
}

/** Runs GNU tar over `dir` (`-C dir .`) and returns the archive bytes. */
export async function gnuTar(
  dir: string,
  format: "gnu" | "posix" | "ustar",
  extra: string[] = [],
): Promise<Uint8Array> {
  const args = [`--format=${format}`, ...extra, "-cf", "-", "-C", dir, "."];
  return await run("tar", args);
}

/** Reads every entry (and its content) with our reader; also returns the reassembled bytes. */
export async function readAll(tar: Uint8Array, chunk = 4096): Promise<{
  entries: { entry: TarEntry; content: Uint8Array }[];
  raw: Uint8Array;
}> {
  async function* chunks() {
    for (let o = 0; o < tar.length; o += chunk) yield tar.subarray(o, o + chunk);
  }
  const r = new TarReader(new ByteSource(chunks()));
  const raw: Uint8Array[] = [];
  const entries: { entry: TarEntry; content: Uint8Array }[] = [];
  for (;;) {
    const h = await r.next();
    if (!h) break;
    raw.push(h.header);
    const parts: Uint8Array[] = [];
    for await (const c of r.content()) parts.push(c.slice());
    const content = concatBytes(parts);
    raw.push(content, await r.padding());
    entries.push({ entry: h.entry, content });
  }
  for await (const c of r.trailer()) raw.push(c.slice());
  return { entries, raw: concatBytes(raw) };
}

/** mtime_ns (decimal string) → [sec, nsec] with 0 ≤ nsec < 1e9. */
export function splitNs(ns: string): [number, number] {
  const n = BigInt(ns);
  let sec = n / 1_000_000_000n;
  let nsec = n % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  return [Number(sec), Number(nsec)];
}

/** Tiny hand-built ustar header, for hostile cases no real tool writes. */
export function ustarHeader(f: {
  name: string;
  type?: string;
  size?: number;
  mode?: number;
  mtime?: number;
  linkname?: string;
  prefix?: string;
  sizeField?: Uint8Array;
  badChecksum?: boolean;
}): Uint8Array {
  const b = new Uint8Array(512);
  const put = (off: number, s: string) => {
    for (let i = 0; i < s.length; i++) b[off + i] = s.charCodeAt(i);
  };
  const oct = (off: number, len: number, v: number) => put(off, v.toString(8).padStart(len - 1, "0"));
  put(0, f.name);
  oct(100, 8, f.mode ?? 0o644);
  oct(108, 8, 0);
  oct(116, 8, 0);
  if (f.sizeField) b.set(f.sizeField, 124);
  else oct(124, 12, f.size ?? 0);
  oct(136, 12, f.mtime ?? 0);
  b[156] = (f.type ?? "0").charCodeAt(0);
  put(157, f.linkname ?? "");
  put(257, "ustar\u000000");
  if (f.prefix) put(345, f.prefix);
  put(148, "        ");
  let sum = 0;
  for (const x of b) sum += x;
  put(148, (f.badChecksum ? sum + 1 : sum).toString(8).padStart(6, "0") + "\u0000 ");
  return b;
}

/** A header followed by its content and padding. */
export function tarMember(h: Parameters<typeof ustarHeader>[0], content: Uint8Array = new Uint8Array(0)) {
  const pad = (512 - (content.length % 512)) % 512;
  return concatBytes([ustarHeader({ size: content.length, ...h }), content, new Uint8Array(pad)]);
}

/** A PAX `x` header carrying `records` (key → value bytes or text). */
export function paxMember(records: [string, string | Uint8Array][], type = "x"): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const [k, v] of records) {
    const val = typeof v === "string" ? enc.encode(v) : v;
    const body = concatBytes([enc.encode(" " + k + "="), val, enc.encode("\n")]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(enc.encode(String(len)), body);
  }
  return tarMember({ name: "././@PaxHeader", type }, concatBytes(parts));
}

export const END = new Uint8Array(1024);
