// OCI and Docker media types and the questions asked about them.

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
