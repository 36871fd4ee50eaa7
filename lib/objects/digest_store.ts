// The flat object store of C `mkcomposefs --digest-store DIR`: each object at DIR/XX/<rest hex>,
// no repository metadata. It is the repository's object store (./object_dir.ts) with the C tool's
// verity policy: fs-verity is enabled where the filesystem has it and silently skipped where it
// does not.
import type { HashAlgorithm } from "../fsverity/object_id.ts";
import { ObjectDir } from "./object_dir.ts";

export class FlatDigestStore extends ObjectDir {
  constructor(dir: string, alg: HashAlgorithm = "sha256") {
    super(dir, alg, { verity: () => "tolerate" });
  }
}
