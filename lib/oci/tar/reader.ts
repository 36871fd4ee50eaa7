// Streaming tar reader. For each entry it hands out the exact header bytes it consumed (stray zero
// blocks, PAX `g`/`x` and GNU `L`/`K` extension headers with their padded payloads, the main
// header), then the content as a stream, then the padding; after the last entry, the end blocks
// and everything after them (GNU record padding). Concatenating all of it reproduces the input.
// Memory: one header block, extension payloads (≤ 1 MiB each, ≤ 16 per entry), a source chunk and
// the global PAX state (bounded for the whole archive).
import { FormatError, InternalError } from "../../errors.ts";
import type { ByteSource } from "./byte_source.ts";
import type { ObjectId } from "../../fsverity/object_id.ts";
import { kindOfTypeflag, MAX_PATH, normalizeTarPath, type TarEntry } from "./entry.ts";
import {
  BLOCK,
  decodeHeader,
  isZeroBlock,
  makedev,
  paddingOf,
  type RawHeader,
  verifyChecksum,
} from "./header.ts";
import { applyPaxRecords, emptyOverrides, parsePaxRecords } from "./pax.ts";
import { concatBytes } from "../../util/bytes.ts";

export const MAX_PAX_SIZE = 1024 * 1024;
export const MAX_LONG_NAME = MAX_PATH;
export const MAX_PENDING_EXTENSIONS = 16;
/** Largest uid/gid an image can hold (32-bit fields of EROFS extended inodes). */
export const MAX_ID = 0xffffffff;
/**
 * PAX global (`g`) headers apply to every later entry, so what they may hold is bounded for the
 * whole archive, not per entry: their payloads in total, and the distinct keys kept from them
 * (a later global record for a key replaces the earlier one; keys without meaning are dropped).
 * Real writers emit one global header (git archive's commit id, Python's pax_headers).
 */
export const MAX_GLOBAL_PAX_TOTAL = 4 * 1024 * 1024;
export const MAX_GLOBAL_PAX_KEYS = 256;

export interface TarReaderOptions {
  /** Honour libarchive's `LIBARCHIVE.xattr.<url-encoded name>=<base64 value>` records (default true). */
  libarchiveXattrs?: boolean;
}

export interface TarHeaderRead {
  entry: TarEntry;
  /** Every byte consumed from the end of the previous entry's padding to the end of the main header. */
  header: Uint8Array;
}

type State = "header" | "content" | "padding" | "end";

/** The extension headers read before an entry's main header. */
interface Extensions {
  /** Local PAX records (x headers), in order. */
  records: [string, Uint8Array][];
  /** x / L / K headers waiting for their entry. */
  local: number;
  /** Extension headers of any kind (g too) since the last entry. */
  pending: number;
  longName?: string;
  longLink?: string;
}

/** Whether a global record can change an entry (path, linkpath and size never apply globally here). */
function globalKeyMatters(key: string, libarchive: boolean): boolean {
  return key === "uid" || key === "gid" || key === "mtime" || key.startsWith("SCHILY.xattr.") ||
    key.startsWith("GNU.sparse.") || (libarchive && key.startsWith("LIBARCHIVE.xattr."));
}

export class TarReader {
  #src: ByteSource;
  #libarchive: boolean;
  #state: State = "header";
  #entry: TarEntry | null = null;
  /** Global PAX records in force, by key (the latest value for each key, in the order last set). */
  #global = new Map<string, Uint8Array>();
  /** #global as a list, rebuilt only after a global header changed it. */
  #globalList: [string, Uint8Array][] = [];
  #globalBytes = 0;
  #endBytes: Uint8Array = new Uint8Array(0);
  entries = 0;

  constructor(source: ByteSource, opts: TarReaderOptions = {}) {
    this.#src = source;
    this.#libarchive = opts.libarchiveXattrs ?? true;
  }

  /** Bytes consumed from the source so far. */
  get offset(): number {
    return this.#src.consumed;
  }

