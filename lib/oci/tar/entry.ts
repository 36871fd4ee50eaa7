// One tar entry as the layer code sees it: normalised path, kind, stat fields, xattrs, link target.
import { FormatError } from "../../errors.ts";

export type TarEntryKind =
  | "file" // typeflag '0', NUL, or '7' (contiguous file)
  | "hardlink" // '1'
  | "symlink" // '2'
  | "chardev" // '3'
  | "blockdev" // '4'
  | "dir" // '5'
  | "fifo" // '6'
  | "unsupported"; // anything else (GNU dumpdir 'D', volume label 'V', vendor types…)

export interface TarEntry {
  /** Absolute normalised path (byte string): "/" for the root, never a trailing "/". */
  path: string;
  kind: TarEntryKind;
  /** The raw typeflag character ("\0" for the old regular-file NUL). */
  typeflag: string;
  /** The header's mode field as stored (not masked: some writers include file-type bits). */
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  /** The exact seconds when they lie beyond ±2^53 (PAX or base-256 mtime); `mtimeSec` is then the nearest double. */
  mtimeSecExact?: bigint;
  /** From a PAX `mtime` fraction, else 0. */
  mtimeNsec: number;
  /** Bytes of content following the header (PAX `size` wins over the header field). */
  size: number;
  /** Symlink: target verbatim. Hard link: target path normalised like `path`. Otherwise "". */
  linkTarget: string;
  /** chr/blk only: Linux makedev(major, minor); 0 otherwise. */
  rdev: number;
  devMajor: number;
  devMinor: number;
  /** xattr name (byte string) → value, from `SCHILY.xattr.*` (and `LIBARCHIVE.xattr.*`). */
  xattrs: Map<string, Uint8Array>;
}

export const MAX_PATH = 4096;

/**
 * Normalises a tar path (docs/oci.md#tar): leading "/" dropped then one prepended, empty and "." components
 * skipped (so "./x", "x/", "a//b" work), ".." refused.
 */
export function normalizeTarPath(raw: string, what = "path"): string {
  if (raw.length > MAX_PATH) throw new FormatError(`tar ${what} is longer than ${MAX_PATH} bytes`);
  const parts: string[] = [];
  for (const p of raw.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") throw new FormatError(`tar ${what} ${JSON.stringify(raw)} contains a ".." component`);
    parts.push(p);
  }
  return "/" + parts.join("/");
}

export function kindOfTypeflag(t: string): TarEntryKind {
  switch (t) {
    case "0":
    case "\0":
    case "7":
      return "file";
    case "1":
      return "hardlink";
    case "2":
      return "symlink";
    case "3":
      return "chardev";
    case "4":
      return "blockdev";
    case "5":
      return "dir";
    case "6":
      return "fifo";
    default:
      return "unsupported";
  }
}
