// The flat object store of C `mkcomposefs --digest-store DIR` (spec §1.5): each object at
// DIR/XX/<rest hex>, no repository metadata. Objects appear complete under their final name (written
// to a temporary name, renamed without replacing); fs-verity is enabled where the filesystem has it
// and silently skipped where it does not (the C tool's insecure fallback).
import { FsVerityHasher } from "../fsverity/hasher.ts";
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";
import { closeFd, O_RDONLY, openPath, renameNoReplace } from "../linux/fs.ts";
import { enableVerity, VerityError } from "../linux/fsverity_ioctl.ts";
import type { ObjectStore, ObjectWriter } from "../repository/object_store.ts";

export class FlatDigestStore implements ObjectStore {
  readonly alg: HashAlgorithm;
  readonly dir: string;
  #ready?: Promise<void>;
  #noVerity = false;

  constructor(dir: string, alg: HashAlgorithm = "sha256") {
    this.dir = dir;
    this.alg = alg;
  }

  pathOf(id: ObjectId): string {
    return `${this.dir}/${id.objectPath()}`;
  }

  #prepare(): Promise<void> {
    return this.#ready ??= Deno.mkdir(this.dir, { recursive: true, mode: 0o755 });
  }

  /** Moves a finished temporary file into place (or drops it when the object exists). */
  async commit(tmp: string, id: ObjectId): Promise<boolean> {
    await Deno.mkdir(`${this.dir}/${id.hex().slice(0, 2)}`, { recursive: true, mode: 0o755 });
    const placed = renameNoReplace(tmp, this.pathOf(id));
    if (!placed) {
      await Deno.remove(tmp).catch(() => {});
      return false;
    }
    this.#tryVerity(this.pathOf(id));
    return true;
  }

  #tryVerity(path: string): void {
    if (this.#noVerity) return;
    const fd = openPath(path, O_RDONLY);
    try {
      enableVerity(fd, this.alg);
    } catch (e) {
      // No fs-verity here (or already enabled): the store still works, like C's fallback.
      if (e instanceof VerityError && e.kind === "unsupported") this.#noVerity = true;
      else if (!(e instanceof VerityError)) throw e;
    } finally {
      closeFd(fd);
    }
  }

  async ensureObject(data: Uint8Array): Promise<ObjectId> {
    const w = this.createObjectWriter();
    await w.write(data);
    return (await w.finish()).id;
  }

  createObjectWriter(): ObjectWriter {
    const prepare = () => this.#prepare();
    const dir = this.dir;
    const commit = (tmp: string, id: ObjectId) => this.commit(tmp, id);
    const hasher = new FsVerityHasher(this.alg);
    let tmp: string | undefined;
    let file: Deno.FsFile | undefined;
    const open = async () => {
      await prepare();
      tmp = `${dir}/.tmp-${crypto.randomUUID()}`;
      file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
    };
    return {
      async write(chunk: Uint8Array) {
        if (!file) await open();
        let off = 0;
        while (off < chunk.length) off += await file!.write(chunk.subarray(off));
        hasher.update(chunk);
      },
      async finish() {
        if (!file) await open();
        file!.close();
        file = undefined;
        const id = hasher.digest();
        const placed = await commit(tmp!, id);
        return { id, size: hasher.size, alreadyPresent: !placed };
      },
      async abort() {
        file?.close();
        file = undefined;
        if (tmp) await Deno.remove(tmp).catch(() => {});
      },
    };
  }
}
