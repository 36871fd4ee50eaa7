// Dumpfile parser (docs/dumpfile.md, composefs-dump(5)) building the file tree of lib/tree/tree.ts.
// Acceptance follows C mkcomposefs 1.0.8 (the authority for what a dumpfile may hold), with stricter
// path rules: paths must be canonical. Notable C-compatible rules:
// - a hard link (`@` MODE) names its target in PAYLOAD; targets are resolved after all lines are read,
//   may be hard-link lines themselves (chains are followed), never directories, never the link itself;
// - the inode of a hard-linked file belongs to its full (non-`@`) line: leaf.canonicalPath = that path;
// - regular files: CONTENT (≤ 5000 bytes, length = SIZE) → inline; SIZE 0 → empty inline; else external
//   (DIGEST + PAYLOAD), or "external-noverity" (PAYLOAD only, or neither = sparse); SIZE ≤ 2^53
//   (C caps the chunk index of a non-inline file at 1024 chunks of 2^43 bytes);
// - NLINK and directory SIZE are ignored; RDEV is ignored for non-devices (rejected in strict mode);
//   symlink SIZE is ignored (must equal the target length in strict mode);
// - xattrs: key 1..255 bytes, value ≤ 65535 bytes, per-inode budget as C (Σ(7 + key + value) + 12 ≤
//   32767, counting every occurrence), whole xattr section ≤ 65535 bytes; a repeated key replaces.
// Errors are FormatError with "line N" in their context. The parser builds the columns of lib/tree/flat.ts
// (no object per entry); parseDumpfile* give the object tree of them.
import { FormatError } from "../errors.ts";
import { type HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import type { Directory } from "../tree/tree.ts";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "../tree/tree.ts";
import { flatToTree, FlatTree, REG_EXTERNAL, REG_INLINE, REG_NOVERITY } from "../tree/flat.ts";
import { unescapeField, unescapeOptional } from "./escape.ts";
import { bstrToBytes, latin1ToBstr } from "../util/bytes.ts";

export interface ParseOptions {
  /** C `CFS_PARSE_STRICT`: also reject RDEV ≠ 0 on non-devices, symlink SIZE ≠ target length,
   *  symlink CONTENT, and a last line without a newline. */
  strict?: boolean;
  /** Digest algorithm DIGEST fields must use; default: inferred from each digest's length. */
  alg?: HashAlgorithm;
  /** Longest accepted line in bytes (hostile input guard); default 1 MiB. */
  maxLineLength?: number;
}

/** Largest inline content C mkcomposefs accepts. */
export const INLINE_CONTENT_MAX = 5000;
/** Largest non-inline regular file: 1024 chunk indexes of 2^43 bytes (C's one-block chunk table). */
export const MAX_EXTERNAL_SIZE = 2 ** 53;
export const PATH_MAX_BYTES = 4096;
export const NAME_MAX_BYTES = 255;
/** Symlink targets: < PATH_MAX like C (`longlink.dump` has 4095). */
export const SYMLINK_MAX_BYTES = 4095;
export const XATTR_NAME_MAX = 255;
export const XATTR_VALUE_MAX = 65535;
/** C's budget for xattrs read from external input (LCFS_INODE_EXTERNAL_XATTR_MAX). */
const XATTR_BUDGET = 32767;
const XATTR_SECTION_MAX = 65535;
const DEFAULT_MAX_LINE = 1 << 20;
/** #knownDir's answer for a path that is no directory met so far. */
const NOT_KNOWN = -2;
/** Shortest string V8 makes a slice of (pointing into its parent) rather than a copy. */
const SLICED_MIN = 13;
const READ_BUFFER = 1 << 20;
const U32_MAX = 0xffffffff;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

interface PendingLink {
  lineNo: number;
  /** The `@` line's entry. */
  entry: number;
  target: string;
  /** The entry owning the inode it links to, once resolved. */
  resolved?: number;
}

function lineError(lineNo: number, msg: string): FormatError {
  return new FormatError(msg, { context: [`line ${lineNo}`] });
}

const DIGITS = /^[0-9]+$/;
const OCTAL = /^[0-7]+$/;
const MTIME = /^(-?[0-9]+)\.([0-9]+)$/;

/** Unsigned decimal within `max` (≤ 2^53). */
function parseUnsigned(s: string, what: string, max: number): number {
  if (!DIGITS.test(s) || s.length > 16) throw new FormatError(`invalid ${what} ${JSON.stringify(s)}`);
  const v = Number(s);
  if (v > max) throw new FormatError(`${what} ${s} out of range (max ${max})`);
  return v;
}

/** SIZE: any u64; values above 2^53 come back as Infinity (only non-inline files care). */
function parseSize(s: string): number {
  if (!DIGITS.test(s)) throw new FormatError(`invalid SIZE ${JSON.stringify(s)}`);
  if (s.length <= 15) return Number(s);
  const b = BigInt(s);
  if (b > 0xffffffffffffffffn) throw new FormatError(`SIZE ${s} out of range`);
  return b > BigInt(MAX_EXTERNAL_SIZE) ? Infinity : Number(b);
}

/** Checks a canonical absolute path (byte string); returns its components ([] for "/"). */
function checkPath(p: string): string[] {
  if (p.length === 0) throw new FormatError("empty path");
  if (p.length > PATH_MAX_BYTES) throw new FormatError(`path longer than ${PATH_MAX_BYTES} bytes`);
  if (p.charCodeAt(0) !== 0x2f) throw new FormatError(`path ${JSON.stringify(p)} is not absolute`);
  if (p.includes("\0")) throw new FormatError("NUL byte in path");
  if (p === "/") return [];
  const parts = p.slice(1).split("/");
  for (const c of parts) {
    if (c === "") throw new FormatError(`path ${JSON.stringify(p)} has an empty component (not canonical)`);
    if (c === "." || c === "..") throw new FormatError(`invalid "." or ".." in path ${JSON.stringify(p)}`);
    if (c.length > NAME_MAX_BYTES) {
      throw new FormatError(`file name longer than ${NAME_MAX_BYTES} bytes in path`);
    }
  }
  return parts;
}

/** A path component s[a, b): 1..255 bytes, not "." or "..". */
function goodComponent(s: string, a: number, b: number): boolean {
  const n = b - a;
  if (n === 0 || n > NAME_MAX_BYTES) return false;
  if (s.charCodeAt(a) !== 0x2e) return true;
  return !(n === 1 || (n === 2 && s.charCodeAt(a + 1) === 0x2e));
}

/** Unsigned decimal s[a, b) of 1..15 digits, or -1. */
function decimalAt(s: string, a: number, b: number): number {
  if (b <= a || b - a > 15) return -1;
  let v = 0;
  for (let i = a; i < b; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** Octal s[a, b) of 1..11 digits within u32, or -1. */
function octalAt(s: string, a: number, b: number): number {
  if (b <= a || b - a > 11) return -1;
  let v = 0;
  for (let i = a; i < b; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 7) return -1;
    v = v * 8 + d;
  }
  return v > U32_MAX ? -1 : v;
}

/** An optional field without escapes: `-` → null, else the text. */
function optionalAt(s: string, a: number, b: number): string | null {
  return b === a + 1 && s.charCodeAt(a) === 0x2d ? null : s.slice(a, b);
}

/** Splits `line` at single spaces into the 11 fixed fields (missing ones are "", as C does) and the
 *  rest (xattrs). */
function splitFields(line: string): { f: string[]; rest: string } {
  const f: string[] = new Array(11);
  let pos = 0;
  const n = line.length;
  for (let i = 0; i < 11; i++) {
    if (pos > n) {
      f[i] = "";
      continue;
    }
    let sp = line.indexOf(" ", pos);
    if (sp < 0) sp = n;
    f[i] = line.slice(pos, sp);
    pos = sp + 1;
  }
  return { f, rest: pos > n ? "" : line.slice(pos) };
}

/** The fields of one non-hard-link line once parsed (one record, reused line after line). */
interface NodeFields {
  type: number;
  mode: number;
  size: number;
  uid: number;
  gid: number;
  rdev: number;
  mtimeSec: number | bigint;
  mtimeNsec: number;
  payload: string | null;
  content: string | null;
  digestHex: string | null;
  /** The xattr text after the 11 fixed fields. */
  rest: string;
}

/** MTIME `SECONDS.NANOSECONDS` into `n`: seconds any signed 64-bit value, as EROFS holds (C wraps
 *  values beyond; we refuse them), a bigint outside the safe-integer range. */
function parseMtime(field: string, n: NodeFields): void {
  const m = MTIME.exec(field);
  if (!m) throw new FormatError(`invalid MTIME ${JSON.stringify(field)} (expected SECONDS.NANOSECONDS)`);
  let sec: number | bigint = Number(m[1]);
  if (!Number.isSafeInteger(sec)) {
    if (m[1].length > 21) {
      throw new FormatError(`MTIME seconds ${m[1].slice(0, 24)} out of range (signed 64-bit)`);
    }
    sec = BigInt(m[1]);
    if (sec > I64_MAX || sec < I64_MIN) {
      throw new FormatError(`MTIME seconds ${m[1]} out of range (signed 64-bit)`);
    }
  }
  if (m[2].length > 10 || Number(m[2]) >= 1e9) {
    throw new FormatError(`MTIME nanoseconds ${m[2]} not below 10^9`);
  }
  n.mtimeSec = sec;
  n.mtimeNsec = Number(m[2]);
}

/** Builds a tree from dumpfile lines fed one at a time. */
export class DumpfileParser {
  #opts: ParseOptions;
  #strict: boolean;
  #t = new FlatTree();
  #hasRoot = false;
  /** Directory path → entry. */
  #dirs = new Map<string, number>();
  #links: PendingLink[] = [];
  /** `@` entries → their link. */
  #linkOf = new Map<number, PendingLink>();
  /** Names under directories whose entries came out of byte order (duplicates are looked up here). */
  #names = new Map<number, Set<string>>();
  /** Entries whose name / text (payload, symlink target) is a slice of the text being parsed. */
  #slicedName: number[] = [];
  #slicedText: number[] = [];
  #lineNo = 0;
  #entries = 0;
  /** The directory that took the last entry, and its path: dumpfiles list siblings together, so
   *  most parent lookups are one string comparison instead of a slice and a hash lookup. */
  #lastDir = 0;
  #lastDirPath = "";
  /** Field boundaries of the line being parsed by the fast path (reused: no per-line array). */
  readonly #ends = new Int32Array(11);
  /** The string the fast path last scanned, and its next NUL and backslash at or after the line
   *  being parsed (-1: none left): found once per chunk, not once per line. */
  #scanned = "";
  #nul = -1;
  #backslash = -1;
  readonly #node: NodeFields = {
    type: 0,
    mode: 0,
    size: 0,
    uid: 0,
    gid: 0,
    rdev: 0,
    mtimeSec: 0,
    mtimeNsec: 0,
    payload: null,
    content: null,
    digestHex: null,
    rest: "",
  };

  constructor(opts: ParseOptions = {}) {
    this.#opts = opts;
    this.#strict = opts.strict === true;
  }

  /** Number of entries (lines) added so far. */
  get entries(): number {
    return this.#entries;
  }

  /** Adds one line (byte string, without its newline). Blank lines are skipped. */
  addLine(line: string, lineNo = this.#lineNo + 1): void {
    this.addLineAt(line, 0, line.length, lineNo);
  }

  /** Adds the line `s[start, end)` (byte string, without its newline). Blank lines are skipped. */
  addLineAt(s: string, start: number, end: number, lineNo = this.#lineNo + 1): void {
    this.#lineNo = lineNo;
    if (end <= start) return;
    try {
      if (!this.#addLineFast(s, start, end)) this.#addLine(s.slice(start, end));
    } catch (e) {
      // Errors of the line's fields carry no context yet: they get the line number here.
      if (e instanceof FormatError && e.context.length === 0) throw e.within(`line ${lineNo}`);
      throw e;
    }
    this.#entries++;
  }

  /**
   * The common line shape, parsed in place from char codes: a canonical path without escapes, no
   * hard link, plain decimal numbers, a non-negative MTIME, PAYLOAD/CONTENT without escapes.
   * Returns false, having changed nothing, for anything else; the general path then handles the
   * line (and reports its errors).
   */
  #addLineFast(s: string, start: number, end: number): boolean {
    // Field ends, NUL/escape bail-outs and the path's canonical form, found with native indexOf
    // rather than a loop over every char (which cost ~80 ms of the 190 ms parse of cs9-developer
    // in a fresh process: per-line loops run unoptimized for thousands of lines).
    if (s.charCodeAt(start) !== 0x2f) return false;
    if (s !== this.#scanned) {
      this.#scanned = s;
      this.#nul = s.indexOf("\0", start);
      this.#backslash = s.indexOf("\\", start);
    }
    if (this.#nul !== -1 && this.#nul < start) this.#nul = s.indexOf("\0", start);
    if (this.#nul !== -1 && this.#nul < end) return false;
    const ends = this.#ends;
    let f = 0, i = end, pos = start + 1;
    for (; f < 11; f++) {
      const sp = s.indexOf(" ", pos);
      if (sp < 0 || sp >= end) break;
      ends[f] = sp;
      pos = sp + 1;
    }
    if (f === 11) i = ends[10];
    else if (f === 10) ends[10] = end;
    else return false;
    // A backslash (escape) in PATH, PAYLOAD or CONTENT needs the general path; in the numeric
    // fields it fails their parse below; DIGEST and the xattrs may hold one.
    if (this.#backslash !== -1 && this.#backslash < start) this.#backslash = s.indexOf("\\", start);
    if (this.#backslash !== -1 && this.#backslash < ends[9]) return false;
    const pathEnd = ends[0];
    // Only the last component needs checking: the rest must be the path of a directory met before,
    // which was checked on its own line (any other path gets the general path's checks and messages).
    const lastSlash = s.lastIndexOf("/", pathEnd - 1);
    const isRoot = pathEnd === start + 1;
    if (!isRoot && !goodComponent(s, lastSlash + 1, pathEnd)) return false;
    if (pathEnd - start > PATH_MAX_BYTES) return false;
    const parent = isRoot ? -1 : this.#knownDir(s, start, lastSlash);
    if (parent === NOT_KNOWN) return false;

    const n = this.#node;
    const size = decimalAt(s, pathEnd + 1, ends[1]);
    const mode = octalAt(s, ends[1] + 1, ends[2]);
    if (size < 0 || mode < 0) return false;
    const type = mode & S_IFMT;
    if (!isValidType(type)) return false;
    if (decimalAt(s, ends[2] + 1, ends[3]) < 0) return false; // NLINK
    const uid = decimalAt(s, ends[3] + 1, ends[4]);
    const gid = decimalAt(s, ends[4] + 1, ends[5]);
    const rdev = decimalAt(s, ends[5] + 1, ends[6]);
    if (uid < 0 || uid > U32_MAX || gid < 0 || gid > U32_MAX || rdev < 0) return false;
    const dot = s.indexOf(".", ends[6] + 1);
    if (dot < 0 || dot >= ends[7]) return false;
    const mtimeSec = decimalAt(s, ends[6] + 1, dot);
    if (mtimeSec < 0 || ends[7] - dot - 1 > 9) return false;
    const mtimeNsec = decimalAt(s, dot + 1, ends[7]);
    if (mtimeNsec < 0) return false;
    const rest = i < end ? s.slice(i + 1, end) : "";
    // Accepted: from here on errors are the line's own.
    n.type = type;
    n.mode = mode;
    n.size = size;
    n.uid = uid;
    n.gid = gid;
    n.rdev = rdev;
    n.mtimeSec = mtimeSec;
    n.mtimeNsec = mtimeNsec;
    n.payload = optionalAt(s, ends[7] + 1, ends[8]);
    n.content = optionalAt(s, ends[8] + 1, ends[9]);
    const d0 = ends[9] + 1, d1 = ends[10];
    n.digestHex = d1 === d0 || (d1 === d0 + 1 && s.charCodeAt(d0) === 0x2d) ? null : s.slice(d0, d1);
    n.rest = rest;
    this.#checkRoot(isRoot, type, false);
    this.#addNode(s, start, pathEnd, lastSlash, n, parent);
    return true;
  }

  #checkRoot(isRoot: boolean, type: number, isLink: boolean): void {
    if (isRoot) {
      if (this.#hasRoot) throw new FormatError("more than one root (/) line");
      if (type !== S_IFDIR || isLink) throw new FormatError("the root must be a directory");
    } else if (!this.#hasRoot) {
      throw new FormatError("the first line must be the root directory /");
    }
  }

  #addLine(line: string): void {
    const nul = line.indexOf("\0");
    if (nul >= 0) throw new FormatError(`NUL byte at position ${nul}`);
    const { f, rest } = splitFields(line);
    const path = unescapeField(f[0], "PATH");
    const parts = checkPath(path);

    let modeField = f[2];
    const isLink = modeField.startsWith("@");
    if (isLink) modeField = modeField.slice(1);
    if (!OCTAL.test(modeField) || modeField.length > 11) {
      throw new FormatError(`invalid MODE ${JSON.stringify(f[2])}`);
    }
    const mode = parseInt(modeField, 8);
    if (mode > U32_MAX) throw new FormatError(`MODE ${f[2]} out of range`);
    const type = mode & S_IFMT;
    if (!isValidType(type)) throw new FormatError(`invalid file type in MODE ${f[2]}`);

    this.#checkRoot(parts.length === 0, type, isLink);
    if (isLink) {
      this.#addHardLink(path, parts, type, f[8]);
      return;
    }
    const n = this.#node;
    n.type = type;
    n.mode = mode;
    n.size = parseSize(f[1]);
    parseUnsigned(f[3], "NLINK", U32_MAX);
    n.uid = parseUnsigned(f[4], "UID", U32_MAX);
    n.gid = parseUnsigned(f[5], "GID", U32_MAX);
    // EROFS keeps 32 bits of a device number (C truncates bigger ones silently; we refuse them).
    if (f[6].length > 15 && DIGITS.test(f[6])) {
      throw new FormatError(`RDEV ${f[6]} does not fit the 32-bit EROFS encoding`);
    }
    n.rdev = parseUnsigned(f[6], "RDEV", Number.MAX_SAFE_INTEGER);
    parseMtime(f[7], n);
    n.payload = unescapeOptional(f[8], "PAYLOAD");
    n.content = unescapeOptional(f[9], "CONTENT");
    n.digestHex = f[10] === "-" || f[10] === "" ? null : f[10];
    n.rest = rest;
    this.#addNode(path, 0, path.length, path.lastIndexOf("/"), n);
  }

  /** A `@` line: an entry whose inode finish() resolves from the target (PAYLOAD field `target`). */
  #addHardLink(path: string, parts: string[], type: number, targetField: string): void {
    if (type === S_IFDIR) throw new FormatError("directories can't be hard links");
    const target = unescapeOptional(targetField, "PAYLOAD");
    if (!target) throw new FormatError("hard link without a target path");
    if (target.includes("\0")) throw new FormatError("NUL byte in hard link target");
    const parent = this.#parentOf(path, 0, path.length, path.lastIndexOf("/"));
    const entry = this.#addEntry(parent, parts[parts.length - 1], type, path, 0, path.length);
    if (this.#t.name[entry].length >= SLICED_MIN) this.#slicedName.push(entry);
    const link: PendingLink = { lineNo: this.#lineNo, entry, target };
    this.#links.push(link);
    this.#linkOf.set(entry, link);
  }

  /** A new entry `name` under `parent` (its path s[start, end) for the message of a duplicate). */
  #addEntry(parent: number, name: string, mode: number, s: string, start: number, end: number): number {
    const t = this.#t;
    const e = t.add(parent, name, mode);
    // Names in byte order so far (C-written dumpfiles): no duplicate possible.
    if (t.unsorted[parent] === 0) return e;
    let names = this.#names.get(parent);
    if (names === undefined) {
      // The first out of order: from now on a set of the names here.
      names = new Set();
      for (let c = t.firstChild[parent]; c !== e; c = t.nextSibling[c]) names.add(t.name[c]);
      this.#names.set(parent, names);
    }
    if (names.has(name)) throw new FormatError(`path ${JSON.stringify(s.slice(start, end))} already exists`);
    names.add(name);
    return e;
  }

  /** Adds a parsed non-hard-link entry at path `s[start, end)`, whose last "/" is at `cut`. */
  /** `knownParent`: the parent's entry when the caller found it (the fast path). */
  #addNode(s: string, start: number, end: number, cut: number, n: NodeFields, knownParent = NOT_KNOWN): void {
    const { type, mode, uid, gid, rdev, mtimeSec, mtimeNsec, content, digestHex, rest } = n;
    const strict = this.#strict;
    if (type !== S_IFCHR && type !== S_IFBLK && rdev !== 0 && strict) {
      throw new FormatError("non-zero RDEV on a non-device");
    }
    if (type !== S_IFREG) {
      if (content !== null && content.length > 0 && (type !== S_IFLNK || strict)) {
        throw new FormatError("CONTENT is only allowed for regular files");
      }
      if (digestHex !== null) throw new FormatError("DIGEST is only allowed for regular files");
    }
    // Most entries have no xattrs: they keep the shared empty map.
    const xattrs = rest.length > 0 ? new Map<string, Uint8Array>() : undefined;
    if (xattrs !== undefined) this.#parseXattrs(rest, xattrs);
    const t = this.#t;
    let e: number;
    if (end - start === 1) {
      e = t.add(-1, "", mode);
      this.#hasRoot = true;
      this.#dirs.set("/", e);
    } else {
      const parent = knownParent >= 0 ? knownParent : this.#parentOf(s, start, end, cut);
      e = this.#addEntry(parent, s.slice(cut + 1, end), mode, s, start, end);
      if (end - cut > SLICED_MIN) this.#slicedName.push(e);
      if (type === S_IFDIR) this.#dirs.set(s.slice(start, end), e);
    }
    t.uid[e] = uid;
    t.gid[e] = gid;
    if (typeof mtimeSec === "number") {
      t.mtimeSec[e] = mtimeSec;
    } else {
      t.mtimeSec[e] = Number(mtimeSec);
      t.mtimeExact.set(e, mtimeSec);
    }
    t.mtimeNsec[e] = mtimeNsec;
    if (xattrs !== undefined) t.xattrs[e] = xattrs;
    if (type !== S_IFDIR) this.#leafContent(e, n);
  }

  /** Validates and stores the content of a leaf entry e. */
  #leafContent(e: number, n: NodeFields): void {
    const { type, size, rdev, payload, content, digestHex } = n;
    const t = this.#t;
    switch (type) {
      case S_IFREG: {
        t.size[e] = size;
        if (content !== null) {
          if (content.length !== size) {
            throw new FormatError(`CONTENT length ${content.length} does not match SIZE ${size}`);
          }
          if (content.length > INLINE_CONTENT_MAX) {
            throw new FormatError(
              `inline CONTENT of ${content.length} bytes exceeds the maximum of ${INLINE_CONTENT_MAX}`,
            );
          }
          t.kind[e] = REG_INLINE;
          if (size > 0) t.inline[e] = bstrToBytes(content);
          return;
        }
        if (size === 0) return; // REG_INLINE, empty
        if (size > MAX_EXTERNAL_SIZE) {
          throw new FormatError(`file too big: SIZE exceeds 2^53 bytes (C mkcomposefs limit)`);
        }
        const backing = payload === null || payload === "" ? undefined : payload;
        if (backing !== undefined) checkPayload(backing);
        if (digestHex !== null) {
          if (backing === undefined) throw new FormatError("DIGEST without a PAYLOAD (backing path)");
          const id = parseDigest(digestHex, this.#opts.alg);
          t.kind[e] = REG_EXTERNAL;
          t.id[e] = id;
          if (backing !== id.objectPath()) {
            t.text[e] = backing;
            if (backing.length >= SLICED_MIN) this.#slicedText.push(e);
          }
          return;
        }
        t.kind[e] = REG_NOVERITY;
        t.text[e] = backing;
        if (backing !== undefined && backing.length >= SLICED_MIN) this.#slicedText.push(e);
        return;
      }
      case S_IFLNK: {
        if (payload === null || payload === "") throw new FormatError("symlink without a target (PAYLOAD)");
        if (payload.length > SYMLINK_MAX_BYTES) {
          throw new FormatError(
            `symlink target of ${payload.length} bytes exceeds the maximum of ${SYMLINK_MAX_BYTES}`,
          );
        }
        if (payload.includes("\0")) throw new FormatError("NUL byte in symlink target");
        if (this.#strict && size !== payload.length) {
          throw new FormatError(`symlink SIZE ${size} does not match the target length ${payload.length}`);
        }
        t.size[e] = 0;
        t.text[e] = payload;
        if (payload.length >= SLICED_MIN) this.#slicedText.push(e);
        return;
      }
      case S_IFCHR:
      case S_IFBLK:
        t.rdev[e] = rdev;
    }
  }

  #parseXattrs(rest: string, into: Map<string, Uint8Array>): void {
    if (rest.length === 0) return;
    if (rest.length > XATTR_SECTION_MAX) {
      throw new FormatError(`too many xattrs (${rest.length} bytes of xattr text)`);
    }
    const items = rest.split(" ");
    // One trailing space is tolerated (C does), other empty items are malformed.
    if (items[items.length - 1] === "") items.pop();
    let budget = 12;
    for (const item of items) {
      const eq = item.indexOf("=");
      if (eq < 0) throw new FormatError(`missing '=' in xattr ${JSON.stringify(item.slice(0, 64))}`);
      const key = unescapeField(item.slice(0, eq), "xattr name");
      const value = unescapeField(item.slice(eq + 1), "xattr value");
      if (key.length === 0) throw new FormatError("empty xattr name");
      if (key.length > XATTR_NAME_MAX) {
        throw new FormatError(`xattr name longer than ${XATTR_NAME_MAX} bytes`);
      }
      if (key.includes("\0")) throw new FormatError("NUL byte in xattr name");
      if (value.length > XATTR_VALUE_MAX) {
        throw new FormatError(`xattr value longer than ${XATTR_VALUE_MAX} bytes`);
      }
      budget += 7 + key.length + value.length;
      if (budget > XATTR_BUDGET) throw new FormatError(`xattrs too large (more than ${XATTR_BUDGET} bytes)`);
      into.delete(key);
      into.set(key, bstrToBytes(value));
    }
  }

  /** The directory entry at path `s[start, cut)` ("" = the root), or NOT_KNOWN. */
  #knownDir(s: string, start: number, cut: number): number {
    if (cut === start) return this.#hasRoot ? 0 : NOT_KNOWN;
    const last = this.#lastDirPath;
    if (cut - start === last.length && s.startsWith(last, start)) return this.#lastDir;
    const parentPath = s.slice(start, cut);
    const dir = this.#dirs.get(parentPath);
    if (dir === undefined) return NOT_KNOWN;
    this.#lastDir = dir;
    this.#lastDirPath = parentPath;
    return dir;
  }

  /** The directory entry holding the entry at path `s[start, end)`, whose last "/" is at `cut`. */
  #parentOf(s: string, start: number, end: number, cut: number): number {
    if (cut === start) return 0;
    const last = this.#lastDirPath;
    if (cut - start === last.length && s.startsWith(last, start)) return this.#lastDir;
    const parentPath = s.slice(start, cut);
    const dir = this.#dirs.get(parentPath);
    if (dir !== undefined) {
      this.#lastDir = dir;
      this.#lastDirPath = parentPath;
      return dir;
    }
    const path = s.slice(start, end);
    // Not a known directory: tell "missing" from "not a directory".
    const parts = path.slice(1).split("/");
    const t = this.#t;
    let node = 0;
    for (let i = 0; i < parts.length - 1 && node >= 0; i++) {
      node = (t.mode[node] & S_IFMT) === S_IFDIR && !this.#linkOf.has(node) ? t.child(node, parts[i]) : -1;
    }
    if (node >= 0) throw new FormatError(`parent of ${JSON.stringify(path)} is not a directory`);
    throw new FormatError(`parent directory of ${JSON.stringify(path)} is missing`);
  }

  /**
   * Called after each chunk of text: the names and texts kept from it become slices of one string
   * holding just them, so that the chunk (1 MiB, mostly numeric fields) is not kept alive by its
   * slices. V8 copies slices shorter than 13 chars; longer ones point into their parent string.
   */
  compact(): void {
    const t = this.#t, names = this.#slicedName, texts = this.#slicedText;
    if (names.length + texts.length === 0) return;
    const parts: string[] = [];
    for (const e of names) parts.push(t.name[e]);
    for (const e of texts) parts.push(t.text[e]!);
    const joined = parts.join("");
    let off = 0;
    for (const e of names) t.name[e] = joined.slice(off, off += t.name[e].length);
    for (const e of texts) t.text[e] = joined.slice(off, off += t.text[e]!.length);
    names.length = 0;
    texts.length = 0;
  }

  /** Resolves hard links and returns the tree. Call once, after the last line. */
  finish(): FlatTree {
    if (!this.#hasRoot) throw new FormatError("dumpfile has no root (/) entry");
    const t = this.#t;
    const lookup = new ChildLookup(t);
    for (const link of this.#links) this.#resolve(link, lookup);
    for (const link of this.#links) t.ino[link.entry] = link.resolved!;
    this.#links = [];
    this.#linkOf.clear();
    this.#names.clear();
    t.namesChecked = true;
    return t;
  }

  #resolve(link: PendingLink, lookup: ChildLookup): number {
    if (link.resolved !== undefined) return link.resolved;
    const t = this.#t;
    const seen = new Set<PendingLink>([link]);
    let cur = link;
    for (;;) {
      let node = 0;
      for (const c of cur.target.split("/")) {
        if (c === "") continue;
        node = (t.mode[node] & S_IFMT) === S_IFDIR && !this.#linkOf.has(node) ? lookup.child(node, c) : -1;
        if (node < 0) break;
      }
      if (node < 0) throw lineError(link.lineNo, `hard link target ${JSON.stringify(cur.target)} not found`);
      const next = this.#linkOf.get(node);
      if (next === undefined && (t.mode[node] & S_IFMT) === S_IFDIR) {
        throw lineError(link.lineNo, `hard link target ${JSON.stringify(cur.target)} is a directory`);
      }
      if (next === undefined) return link.resolved = node;
      if (next.resolved !== undefined) return link.resolved = next.resolved;
      if (seen.has(next)) {
        throw lineError(
          link.lineNo,
          next === link && cur === link
            ? `self-referential hard link ${JSON.stringify(link.target)}`
            : `hard link loop through ${JSON.stringify(cur.target)}`,
        );
      }
      seen.add(next);
      cur = next;
    }
  }
}

/** Children by name, indexed per directory on its first lookup (hard-link targets). */
class ChildLookup {
  #t: FlatTree;
  #byDir = new Map<number, Map<string, number>>();
  constructor(t: FlatTree) {
    this.#t = t;
  }
  child(dir: number, name: string): number {
    let m = this.#byDir.get(dir);
    if (m === undefined) {
      const t = this.#t;
      m = new Map();
      for (let c = t.firstChild[dir]; c >= 0; c = t.nextSibling[c]) m.set(t.name[c], c);
      this.#byDir.set(dir, m);
    }
    return m.get(name) ?? -1;
  }
}

function isValidType(t: number): boolean {
  return t === S_IFREG || t === S_IFDIR || t === S_IFLNK || t === S_IFCHR || t === S_IFBLK ||
    t === S_IFIFO || t === S_IFSOCK;
}

function checkPayload(p: string): void {
  if (p.length >= PATH_MAX_BYTES) throw new FormatError(`PAYLOAD longer than ${PATH_MAX_BYTES - 1} bytes`);
  if (p.includes("\0")) throw new FormatError("NUL byte in PAYLOAD");
}

function parseDigest(hex: string, alg?: HashAlgorithm): ObjectId {
  const h = hex.toLowerCase();
  if (!/^[0-9a-f]+$/.test(h) || (h.length !== 64 && h.length !== 128)) {
    throw new FormatError(`invalid DIGEST ${JSON.stringify(hex.slice(0, 140))}`);
  }
  const a: HashAlgorithm = h.length === 64 ? "sha256" : "sha512";
  if (alg && a !== alg) throw new FormatError(`DIGEST is ${a}, expected ${alg}`);
  return ObjectId.fromHex(h, a);
}

/**
 * Splits text chunks (byte strings) into lines and feeds them to a parser, with a line length
 * limit. Lines are parsed in place inside the chunk; only an unfinished last line is carried over,
 * so memory stays bounded by the limit.
 */
class LineFeeder {
  #p: DumpfileParser;
  #max: number;
  #strict: boolean;
  #carry = "";
  #lineNo = 0;

  constructor(p: DumpfileParser, opts: ParseOptions) {
    this.#p = p;
    this.#max = opts.maxLineLength ?? DEFAULT_MAX_LINE;
    this.#strict = opts.strict === true;
  }

  #tooLong(): FormatError {
    return lineError(this.#lineNo + 1, `line longer than ${this.#max} bytes`);
  }

  push(text: string): void {
    const max = this.#max, p = this.#p, n = text.length;
    let start = 0;
    if (this.#carry.length > 0) {
      const nl = text.indexOf("\n");
      if (nl < 0) {
        if (this.#carry.length + n > max) throw this.#tooLong();
        this.#carry += text;
        return;
      }
      const line = this.#carry + text.slice(0, nl);
      this.#carry = "";
      if (line.length > max) throw this.#tooLong();
      p.addLineAt(line, 0, line.length, ++this.#lineNo);
      start = nl + 1;
    }
    while (start < n) {
      const nl = text.indexOf("\n", start);
      if (nl < 0) break;
      if (nl - start > max) throw this.#tooLong();
      p.addLineAt(text, start, nl, ++this.#lineNo);
      start = nl + 1;
    }
    if (start < n) {
      if (n - start > max) throw this.#tooLong();
      this.#carry = text.slice(start);
    }
    p.compact();
  }

  /** Ends the input: a last line without newline is parsed too (rejected in strict mode). */
  end(): void {
    const line = this.#carry;
    if (line.length === 0) return;
    if (this.#strict) throw lineError(this.#lineNo + 1, "missing trailing newline");
    this.#carry = "";
    this.#p.addLineAt(line, 0, line.length, ++this.#lineNo);
    this.#p.compact();
  }
}

const latin1 = latin1ToBstr;

/** Parses a whole dumpfile held in memory into the columns of lib/tree/flat.ts. */
export function parseDumpfileFlatSync(data: Uint8Array | string, opts: ParseOptions = {}): FlatTree {
  const p = new DumpfileParser(opts);
  const lines = new LineFeeder(p, opts);
  lines.push(typeof data === "string" ? data : latin1(data));
  lines.end();
  return p.finish();
}

/** Parses a whole dumpfile held in memory. */
export function parseDumpfileSync(data: Uint8Array | string, opts: ParseOptions = {}): Directory {
  return flatToTree(parseDumpfileFlatSync(data, opts));
}

/** Parses a dumpfile from bytes or a stream of chunks (bounded by the line length limit). */
export async function parseDumpfile(
  input: Uint8Array | string | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: ParseOptions = {},
): Promise<Directory> {
  if (input instanceof Uint8Array || typeof input === "string") return parseDumpfileSync(input, opts);
  const p = new DumpfileParser(opts);
  const lines = new LineFeeder(p, opts);
  for await (const chunk of input) lines.push(latin1(chunk));
  lines.end();
  return flatToTree(p.finish());
}

/** Something to read bytes from, like Deno.FsFile or Deno.stdin. */
export interface ByteReader {
  read(into: Uint8Array): Promise<number | null>;
}

/**
 * Parses a dumpfile read straight from `reader` through one reused 1 MiB buffer into the columns of
 * lib/tree/flat.ts: no stream machinery between the reads and the parser (measured: reading
 * cs9-developer's 8.7 MB from a file took 19–48 ms through `readable`, 3–25 ms this way), and memory
 * stays bounded as with a stream.
 */
export async function parseDumpfileFlatFrom(reader: ByteReader, opts: ParseOptions = {}): Promise<FlatTree> {
  const p = new DumpfileParser(opts);
  const lines = new LineFeeder(p, opts);
  const buf = new Uint8Array(READ_BUFFER);
  for (;;) {
    const n = await reader.read(buf);
    if (n === null) break;
    if (n > 0) lines.push(latin1(buf.subarray(0, n)));
  }
  lines.end();
  return p.finish();
}

/** parseDumpfileFlatFrom as an object tree. */
export async function parseDumpfileFrom(reader: ByteReader, opts: ParseOptions = {}): Promise<Directory> {
  return flatToTree(await parseDumpfileFlatFrom(reader, opts));
}
