// Whether a stored OCI image is complete enough to skip its pull (docs/gc.md): every layer stream
// its config names is linked and has all its objects, and every EROFS image the repository commits
// exists with all the objects its metadata references. Existence checks only, no rehashing.
import { completeImage, completeStream } from "../repository/completeness.ts";
import type { Repository } from "../repository/repository.ts";
import type { ErofsVersion } from "../repository/meta.ts";
import { imageRefKey, type StoredConfig } from "./image_store.ts";
import { layerStreamId } from "./tags.ts";

export async function storedImageComplete(
  repo: Repository,
  config: StoredConfig,
  versions: ErofsVersion[],
): Promise<boolean> {
  for (const key of config.diffIds) {
    const ref = config.refs.get(key);
    if (!ref || !(await completeStream(repo, layerStreamId(key), ref))) return false;
  }
  if (!config.isContainer) return true;
  for (const v of versions) {
    const id = config.refs.get(imageRefKey(v));
    if (!id || !(await completeImage(repo, id))) return false;
  }
  return true;
}
