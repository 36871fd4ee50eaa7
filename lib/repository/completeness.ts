// "Already have it" checks (docs/gc.md): before a caller reuses a stored stream or image instead of
// importing it again, it asks whether everything that stream or image references is still there.
// Cheap by design — existence of each referenced object, no rehashing — so that a repository left
// incomplete by a crash (or by an older gc that deleted objects before links) is repaired by the
// next import instead of being tagged as complete.
import type { ObjectId } from "../fsverity/object_id.ts";
import { collectObjects } from "../erofs/reader.ts";
import type { Repository } from "./repository.ts";

async function allPresent(repo: Repository, ids: Iterable<ObjectId>): Promise<boolean> {
  const seen = new Set<string>();
  for (const id of ids) {
    const hex = id.hex();
    if (seen.has(hex)) continue;
    seen.add(hex);
    if (!(await repo.hasObject(id))) return false;
  }
  return true;
}

/**
 * The verity of `streams/<contentId>` when the link exists, its object exists and every object the
 * stream references exists; null when anything is missing or unreadable (import it again). With
 * `expected`, the link must also lead to that object.
 */
export async function completeStream(
  repo: Repository,
  contentId: string,
  expected?: ObjectId,
): Promise<ObjectId | null> {
  const verity = await repo.hasStream(contentId).catch(() => null);
  if (!verity || (expected && !expected.equals(verity))) return null;
  if (!(await repo.hasObject(verity))) return null;
  try {
    const reader = await repo.openStream(contentId, verity);
    return (await allPresent(repo, reader.objectRefs)) ? verity : null;
  } catch {
    return null;
  }
}

/** Whether `images/<hex>` resolves to the image `id` and every object its metadata references exists. */
export async function completeImage(repo: Repository, id: ObjectId): Promise<boolean> {
  try {
    const { bytes } = await repo.readImage(id.hex());
    return await allPresent(repo, collectObjects(bytes, repo.alg));
  } catch {
    return false;
  }
}
