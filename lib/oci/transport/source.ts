// One interface for every place images come from; the pull logic is written once over it.
import type { Platform } from "../platform.ts";
import type { SplitSink } from "../layer_split.ts";
import type { Repository } from "../../repository/repository.ts";
import { concatBytes } from "../../util/bytes.ts";
import { FormatError, IntegrityError } from "../../errors.ts";
import { parseDigest } from "../digest.ts";
import type { OciDescriptor } from "../json_types.ts";

/** A content descriptor (the one shape, lib/oci/json_types.ts). */
export type Descriptor = OciDescriptor;

export interface ResolvedManifest {
  /** The raw manifest bytes exactly as the source holds them (their sha256 is `digest`). */
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
}

export interface ImageSource {
  /** Human description for messages, e.g. `oci:/path:tag`. */
  readonly description: string;
  /** Resolves the reference to one image manifest, choosing `platform` from an index. */
  getManifest(platform: Platform): Promise<ResolvedManifest>;
  /** The blob's bytes as stored (compressed layers stay compressed). The caller verifies the digest. */
  getBlob(desc: Descriptor): Promise<ReadableStream<Uint8Array>>;
  /**
   * Optional: writes the tar layer with this diff_id straight into `sink` instead of serving its
   * blob (containers-storage reads files in place); checks the diff_id itself unless told to trust it.
   */
  splitLayer?(
    desc: Descriptor,
    diffId: string,
    repo: Repository,
    sink: SplitSink,
    onProgress: (done: number, total?: number) => void,
  ): Promise<{ size: number; externalSize: number; inlineSize: number }>;
  close(): Promise<void>;
}

/** Reads a whole stream into memory (for manifests and configs, which are small). */
export async function readAllLimited(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  what: string,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of stream) {
    n += chunk.length;
    if (n > limit) {
      await stream.cancel().catch(() => {});
      throw new FormatError(`${what} is larger than ${limit} bytes`);
    }
    parts.push(chunk);
  }
  return concatBytes(parts);
}

/** Manifests and configs beyond this size are refused (a hostile source cannot exhaust memory). */
export const MAX_JSON_BLOB = 8 * 1024 * 1024;

/** No blob is believed to be larger than this (16 TiB): a bigger declared size is refused up front. */
export const MAX_BLOB_SIZE = 2 ** 44;

/**
 * Checks a descriptor from a document we were given before anything is fetched through it: an
 * object with a valid digest, a size that is a non-negative integer not above `maxSize`, and a
 * string media type when there is one. Returns it typed.
 */
export function checkDescriptor(d: unknown, what: string, maxSize = MAX_BLOB_SIZE): Descriptor {
  if (typeof d !== "object" || d === null || Array.isArray(d)) {
    throw new FormatError(`${what}: descriptor is not a JSON object`);
  }
  const desc = d as Record<string, unknown>;
  if (typeof desc.digest !== "string") throw new FormatError(`${what}: descriptor has no digest`);
  parseDigest(desc.digest, `${what} digest`);
  const size = desc.size;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw new FormatError(`${what} ${desc.digest}: invalid size ${JSON.stringify(size) ?? "(missing)"}`);
  }
  if (size > maxSize) {
    throw new FormatError(`${what} ${desc.digest}: size ${size} exceeds the limit of ${maxSize} bytes`);
  }
  if (desc.mediaType !== undefined && typeof desc.mediaType !== "string") {
    throw new FormatError(`${what} ${desc.digest}: mediaType is not a string`);
  }
  return d as Descriptor;
}

/** Throws IntegrityError unless `bytes` has exactly the size its descriptor declares. */
export function checkDescriptorSize(bytes: Uint8Array, desc: Descriptor, what: string): void {
  if (bytes.length !== desc.size) {
    throw new IntegrityError(
      `${what} ${desc.digest}: ${bytes.length} bytes, but its descriptor declares ${desc.size}`,
    );
  }
}
