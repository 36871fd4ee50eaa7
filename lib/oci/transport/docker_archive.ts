// `docker-archive:FILE[:REF]`: the `docker save` format (manifest.json listing Config, RepoTags and
// Layers). A Docker schema 2 manifest is synthesised for the chosen image, as skopeo does.
import { createHash } from "node:crypto";
import { FormatError, NotFoundError } from "../../errors.ts";
import { sha256Digest } from "../digest.ts";
import { MT } from "../media_types.ts";
import type { Platform } from "../platform.ts";
import { parseJson } from "../../util/json.ts";
import type { LayoutFiles } from "./layout_files.ts";
import { type Descriptor, type ImageSource, MAX_JSON_BLOB, type ResolvedManifest } from "./source.ts";

interface SaveEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

const DOCKER_TAR = "application/vnd.docker.image.rootfs.diff.tar";

export class DockerArchiveSource implements ImageSource {
  readonly description: string;
  /** digest → member name, filled when the manifest is synthesised. */
  #members = new Map<string, string>();

  constructor(private files: LayoutFiles, private ref?: string) {
    this.description = `docker-archive:${files.where}${ref ? ":" + ref : ""}`;
  }

  async #entry(): Promise<SaveEntry> {
    if (!(await this.files.exists("manifest.json"))) {
      throw new NotFoundError(`${this.description}: no manifest.json (not a docker save archive)`);
    }
    const list = parseJson(
      await this.files.read("manifest.json", MAX_JSON_BLOB),
      `${this.description}: manifest.json`,
    );
    if (!Array.isArray(list) || list.length === 0) {
      throw new FormatError(`${this.description}: manifest.json lists no images`);
    }
    if (this.ref === undefined) {
      if (list.length > 1) {
        throw new FormatError(
          `${this.description}: archive holds ${list.length} images; name one with docker-archive:FILE:REF`,
        );
      }
      return list[0];
    }
    const want = this.ref.includes(":") ? this.ref : this.ref + ":latest";
    const hit = list.find((e: SaveEntry) =>
      (e.RepoTags ?? []).some((t) => t === want || t === this.ref || t.endsWith("/" + want))
    );
    if (!hit) throw new NotFoundError(`${this.description}: no image tagged ${JSON.stringify(this.ref)}`);
    return hit;
  }

  async #memberDigest(name: string): Promise<string> {
    const h = createHash("sha256");
    for await (const c of await this.files.open(name)) h.update(c);
    return "sha256:" + h.digest("hex");
  }

  async getManifest(_platform: Platform): Promise<ResolvedManifest> {
    const e = await this.#entry();
    if (typeof e.Config !== "string" || !Array.isArray(e.Layers)) {
      throw new FormatError(`${this.description}: malformed manifest.json entry`);
    }
    const configBytes = await this.files.read(e.Config, MAX_JSON_BLOB);
    const configDigest = sha256Digest(configBytes);
    this.#members.set(configDigest, e.Config);
    const config = parseJson(configBytes, `${this.description}: ${e.Config}`);
    const diffIds: string[] = config?.rootfs?.diff_ids ?? [];
    const layers: Descriptor[] = [];
    for (let i = 0; i < e.Layers.length; i++) {
      const name = e.Layers[i];
      const size = await this.files.size(name);
      // Layers in docker save archives are uncompressed, so their digest is the diff_id (which the
      // import verifies anyway); anything else is hashed here so the manifest tells the truth.
      const head = new Uint8Array(4);
      const r = (await this.files.open(name)).getReader();
      const first = await r.read();
      await r.cancel().catch(() => {});
      head.set((first.value ?? new Uint8Array()).subarray(0, 4));
      const compressed = (head[0] === 0x1f && head[1] === 0x8b) || (head[0] === 0x28 && head[1] === 0xb5);
      const digest = !compressed && diffIds[i] ? diffIds[i] : await this.#memberDigest(name);
      const mediaType = head[0] === 0x1f
        ? MT.DOCKER_LAYER_GZIP
        : head[0] === 0x28
        ? MT.OCI_LAYER_ZSTD
        : DOCKER_TAR;
      this.#members.set(digest, name);
      layers.push({ mediaType, digest, size });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: MT.DOCKER_MANIFEST,
      config: { mediaType: MT.DOCKER_CONFIG, size: configBytes.length, digest: configDigest },
      layers,
    };
    const bytes = new TextEncoder().encode(JSON.stringify(manifest));
    return { bytes, digest: sha256Digest(bytes), mediaType: MT.DOCKER_MANIFEST };
  }

  getBlob(desc: Descriptor): Promise<ReadableStream<Uint8Array>> {
    const name = this.#members.get(desc.digest);
    if (!name) return Promise.reject(new NotFoundError(`${this.description}: no blob ${desc.digest}`));
    return this.files.open(name);
  }

  close(): Promise<void> {
    return this.files.close();
  }
}
