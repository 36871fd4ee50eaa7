// OCI tag names ↔ ref file names under streams/refs/oci/ (docs/oci.md#tags): `%` → `%25`, then `/` → `%2F`.
// Decoding is a single pass that keeps unknown `%xx` sequences as they are.
import { InvalidArgumentError } from "../errors.ts";

export function encodeTag(name: string): string {
  validateTagName(name);
  return name.replaceAll("%", "%25").replaceAll("/", "%2F");
}

export function decodeTag(encoded: string): string {
  let out = "";
  for (let i = 0; i < encoded.length; i++) {
    const three = encoded.slice(i, i + 3);
    if (three === "%25") {
      out += "%";
      i += 2;
    } else if (three === "%2F") {
      out += "/";
      i += 2;
    } else out += encoded[i];
  }
  return out;
}

export function validateTagName(name: string): void {
  if (name === "") throw new InvalidArgumentError("image name must not be empty");
  if (name.startsWith("@")) {
    throw new InvalidArgumentError(`image name must not start with '@': ${JSON.stringify(name)}`);
  }
  if (name.includes("\0")) throw new InvalidArgumentError("image name must not contain NUL");
}

export const layerStreamId = (diffId: string): string => `oci-layer-${diffId}`;
export const configStreamId = (digest: string): string => `oci-config-${digest}`;
export const manifestStreamId = (digest: string): string => `oci-manifest-${digest}`;
export const tagRefName = (name: string): string => `oci/${encodeTag(name)}`;
