// OCI content digests (`sha256:<hex>`), independent of the repository's fs-verity algorithm.
import { createHash } from "node:crypto";
import { FormatError, IntegrityError } from "../errors.ts";

export type DigestAlgorithm = "sha256" | "sha384" | "sha512";
const HEX_LEN: Record<DigestAlgorithm, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** Validates `alg:hex` and returns it unchanged; throws FormatError naming the bad value. */
export function parseDigest(
  s: string,
  what = "digest",
): { alg: DigestAlgorithm; hex: string; digest: string } {
  const m = /^(sha256|sha384|sha512):([0-9a-f]+)$/.exec(s);
  if (!m || m[2].length !== HEX_LEN[m[1] as DigestAlgorithm]) {
    throw new FormatError(`invalid ${what}: ${JSON.stringify(s)}`);
  }
  return { alg: m[1] as DigestAlgorithm, hex: m[2], digest: s };
}

export function sha256Digest(data: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

/** Computes `alg:hex` of the bytes and throws IntegrityError unless it equals `expected`. */
export function verifyDigest(data: Uint8Array, expected: string, what: string): void {
  const { alg } = parseDigest(expected, what);
  const got = `${alg}:${createHash(alg).update(data).digest("hex")}`;
  if (got !== expected) {
    throw new IntegrityError(`${what}: digest mismatch: expected ${expected}, got ${got}`);
  }
}

/**
 * Passes bytes through while hashing them; after the stream ends, `check()` throws IntegrityError
 * (and the stream itself errors) when the digest or the expected size does not match.
 */
export function digestCheckingStream(
  expected: string,
  what: string,
  expectedSize?: number,
): TransformStream<Uint8Array, Uint8Array> {
  const { alg } = parseDigest(expected, what);
  const h = createHash(alg);
  let size = 0;
  return new TransformStream({
    transform(chunk, ctl) {
      size += chunk.length;
      if (expectedSize !== undefined && size > expectedSize) {
        throw new IntegrityError(`${what}: more data than the ${expectedSize} bytes its descriptor declares`);
      }
      h.update(chunk);
      ctl.enqueue(chunk);
    },
    flush() {
      if (expectedSize !== undefined && size !== expectedSize) {
        throw new IntegrityError(`${what}: truncated: got ${size} of ${expectedSize} bytes`);
      }
      const got = `${alg}:${h.digest("hex")}`;
      if (got !== expected) {
        throw new IntegrityError(`${what}: digest mismatch: expected ${expected}, got ${got}`);
      }
    },
  });
}
