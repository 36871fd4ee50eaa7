// Reading a section of a Unified Kernel Image (a PE/COFF executable): the `.cmdline` section holds
// the kernel command line the UKI boots with, and so its composefs karg (docs/boot.md "UKIs").
import { FormatError } from "../errors.ts";

/** The bytes of PE section NAME (at most 8 characters), or null when the image has none. */
export function peSection(pe: Uint8Array, name: string, what: string): Uint8Array | null {
  const dv = new DataView(pe.buffer, pe.byteOffset, pe.byteLength);
  const fail = (why: string): never => {
    throw new FormatError(`${what} is not a PE image: ${why}`);
  };
  if (pe.length < 0x40 || pe[0] !== 0x4d || pe[1] !== 0x5a) fail("no MZ header");
  const peOff = dv.getUint32(0x3c, true);
  if (peOff + 24 > pe.length || dv.getUint32(peOff, true) !== 0x00004550) fail("no PE signature");
  const nSections = dv.getUint16(peOff + 6, true);
  const optSize = dv.getUint16(peOff + 20, true);
  let at = peOff + 24 + optSize;
  for (let i = 0; i < nSections; i++, at += 40) {
    if (at + 40 > pe.length) fail("section table past the end of the file");
    let end = 0;
    while (end < 8 && pe[at + end] !== 0) end++;
    const secName = String.fromCharCode(...pe.subarray(at, at + end));
    if (secName !== name) continue;
    const virtualSize = dv.getUint32(at + 8, true);
    const rawSize = dv.getUint32(at + 16, true);
    const rawPtr = dv.getUint32(at + 20, true);
    const size = virtualSize !== 0 ? Math.min(virtualSize, rawSize) : rawSize;
    if (rawPtr + size > pe.length) fail(`section ${name} past the end of the file`);
    return pe.subarray(rawPtr, rawPtr + size);
  }
  return null;
}

/** The UKI's `.cmdline` as text (trailing NULs and whitespace removed). */
export function ukiCmdline(pe: Uint8Array, what: string): string {
  const sec = peSection(pe, ".cmdline", what);
  if (sec === null) throw new FormatError(`${what}: the UKI has no .cmdline section`);
  return new TextDecoder().decode(sec).replace(/[\0\s]+$/, "");
}
