// The one object-id type: an fs-verity digest plus the algorithm that made it.
import { FormatError } from "../errors.ts";
import { DIGEST_SIZE, type HashAlgorithm } from "../linux/fsverity_ioctl.ts";
import { fromHex } from "../util/bytes.ts";

// The algorithms and their kernel numbers are the kernel's (lib/linux/); the rooms above take them
// from here, with the ObjectId built on them.
export { DIGEST_SIZE, KERNEL_ALG_ID } from "../linux/fsverity_ioctl.ts";
export type { HashAlgorithm } from "../linux/fsverity_ioctl.ts";

export function algorithmFromKernelId(id: number): HashAlgorithm {
  if (id === 1) return "sha256";
  if (id === 2) return "sha512";
  throw new FormatError(`unknown fs-verity hash algorithm id ${id}`);
}

const HEX_CODES = [..."0123456789abcdef"].map((c) => c.charCodeAt(0));
const hexCodes: number[] = new Array(128).fill(0);

/**
 * Hex of a digest as one flat string. A string grown by `+=` is a rope of one cell per step (about
 * 2 KB for a sha512 id, measured); an import caches one hex per object, so the rope cost 200 MiB
 * per 100,000 objects.
 */
function flatHex(b: Uint8Array): string {
  const codes = b.length * 2 === hexCodes.length ? hexCodes : new Array(b.length * 2);
  for (let i = 0; i < b.length; i++) {
    codes[2 * i] = HEX_CODES[b[i] >> 4];
    codes[2 * i + 1] = HEX_CODES[b[i] & 15];
  }
  return String.fromCharCode.apply(null, codes);
}

export class ObjectId {
  readonly alg: HashAlgorithm;
  readonly bytes: Uint8Array;
  #hex?: string;

  constructor(alg: HashAlgorithm, bytes: Uint8Array) {
    if (bytes.length !== DIGEST_SIZE[alg]) {
      throw new FormatError(`${alg} object id must be ${DIGEST_SIZE[alg]} bytes, got ${bytes.length}`);
    }
    this.alg = alg;
    this.bytes = bytes;
  }

  /** Parses bare hex; the algorithm is taken from its length unless given. */
  static fromHex(hex: string, alg?: HashAlgorithm): ObjectId {
    const a = alg ?? (hex.length === 64 ? "sha256" : hex.length === 128 ? "sha512" : undefined);
    if (!a || hex.length !== DIGEST_SIZE[a] * 2 || !/^[0-9a-f]+$/.test(hex)) {
      throw new FormatError(`invalid ${alg ?? "object"} id: ${JSON.stringify(hex)}`);
    }
    return new ObjectId(a, fromHex(hex));
  }

  /** Parses `sha256:<hex>` / `sha512:<hex>` (the to_id() form). */
  static fromId(id: string): ObjectId {
    const m = /^(sha256|sha512):([0-9a-f]+)$/.exec(id);
    if (!m) throw new FormatError(`invalid object id: ${JSON.stringify(id)}`);
    return ObjectId.fromHex(m[2], m[1] as HashAlgorithm);
  }

  /** Parses an object path `XX/rest` as stored under objects/. */
  static fromObjectPath(path: string, alg?: HashAlgorithm): ObjectId {
    const m = /^([0-9a-f]{2})\/([0-9a-f]+)$/.exec(path);
    if (!m) throw new FormatError(`invalid object path: ${JSON.stringify(path)}`);
    return ObjectId.fromHex(m[1] + m[2], alg);
  }

  hex(): string {
    return this.#hex ??= flatHex(this.bytes);
  }
  /** `sha256:<hex>` */
  toId(): string {
    return `${this.alg}:${this.hex()}`;
  }
  /** `XX/<rest>` */
  objectPath(): string {
    const h = this.hex();
    return `${h.slice(0, 2)}/${h.slice(2)}`;
  }
  equals(o: ObjectId): boolean {
    return this.alg === o.alg && this.hex() === o.hex();
  }
  toString(): string {
    return this.toId();
  }
}
