// A test-only ObjectStore keeping objects in a Map, ids computed with the real fs-verity hasher.
import { FsVerityHasher } from "../../lib/fsverity/hasher.ts";
import type { HashAlgorithm, ObjectId } from "../../lib/fsverity/object_id.ts";
import type { ObjectStore, ObjectWriter } from "../../lib/objects/store.ts";
import { concatBytes } from "../../lib/util/bytes.ts";

export class MemoryStore implements ObjectStore {
  readonly alg: HashAlgorithm;
  readonly objects = new Map<string, Uint8Array>();
  /** Writers created / aborted / finished, to check what a failed import left behind. */
  created = 0;
  aborted = 0;
  finished = 0;

  constructor(alg: HashAlgorithm = "sha256") {
    this.alg = alg;
  }

  ensureObject(data: Uint8Array): Promise<ObjectId> {
    const h = new FsVerityHasher(this.alg);
    h.update(data);
    const id = h.digest();
    if (!this.objects.has(id.hex())) this.objects.set(id.hex(), data.slice());
    return Promise.resolve(id);
  }

  createObjectWriter(): ObjectWriter {
    this.created++;
    const parts: Uint8Array[] = [];
    const h = new FsVerityHasher(this.alg);
    let state: "open" | "done" = "open";
    const objects = this.objects;
    const count = (what: "aborted" | "finished") => this[what]++;
    return {
      write(chunk: Uint8Array): Promise<void> {
        if (state !== "open") throw new Error("write after finish/abort");
        h.update(chunk);
        parts.push(chunk.slice()); // the caller may reuse its buffer
        return Promise.resolve();
      },
      finish() {
        if (state !== "open") throw new Error("finish after finish/abort");
        state = "done";
        count("finished");
        const data = concatBytes(parts);
        const id = h.digest();
        const alreadyPresent = objects.has(id.hex());
        if (!alreadyPresent) objects.set(id.hex(), data);
        return Promise.resolve({ id, size: data.length, alreadyPresent });
      },
      abort() {
        if (state === "open") count("aborted");
        state = "done";
        return Promise.resolve();
      },
    };
  }

  /** Object content as a stream (for reassembly). */
  open(id: ObjectId): ReadableStream<Uint8Array> {
    const data = this.objects.get(id.hex());
    if (!data) throw new Error(`no object ${id.toId()}`);
    return new ReadableStream({
      start(ctl) {
        for (let o = 0; o < data.length; o += 65536) ctl.enqueue(data.subarray(o, o + 65536));
        ctl.close();
      },
    });
  }
}
