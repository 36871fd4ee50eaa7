// Random access into an uncompressed tar archive (oci-archive, docker-archive): one pass over the
// headers records where each member's data lies, then blobs are read by offset, never extracted.
import { FormatError, NotFoundError } from "../../errors.ts";

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
    let paxPath: string | undefined;
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
      const msize = octal(h, 124, 12, `${path} @${pos}`);
      const dataOff = pos + 512;
      if (dataOff + msize > size) {
        throw new FormatError(`${path}: tar member at offset ${pos} runs past the end`);
      }
      pos = dataOff + Math.ceil(msize / 512) * 512;
      if (type === "L" || type === "x") {
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
        else {
          const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(text);
          if (m) paxPath = m[1];
        }
        continue;
      }
      if (type === "g" || type === "K") continue;
      const prefix = field(h, 345, 155);
      const name = paxPath ?? longName ?? (prefix ? prefix + "/" : "") + field(h, 0, 100);
      paxPath = longName = undefined;
      members.set(normalise(name), {
        offset: dataOff,
        size: msize,
        type,
        linkName: type === "1" || type === "2" ? normalise(field(h, 157, 100)) : undefined,
      });
    }
    return members;
  } finally {
    f.close();
  }
}

/** A member's bytes as a stream (hard and symbolic links within the archive are followed). */
export async function openTarMember(
  archive: string,
  members: Map<string, TarMember>,
  name: string,
): Promise<ReadableStream<Uint8Array>> {
  let m = members.get(normalise(name));
  for (let hops = 0; m && (m.type === "1" || m.type === "2") && hops < 8; hops++) {
    m = members.get(m.linkName!);
  }
  if (!m) throw new NotFoundError(`${archive}: no member ${JSON.stringify(name)}`);
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

export async function readTarMember(
  archive: string,
  members: Map<string, TarMember>,
  name: string,
  limit: number,
): Promise<Uint8Array> {
  const m = members.get(normalise(name));
  if (m && m.size > limit) throw new FormatError(`${archive}: member ${name} is too large (${m.size} bytes)`);
  const s = await openTarMember(archive, members, name);
  const parts: Uint8Array[] = [];
  for await (const c of s) parts.push(c);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
