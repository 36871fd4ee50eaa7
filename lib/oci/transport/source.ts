// One interface for every place images come from; the pull logic is written once over it.
import type { Platform } from "../platform.ts";
import type { SplitSink } from "../layer_split.ts";
import type { Repository } from "../../repository/repository.ts";
import { concatBytes } from "../../util/bytes.ts";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
  artifactType?: string;
  urls?: string[];
}

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
      throw new RangeError(`${what} is larger than ${limit} bytes`);
    }
    parts.push(chunk);
  }
  return concatBytes(parts);
}

/** Manifests and configs beyond this size are refused (a hostile source cannot exhaust memory). */
export const MAX_JSON_BLOB = 8 * 1024 * 1024;
