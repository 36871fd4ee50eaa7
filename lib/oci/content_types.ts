// The splitstream content types the OCI code writes and expects: each names what a stored stream
// holds (docs/splitstream.md). They are OCI's, not the splitstream format's: the format only carries
// an 8-byte tag (lib/splitstream/format.ts encodes and prints it).
import { contentTypeFromAscii } from "../splitstream/format.ts";

export const CONTENT_TYPE = {
  /** tar layer: `ocilayer` = 0x726579616c69636f */
  OCI_LAYER: contentTypeFromAscii("ocilayer"),
  /** OCI config: `ociconfg` = 0x67666e6f6369636f */
  OCI_CONFIG: contentTypeFromAscii("ociconfg"),
  /** OCI manifest: `ocimanif` = 0x66696e616d69636f */
  OCI_MANIFEST: contentTypeFromAscii("ocimanif"),
  /** OCI blob / artifact layer: `oci_blob` = 0x626f6c625f69636f */
  OCI_BLOB: contentTypeFromAscii("oci_blob"),
} as const;
