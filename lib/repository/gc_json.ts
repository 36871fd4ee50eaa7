// The result of a gc as `gc --json` and the varlink Gc reply name it (snake_case, docs/json-output.md):
// one mapping for both.
import type { GcResult } from "./gc.ts";

export function gcReportFields(r: GcResult, dryRun: boolean) {
  return {
    result: {
      objects_removed: r.objectsRemoved,
      objects_bytes: r.bytesRemoved,
      images_pruned: r.imagesPruned,
      streams_pruned: r.streamsPruned,
    },
    dry_run: dryRun,
  };
}
