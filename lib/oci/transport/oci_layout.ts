// `oci:PATH[:TAG]` and `oci-archive:FILE[:TAG]`: an OCI image layout (index.json + blobs/<alg>/<hex>),
// as a directory or inside a tar archive.
import { FormatError, NotFoundError } from "../../errors.ts";
import { parseDigest } from "../digest.ts";
import { asIndex } from "../json_types.ts";
import { type Platform, selectPlatformEntry } from "../platform.ts";
import { parseJson } from "../../util/json.ts";
import { resolveToManifest } from "./blob_dir.ts";
import type { LayoutFiles } from "./layout_files.ts";
import {
  checkDescriptor,
  type Descriptor,
  type ImageSource,
  MAX_JSON_BLOB,
  type ResolvedManifest,
} from "./source.ts";

const REF_NAME = "org.opencontainers.image.ref.name";

/** Picks the index.json entries for a tag (all entries when untagged). */
export function pickFromLayoutIndex(index: unknown, tag: string | undefined, where: string): Descriptor[] {
  const manifests: Descriptor[] = asIndex(index)?.manifests ?? [];
  if (manifests.length === 0) throw new NotFoundError(`${where}: index.json lists no images`);
  manifests.forEach((m, i) => checkDescriptor(m, `${where}: index.json manifests[${i}]`, MAX_JSON_BLOB));
  if (tag !== undefined) {
    const hit = manifests.filter((m) => m.annotations?.[REF_NAME] === tag);
    if (hit.length === 0) {
      const tags = manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
      throw new NotFoundError(
        `${where}: no image tagged ${JSON.stringify(tag)} (tags: ${tags.join(", ") || "none"})`,
      );
    }
    return hit;
  }
  return manifests;
}

export function blobName(digest: string): string {
  const { alg, hex } = parseDigest(digest, "blob digest");
  return `blobs/${alg}/${hex}`;
}

export class OciLayoutSource implements ImageSource {
  constructor(private files: LayoutFiles, private tag: string | undefined, readonly description: string) {}

  async getManifest(platform: Platform): Promise<ResolvedManifest> {
    if (!(await this.files.exists("index.json"))) {
      throw new NotFoundError(`${this.description}: not an OCI layout (no index.json)`);
    }
    const index = parseJson(
      await this.files.read("index.json", MAX_JSON_BLOB),
      `${this.description}: index.json`,
    );
    if (index?.schemaVersion !== 2) {
      throw new FormatError(`${this.description}: index.json schemaVersion is not 2`);
    }
    const candidates = pickFromLayoutIndex(index, this.tag, this.description);
    // Several top-level entries (an untagged multi-platform layout) are chosen from like an index.
    const desc = candidates.length === 1
      ? candidates[0]
      : selectPlatformEntry(candidates, platform, this.description);
    return await resolveToManifest(
      desc,
      platform,
      (d) => this.files.read(blobName(d.digest), MAX_JSON_BLOB),
      this.description,
    );
  }

  getBlob(desc: Descriptor): Promise<ReadableStream<Uint8Array>> {
    return this.files.open(blobName(desc.digest));
  }

  close(): Promise<void> {
    return this.files.close();
  }
}
