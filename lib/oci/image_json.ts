// The fields of an image listing row and of an image inspection as `oci images --json`,
// `oci inspect` and the varlink ListImages / Inspect replies name them (snake_case,
// docs/json-output.md): one mapping for all of them.
import type { ImageListEntry } from "./image_store.ts";
import type { OciImage } from "./oci_image.ts";

/** One `oci images` row (the error of an unreadable tag is the caller's to add or leave out). */
export function imageListFields(i: ImageListEntry) {
  return {
    name: i.name,
    manifest_digest: i.manifestDigest,
    is_container: i.isContainer,
    architecture: i.architecture,
    os: i.os,
    created: i.created,
    layer_count: i.layerCount,
    referrer_count: i.referrerCount,
  };
}

/** `oci inspect`: the raw manifest and config text and the EROFS images of the repository's default format. */
export function inspectFields(img: OciImage) {
  const dec = new TextDecoder();
  const v = img.repo.erofsVersions()[0];
  return {
    manifest: img.manifest ? dec.decode(img.manifest.bytes) : null,
    config: dec.decode(img.config.bytes),
    referrers: [] as string[],
    composefs_erofs: img.imageId(v)?.hex() ?? null,
    composefs_boot_erofs: img.imageId(v, true)?.hex() ?? null,
  };
}