  /** Reads the next entry's headers; null at the end of the archive. Skips unread content. */
  async next(): Promise<TarHeaderRead | null> {
    if (this.#state === "end") return null;
    if (this.#state === "content") { for await (const _ of this.content()); }
    if (this.#state === "padding") await this.padding();

    const raw: Uint8Array[] = [];
    const ext: Extensions = { records: [], local: 0, pending: 0 };
    let block: Uint8Array | null = null;
    for (;;) {
      const start = this.#src.consumed;
      if (!block) {
        block = await this.#read(start);
        if (block.length === 0) {
          // Clean EOF at a header boundary: accepted as the end (no end blocks written).
          if (ext.local > 0) {
            throw this.#err("archive ends after an extension header, before its entry", start);
          }
          return this.#finish(raw);
        }
        if (block.length < BLOCK) throw this.#err(`truncated header block (${block.length} bytes)`, start);
      }
      if (isZeroBlock(block)) {
        const zero = block;
        const after = await this.#read(start + BLOCK);
        if (after.length === 0 || (after.length === BLOCK && isZeroBlock(after))) {
          if (ext.local > 0) {
            throw this.#err("end of archive after an extension header, before its entry", start);
          }
          raw.push(zero);
          if (after.length) raw.push(after);
          return this.#finish(raw);
        }
        if (after.length < BLOCK) {
          throw this.#err(`truncated header block (${after.length} bytes)`, start + BLOCK);
        }
        // A stray single zero block: kept in the raw bytes, then the next block is the header.
        raw.push(zero);
        block = after;
        continue;
      }
      const hdrStart = this.#src.consumed - BLOCK;
      try {
        verifyChecksum(block);
      } catch (e) {
        throw (e as FormatError).within(`tar header at offset ${hdrStart}`);
      }
      let h;
      try {
        h = decodeHeader(block);
      } catch (e) {
        throw (e as FormatError).within(`tar header at offset ${hdrStart}`);
      }
      raw.push(block);
      block = null;
      const t = h.typeflag;
      if (t === "x" || t === "g" || t === "L" || t === "K") {
        await this.#readExtension(h, ext, hdrStart, raw);
        continue;
      }
      if (t === "S") throw this.#err("sparse files (typeflag 'S') are not supported", hdrStart);

      const entry = this.#entryOf(h, ext, hdrStart);
      this.#entry = entry;
      this.#state = "content";
      this.#contentLeft = entry.size;
      this.entries++;
      return { entry, header: raw.length === 1 ? raw[0] : concatBytes(raw) };
    }
  }

  #contentLeft = 0;

  /** One x / g / L / K header's payload: PAX records, globals or a GNU long name, gathered into `ext`. */
  async #readExtension(h: RawHeader, ext: Extensions, hdrStart: number, raw: Uint8Array[]): Promise<void> {
    const t = h.typeflag;
    if (++ext.pending > MAX_PENDING_EXTENSIONS) {
      throw this.#err(`more than ${MAX_PENDING_EXTENSIONS} extension headers before one entry`, hdrStart);
    }
    const limit = t === "x" || t === "g" ? MAX_PAX_SIZE : MAX_LONG_NAME + 1;
    if (h.size > limit) {
      throw this.#err(`'${t}' extension header of ${h.size} bytes exceeds ${limit}`, hdrStart);
    }
    const padded = h.size + paddingOf(h.size);
    const body = await this.#src.readExact(padded, `'${t}' extension header payload`);
    raw.push(body);
    const payload = body.subarray(0, h.size);
    if (t === "g") {
      this.#addGlobal(payload, hdrStart);
      // A global header counts toward the limit but does not need an entry after it.
      return;
    }
    ext.local++;
    if (t === "x") {
      try {
        for (const r of parsePaxRecords(payload)) ext.records.push(r);
      } catch (e) {
        throw (e as FormatError).within(`PAX header at offset ${hdrStart}`);
      }
      return;
    }
    let n = payload.indexOf(0);
    if (n < 0) n = payload.length;
    let s = "";
    for (let i = 0; i < n; i++) s += String.fromCharCode(payload[i]);
    if (s.length > MAX_LONG_NAME) {
      throw this.#err(`GNU long name longer than ${MAX_LONG_NAME}`, hdrStart);
    }
    if (t === "L") ext.longName = s;
    else ext.longLink = s;
  }

  /** The entry a main header describes, with the global and then the local PAX records on top; checked. */
  #entryOf(h: RawHeader, ext: Extensions, hdrStart: number): TarEntry {
    // The main header: global records first, then local ones on top.
    const local = emptyOverrides();
    try {
      applyPaxRecords(local, this.#globalList, { libarchiveXattrs: this.#libarchive });
      applyPaxRecords(local, ext.records, { libarchiveXattrs: this.#libarchive });
    } catch (e) {
      throw (e as FormatError).within(`PAX header before offset ${hdrStart}`);
    }
    if (local.sparse) throw this.#err("GNU sparse files (PAX GNU.sparse.*) are not supported", hdrStart);

    const rawPath = local.path ?? ext.longName ?? h.name;
    const rawLink = local.linkpath ?? ext.longLink ?? h.linkname;
    const kind = kindOfTypeflag(h.typeflag);
    let path: string;
    let linkTarget = "";
    try {
      // The kernel and every C consumer read names as NUL-terminated strings: "/etc\0/shadow"
      // would be "/etc" to them while the dump shows the whole string.
      if (rawPath.includes("\0")) {
        throw new FormatError(`tar entry path ${JSON.stringify(rawPath)} contains a NUL byte`);
      }
      if (rawLink.includes("\0")) {
        throw new FormatError(
          `tar entry ${JSON.stringify(rawPath)}: link target ${JSON.stringify(rawLink)} contains a NUL byte`,
        );
      }
      for (const name of local.xattrs.keys()) {
        if (name.includes("\0")) {
          throw new FormatError(
            `tar entry ${JSON.stringify(rawPath)}: xattr name ${JSON.stringify(name)} contains a NUL byte`,
          );
        }
      }
      path = normalizeTarPath(rawPath);
      if (kind === "hardlink") linkTarget = normalizeTarPath(rawLink, "hard link target");
      else if (kind === "symlink") {
        if (rawLink.length > MAX_PATH) throw new FormatError(`symlink target longer than ${MAX_PATH}`);
        linkTarget = rawLink;
      }
    } catch (e) {
      throw (e as FormatError).within(`tar header at offset ${hdrStart}`);
    }
    const isDev = kind === "chardev" || kind === "blockdev";
    const entry: TarEntry = {
      path,
      kind,
      typeflag: h.typeflag,
      mode: h.mode,
      uid: local.uid ?? h.uid,
      gid: local.gid ?? h.gid,
      mtimeSec: local.mtime ? local.mtime.sec : h.mtime,
      mtimeSecExact: local.mtime ? local.mtime.secExact : h.mtimeExact,
      mtimeNsec: local.mtime ? local.mtime.nsec : 0,
      size: local.size ?? h.size,
      linkTarget,
      rdev: isDev ? makedev(h.devmajor, h.devminor) : 0,
      devMajor: isDev ? h.devmajor : 0,
      devMinor: isDev ? h.devminor : 0,
      xattrs: local.xattrs,
    };
    if (entry.size < 0) throw this.#err(`negative size ${entry.size}`, hdrStart);
    // EROFS (extended inodes) holds 32-bit ids; a bigger one would be truncated silently.
    for (const [what, id] of [["uid", entry.uid], ["gid", entry.gid]] as const) {
      if (id < 0 || id > MAX_ID) {
        throw this.#err(
          `tar entry ${JSON.stringify(path)}: ${what} ${id} does not fit in 32 bits`,
          hdrStart,
        );
      }
    }
    return entry;
  }

  /** Merges one global header's records into the global state (bounded, see MAX_GLOBAL_PAX_*). */
  #addGlobal(payload: Uint8Array, hdrStart: number): void {
    this.#globalBytes += payload.length;
    if (this.#globalBytes > MAX_GLOBAL_PAX_TOTAL) {
      throw this.#err(`PAX global headers total more than ${MAX_GLOBAL_PAX_TOTAL} bytes`, hdrStart);
    }
    let recs;
    try {
      recs = parsePaxRecords(payload);
    } catch (e) {
      throw (e as FormatError).within(`PAX global header at offset ${hdrStart}`);
    }
    for (const [k, v] of recs) {
      if (!globalKeyMatters(k, this.#libarchive)) continue;
      this.#global.delete(k);
      this.#global.set(k, v);
    }
    if (this.#global.size > MAX_GLOBAL_PAX_KEYS) {
      throw this.#err(`PAX global headers set more than ${MAX_GLOBAL_PAX_KEYS} distinct keys`, hdrStart);
    }
    this.#globalList = [...this.#global];
  }

  /** The current entry's content bytes (views valid until the next call). */
  async *content(): AsyncGenerator<Uint8Array> {
    if (this.#state !== "content") return;
    const what = `content of ${JSON.stringify(this.#entry!.path)}`;
    while (this.#contentLeft > 0) {
      const n = this.#contentLeft;
      for await (const c of this.#src.stream(n, what)) {
        this.#contentLeft -= c.length;
        yield c;
      }
    }
    this.#state = "padding";
  }

  /**
   * For reading a tar back from a splitstream: when the current entry's content is one external
   * chunk (an object reference), takes it and returns the object's id; the padding then follows as bytes.
   */
  async takeExternalContent(): Promise<ObjectId | null> {
    if (this.#state !== "content" || this.#contentLeft === 0) return null;
    if (this.#contentLeft !== this.#entry!.size) return null;
    const e = await this.#src.takeExternal();
    if (e) {
      this.#contentLeft = 0;
      this.#state = "padding";
    }
    return e;
  }

  /** The padding after the current entry's content (0..511 bytes). */
  async padding(): Promise<Uint8Array> {
    if (this.#state === "content") { for await (const _ of this.content()); }
    if (this.#state !== "padding") return new Uint8Array(0);
    this.#state = "header";
    const n = paddingOf(this.#entry!.size);
    return n === 0
      ? new Uint8Array(0)
      : await this.#src.readExact(n, `padding of ${JSON.stringify(this.#entry!.path)}`);
  }

  /** After next() returned null: the end blocks (if any) and every byte after them, to EOF. */
  async *trailer(): AsyncGenerator<Uint8Array> {
    if (this.#state !== "end") throw new InternalError("TarReader.trailer() before the end of the archive");
    if (this.#endBytes.length) yield this.#endBytes;
    this.#endBytes = new Uint8Array(0);
    yield* this.#src.rest();
  }

  /** One header block (shorter at EOF); an external part where a header belongs is an error. */
  async #read(offset: number): Promise<Uint8Array> {
    const b = await this.#src.read(BLOCK);
    if (b.length < BLOCK && this.#src.blocked) {
      throw this.#err("external chunk where a tar header should be (headers must be inline)", offset);
    }
    return b;
  }

  #finish(raw: Uint8Array[]): null {
    this.#state = "end";
    this.#entry = null;
    this.#endBytes = concatBytes(raw);
    return null;
  }

  #err(msg: string, offset: number): FormatError {
    return new FormatError(msg).within(`tar header at offset ${offset}`);
  }
}
