// Random access into an uncompressed tar archive (oci-archive, docker-archive): one pass over the
// headers records where each member's data lies, then blobs are read by offset, never extracted.
import { FormatError, NotFoundError } from "../../errors.ts";
import { concatBytes } from "../../util/bytes.ts";

export interface TarMember {
  offset: number;
  size: number;
  type: string;
  linkName?: string;
}

function field(h: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && h[end] !== 0) end++;
  return new TextDecoder().decode(h.subarray(off, end));
}

function octal(h: Uint8Array, off: number, len: number, where: string): number {
  if (h[off] & 0x80) {
    // base-256
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + h[i];
    return v;
  }
  const s = field(h, off, len).trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw new FormatError(`${where}: invalid numeric field ${JSON.stringify(s)}`);
  return parseInt(s, 8);
}

function checksumOk(h: Uint8Array): boolean {
  const stored = parseInt(field(h, 148, 8).trim() || "0", 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return sum === stored;
}

function normalise(name: string): string {
  return name.replace(/^(\.\/)+/, "").replace(/^\/+/, "").replace(/\/+$/, "");
}

/** Indexes the regular files (and symlinks/hard links) of a tar file by normalised path. */
export async function indexTar(path: string): Promise<Map<string, TarMember>> {
  const f = await Deno.open(path);
  try {
    const size = (await f.stat()).size;
    const members = new Map<string, TarMember>();
    const h = new Uint8Array(512);
    let pos = 0;
    let longName: string | undefined;
    let longLink: string | undefined;
    let pax: Map<string, string> | undefined;
    while (pos + 512 <= size) {
      await f.seek(pos, Deno.SeekMode.Start);
      let got = 0;
      while (got < 512) {
        const n = await f.read(h.subarray(got));
        if (n === null) throw new FormatError(`${path}: truncated tar header at offset ${pos + got}`);
        got += n;
      }
      if (h.every((b) => b === 0)) break;
      if (!checksumOk(h)) throw new FormatError(`${path}: bad tar header checksum at offset ${pos}`);
      const type = String.fromCharCode(h[156] || 0x30);
      const headerSize = octal(h, 124, 12, `${path} @${pos}`);
      // A PAX size applies to the member the extension header precedes.
      const paxSize = type !== "x" && type !== "g" ? pax?.get("size") : undefined;
      if (paxSize !== undefined && !/^[0-9]{1,16}$/.test(paxSize)) {
        throw new FormatError(`${path}: invalid PAX size ${JSON.stringify(paxSize)} at offset ${pos}`);
      }
      const msize = paxSize !== undefined ? Number(paxSize) : headerSize;
      const dataOff = pos + 512;
      if (dataOff + msize > size) {
        throw new FormatError(`${path}: tar member at offset ${pos} runs past the end`);
      }
      pos = dataOff + Math.ceil(msize / 512) * 512;
      if (type === "L" || type === "K" || type === "x") {
        if (msize > 1 << 20) {
          throw new FormatError(`${path}: oversized tar extension header at ${dataOff - 512}`);
        }
        const buf = new Uint8Array(msize);
        await f.seek(dataOff, Deno.SeekMode.Start);
        let r = 0;
        while (r < msize) {
          const n = await f.read(buf.subarray(r));
          if (n === null) throw new FormatError(`${path}: truncated tar extension header`);
          r += n;
        }
        const text = new TextDecoder().decode(buf);
        if (type === "L") longName = text.replace(/\0+$/, "");
        else if (type === "K") longLink = text.replace(/\0+$/, "");
        else {
          pax = new Map();
          for (const m of text.matchAll(/(?:^|\n)\d+ ([^=\n]+)=([^\n]*)(?=\n)/g)) pax.set(m[1], m[2]);
        }
        continue;
      }
      if (type === "g") continue;
      const prefix = field(h, 345, 155);
      const name = pax?.get("path") ?? longName ?? (prefix ? prefix + "/" : "") + field(h, 0, 100);
      const link = pax?.get("linkpath") ?? longLink ?? field(h, 157, 100);
      pax = longName = longLink = undefined;
      if (name.includes("\0") || link.includes("\0")) {
        throw new FormatError(
          `${path}: tar member name or link target with a NUL byte at offset ${dataOff - 512}`,
        );
      }
      members.set(normalise(name), {
        offset: dataOff,
        size: msize,
        type,
        // Hard links name archive members; a symlink's target is kept as written (resolved later).
        linkName: type === "1" ? normalise(link) : type === "2" ? link : undefined,
      });
    }
    return members;
  } finally {
    f.close();
  }
}

/**
 * The member `name` stands for, after following hard links (archive-root-relative names) and
 * symbolic links (relative to the link's directory; an absolute target is taken from the archive's
 * root: nothing outside the archive is ever read). Null when it leads nowhere or loops.
 */
export function resolveTarMember(members: Map<string, TarMember>, name: string): TarMember | null {
  let key = normalise(name);
  for (let hops = 0; hops <= MAX_LINK_HOPS; hops++) {
    const m = members.get(key);
    if (!m) return null;
    if (m.type === "1") key = m.linkName!;
    else if (m.type === "2") {
      const target = m.linkName!;
      const dir = key.includes("/") ? key.slice(0, key.lastIndexOf("/")) : "";
      const joined = resolveWithin(target.startsWith("/") ? target : `${dir}/${target}`);
      if (joined === null) return null;
      key = joined;
    } else return m;
  }
  return null;
}

const MAX_LINK_HOPS = 8;

/** `a/./b/../c` → `a/c`; null when ".." would climb above the archive's root. */
function resolveWithin(path: string): string | null {
  const out: string[] = [];
  for (const p of path.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(p);
  }
  return out.join("/");
}

/** A member's bytes as a stream (hard and symbolic links within the archive are followed). */
export async function openTarMember(
  archive: string,
  members: Map<string, TarMember>,
  name: string,
): Promise<ReadableStream<Uint8Array>> {
  const m = resolveTarMember(members, name);
  if (!m) throw new NotFoundError(`${archive}: no member ${JSON.stringify(name)}`);
  if (m.type !== "0" && m.type !== "7") {
    throw new FormatError(
      `${archive}: member ${JSON.stringify(name)} is not a regular file (type '${m.type}')`,
    );
  }
  const f = await Deno.open(archive);
  await f.seek(m.offset, Deno.SeekMode.Start);
  let left = m.size;
  const reader = f.readable.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      if (left === 0) {
        ctl.close();
        await reader.cancel().catch(() => {});
        return;
      }
      const { value, done } = await reader.read();
      if (done) {
        ctl.error(new FormatError(`${archive}: member ${name} truncated`));
        return;
      }
      const chunk = value.length > left ? value.subarray(0, left) : value;
      left -= chunk.length;
      ctl.enqueue(chunk);
    },
    async cancel() {
      await reader.cancel().catch(() => {});
    },
  });
}

/** A member's bytes, refused beyond `limit` (the size of what a link leads to, and the bytes read). */
export async function readTarMember(
  archive: string,
  members: Map<string, TarMember>,
  name: string,
  limit: number,
): Promise<Uint8Array> {
  const m = resolveTarMember(members, name);
  if (m && m.size > limit) {
    throw new FormatError(`${archive}: member ${name} is too large (${m.size} bytes, limit ${limit})`);
  }
  const s = await openTarMember(archive, members, name);
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of s) {
    n += c.length;
    if (n > limit) {
      throw new FormatError(`${archive}: member ${name} is larger than ${limit} bytes`);
    }
    parts.push(c);
  }
  return concatBytes(parts);
}
