// The fields of an fsck report as `fsck --json` and the varlink Fsck reply name them (snake_case,
// docs/json-output.md): one mapping for both.
import type { FsckReport } from "./fsck.ts";

export function fsckReportFields(r: FsckReport) {
  return {
    ok: r.ok,
    has_metadata: r.hasMetadata,
    objects_checked: r.objectsChecked,
    objects_corrupted: r.objectsCorrupted,
    streams_checked: r.streamsChecked,
    streams_corrupted: r.streamsCorrupted,
    images_checked: r.imagesChecked,
    images_corrupted: r.imagesCorrupted,
    broken_links: r.brokenLinks,
    missing_objects: r.missingObjects,
    errors: r.errors,
  };
}
