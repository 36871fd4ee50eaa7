// The contract between code that produces objects (layer splitting, directory scanning, image
// commits) and the repository that stores them. Repository implements it; tests may use any store.
import type { HashAlgorithm, ObjectId } from "../fsverity/object_id.ts";

/** Streams one object into the store; its id (fs-verity digest) is computed while bytes flow past. */
export interface ObjectWriter {
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Optional: writes `chunk` now, on this thread, and returns true; false when this writer cannot
   * (not opened yet — one awaited write() opens it — or no file descriptor to write to): nothing
   * was written, use write(). The caller may reuse `chunk` as soon as this returns.
   */
  writeSync?(chunk: Uint8Array): boolean;
  /** Makes the object visible under its final name (atomically) and returns its id. */
  finish(): Promise<{ id: ObjectId; size: number; alreadyPresent: boolean }>;
  /** Discards everything written; nothing becomes visible. */
  abort(): Promise<void>;
}

export interface ObjectStore {
  readonly alg: HashAlgorithm;
  /** Stores in-memory bytes (deduplicated) and returns the object id. */
  ensureObject(data: Uint8Array): Promise<ObjectId>;
  /**
   * Optional: like ensureObject, but `data` is only read before this returns (the caller reuses its
   * buffer), and the id may come back directly when the object was stored synchronously.
   */
  ensureObjectBorrowed?(data: Uint8Array): ObjectId | Promise<ObjectId>;
  /**
   * Optional: waits until every object whose id was handed out is on disk (a store may write in the
   * background); rejects with the first write error. Nothing may refer to objects before this.
   */
  settle?(): Promise<void>;
  createObjectWriter(): ObjectWriter;
}
