// The kernel argument that names the root image (docs/boot.md "Kernel argument"):
// `composefs.digest=v1-<sha256|sha512>-12:<hex>` for V0/V1 images, `composefs=<hex>` for V2 (legacy),
// a `?` directly after `=` when the repository is insecure (fs-verity optional at boot).
import { FormatError } from "../errors.ts";
import type { HashAlgorithm } from "../fsverity/object_id.ts";

export interface ComposefsKarg {
  /** Image id (fs-verity digest of the EROFS image), lowercase hex. */
  hex: string;
  /** Known from `composefs.digest=`; for `composefs=` inferred from the digest's length. */
  alg: HashAlgorithm;
  /** `?` after `=`: the image may be mounted without fs-verity. */
  insecure: boolean;
  /** Which form named it. */
  form: "composefs.digest" | "composefs";
  /** The argument as written. */
  text: string;
}

/** The karg for an image of this format version. */
export function formatKarg(hex: string, alg: HashAlgorithm, version: 0 | 1 | 2, insecure: boolean): string {
  const q = insecure ? "?" : "";
  return version === 2 ? `composefs=${q}${hex}` : `composefs.digest=${q}v1-${alg}-12:${hex}`;
}

/**
 * Splits a kernel command line the way the kernel does: on whitespace, except inside double quotes
 * (which stay part of the word; there is no escaping).
 */
export function splitCmdline(cmdline: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  let any = false;
  for (const c of cmdline) {
    if (c === '"') quoted = !quoted;
    if (!quoted && /\s/.test(c)) {
      if (any) out.push(cur);
      cur = "";
      any = false;
      continue;
    }
    cur += c;
    any = true;
  }
  if (any) out.push(cur);
  return out;
}

const HEX_LEN: Record<HashAlgorithm, number> = { sha256: 64, sha512: 128 };

function checkHex(hex: string, alg: HashAlgorithm | undefined, arg: string): HashAlgorithm {
  const a = alg ?? (hex.length === 64 ? "sha256" : hex.length === 128 ? "sha512" : undefined);
  if (a === undefined || hex.length !== HEX_LEN[a] || !/^[0-9a-f]+$/.test(hex)) {
    throw new FormatError(
      `kernel argument ${arg}: expected ${
        alg
          ? `${HEX_LEN[alg]} lowercase hex digits (${alg})`
          : "64 (sha256) or 128 (sha512) lowercase hex digits"
      }, got ${JSON.stringify(hex)} (${hex.length} characters)`,
    );
  }
  return a;
}

/**
 * Finds the composefs karg in a command line: the first `composefs.digest=` whose hash matches `alg`
 * (any hash when `alg` is not given), else the first `composefs=`. None → null. A malformed value of
 * the chosen argument is a FormatError naming it.
 */
export function parseComposefsKarg(cmdline: string, alg?: HashAlgorithm): ComposefsKarg | null {
  const words = splitCmdline(cmdline);
  const bad: string[] = [];
  for (const w of words) {
    if (!w.startsWith("composefs.digest=")) continue;
    let v = w.slice("composefs.digest=".length);
    const insecure = v.startsWith("?");
    if (insecure) v = v.slice(1);
    const m = /^v1-(sha256|sha512)-12:(.*)$/.exec(v);
    if (!m) {
      bad.push(w);
      continue;
    }
    const a = m[1] as HashAlgorithm;
    if (alg && a !== alg) continue;
    checkHex(m[2], a, w);
    return { hex: m[2], alg: a, insecure, form: "composefs.digest", text: w };
  }
  for (const w of words) {
    if (!w.startsWith("composefs=")) continue;
    let v = w.slice("composefs=".length);
    const insecure = v.startsWith("?");
    if (insecure) v = v.slice(1);
    const a = checkHex(v, alg, w);
    return { hex: v, alg: a, insecure, form: "composefs", text: w };
  }
  if (bad.length > 0) {
    throw new FormatError(
      `kernel argument ${bad[0]}: expected composefs.digest=[?]v1-<sha256|sha512>-12:<hex>`,
    );
  }
  return null;
}
