// OCI and Docker media types and the questions asked about them.
import { FormatError } from "../errors.ts";
import { decompressDeclared, type LayerCompression } from "../compress/decompress.ts";

export type { LayerCompression };

export const MT = {
  OCI_INDEX: "application/vnd.oci.image.index.v1+json",
  OCI_MANIFEST: "application/vnd.oci.image.manifest.v1+json",
  OCI_CONFIG: "application/vnd.oci.image.config.v1+json",
  DOCKER_MANIFEST: "application/vnd.docker.distribution.manifest.v2+json",
  DOCKER_LIST: "application/vnd.docker.distribution.manifest.list.v2+json",
  DOCKER_CONFIG: "application/vnd.docker.container.image.v1+json",
  DOCKER_SCHEMA1: "application/vnd.docker.distribution.manifest.v1+json",
  DOCKER_SCHEMA1_SIGNED: "application/vnd.docker.distribution.manifest.v1+prettyjws",
  OCI_LAYER_TAR: "application/vnd.oci.image.layer.v1.tar",
  OCI_LAYER_GZIP: "application/vnd.oci.image.layer.v1.tar+gzip",
  OCI_LAYER_ZSTD: "application/vnd.oci.image.layer.v1.tar+zstd",
  DOCKER_LAYER_GZIP: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MT.OCI_INDEX || mt === MT.DOCKER_LIST;
}

export function isManifestMediaType(mt: string | undefined): boolean {
  return mt === MT.OCI_MANIFEST || mt === MT.DOCKER_MANIFEST;
}

/** A container image config (as opposed to an artifact's config). */
export function isImageConfigMediaType(mt: string | undefined): boolean {
  return mt === MT.OCI_CONFIG || mt === MT.DOCKER_CONFIG;
}

const TAR_LAYER_TYPES: Record<string, LayerCompression> = {
  "application/vnd.oci.image.layer.v1.tar": "none",
  "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
  "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
  // Docker v2 types (skopeo converts these to OCI; other sources hand them to us as they are).
  "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.diff.tar": "none",
};

/** The compression a tar layer media type declares; undefined when it is not a tar layer (artifact). */
export function layerCompressionOf(mediaType: string): LayerCompression | undefined {
  return TAR_LAYER_TYPES[mediaType];
}

export function isTarLayerMediaType(mediaType: string): boolean {
  return mediaType in TAR_LAYER_TYPES;
}

/**
 * The uncompressed tar stream of a layer blob (lib/compress/decompress.ts decompressDeclared: a
 * layer declared uncompressed but starting with a gzip/zstd magic is decompressed unless `sniff`
 * is false). Throws FormatError for a non-tar media type.
 */
export function decompressLayer(
  input: ReadableStream<Uint8Array>,
  mediaType: string,
  opts: { sniff?: boolean; native?: boolean } = {},
): ReadableStream<Uint8Array> {
  const declared = layerCompressionOf(mediaType);
  if (declared === undefined) throw new FormatError(`not a tar layer media type: ${mediaType}`);
  return decompressDeclared(input, declared, opts);
}
