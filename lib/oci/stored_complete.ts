// Whether a stored OCI image is complete enough to skip its pull (docs/gc.md): every layer stream
// its config names is linked and has all its objects, and every EROFS image the repository commits
// exists with all the objects its metadata references. Existence checks only, no rehashing.
import { completeImage, completeStream } from "../repository/completeness.ts";
import type { ErofsVersion } from "../repository/meta.ts";
import type { OciImage } from "./oci_image.ts";
import { layerStreamId } from "./tags.ts";

export async function storedImageComplete(img: OciImage, versions: ErofsVersion[]): Promise<boolean> {
  const refs = img.layerRefs;
  for (const key of img.diffIds) {
    const ref = refs.get(key);
    if (!ref || !(await completeStream(img.repo, layerStreamId(key), ref))) return false;
  }
  if (!img.isContainer) return true;
  for (const v of versions) {
    const id = img.imageId(v);
    if (!id || !(await completeImage(img.repo, id))) return false;
  }
  return true;
}
