// `dir:PATH`: skopeo's directory layout (manifest.json + one file per blob named by its hex digest).
import { parseDigest, sha256Digest } from "../digest.ts";
import type { Platform } from "../platform.ts";
import { isIndexMediaType, MT } from "../media_types.ts";
import { parseJson } from "../../util/json.ts";
import { documentMediaType } from "./blob_dir.ts";
import type { LayoutFiles } from "./layout_files.ts";
import { type Descriptor, type ImageSource, MAX_JSON_BLOB, type ResolvedManifest } from "./source.ts";
import { FormatError, NotFoundError } from "../../errors.ts";

export class DirSource implements ImageSource {
  readonly description: string;
  constructor(private files: LayoutFiles) {
    this.description = `dir:${files.where}`;
  }

  async getManifest(_platform: Platform): Promise<ResolvedManifest> {
    if (!(await this.files.exists("manifest.json"))) {
      throw new NotFoundError(`${this.description}: no manifest.json (not a skopeo dir: layout)`);
    }
    const bytes = await this.files.read("manifest.json", MAX_JSON_BLOB);
    const doc = parseJson(bytes, `${this.description}: manifest.json`);
    const mediaType = documentMediaType(doc);
    if (isIndexMediaType(mediaType)) {
      throw new FormatError(`${this.description}: holds a manifest list; copy a single platform with skopeo`);
    }
    if (mediaType === MT.DOCKER_SCHEMA1 || mediaType === MT.DOCKER_SCHEMA1_SIGNED) {
      throw new FormatError(`${this.description}: Docker schema 1 manifests are not supported`);
    }
    return { bytes, digest: sha256Digest(bytes), mediaType };
  }

  getBlob(desc: Descriptor): Promise<ReadableStream<Uint8Array>> {
    return this.files.open(parseDigest(desc.digest, "blob digest").hex);
  }

  close(): Promise<void> {
    return this.files.close();
  }
}
