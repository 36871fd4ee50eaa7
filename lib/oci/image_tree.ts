// From stored layer streams to the image's file tree and its committed EROFS images (docs/oci.md#flatten,
// #link).
import { FormatError, NotFoundError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import type { Directory } from "../tree/tree.ts";
import { zeroNanoseconds } from "../tree/transform.ts";
import { Flattener } from "./flatten.ts";
import { type EntryContent, type SplitTarEntry, tarEntriesFromSplitstream } from "./layer_split.ts";
import type { TarEntry } from "./tar/entry.ts";
import type { SplitStreamChunk } from "../splitstream/chunk.ts";
import type { SplitStreamReader } from "../splitstream/reader.ts";
import { layerStreamId } from "./tags.ts";

/** Opens a stored layer stream (content type `ocilayer` unless told otherwise). */
export async function openLayerStream(
  repo: Repository,
  diffId: string,
  verity?: ObjectId,
  /** null: any content type (raw artifact blobs too). */
  contentType: bigint | null = CONTENT_TYPE.OCI_LAYER,
): Promise<SplitStreamReader> {
  const id = layerStreamId(diffId);
  const v = verity ?? await repo.hasStream(id);
  if (!v) throw new NotFoundError(`layer ${diffId} is not in the repository`);
  return await repo.openStream(id, v, contentType ?? undefined);
}

/** The chunks of a stored layer stream (opened on the first pull). */
export async function* layerChunks(
  repo: Repository,
  diffId: string,
  verity?: ObjectId,
  /** null: any content type (raw artifact blobs too). */
  contentType: bigint | null = CONTENT_TYPE.OCI_LAYER,
): AsyncGenerator<SplitStreamChunk> {
  yield* (await openLayerStream(repo, diffId, verity, contentType)).chunks();
}

/** Entries of the lowest layer flattened during its import, at most (LiveLayerTree). */
export const LIVE_MAX_ENTRIES = 16_000;

/**
 * The lowest layer flattened while it is split (docs/oci.md#flatten): its entries come from the
 * splitter (`entry`, passed as splitTarInto's onEntry) instead of being read back from its stream
 * after the pull, which took most of the time between the last byte and the end of a pull.
 */
export class LiveLayerTree {
  /** Null once the layer had more than `maxEntries` (then it is read back like the others). */
  #flattener: Flattener | null = new Flattener();
  /** Ids still being stored: filled into their leaves when they arrive. */
  #pending: Promise<unknown>[] = [];
  #entries = 0;

  /**
   * `maxEntries`: a tree built during the import lives beside the import's buffers; past this many
   * entries (the 100,000-file image) it is dropped, so the peak memory stays what it was
   * (docs/performance.md#memory).
   */
  constructor(readonly maxEntries = LIVE_MAX_ENTRIES) {
    this.#flattener!.beginLayer();
  }

  readonly entry = (e: TarEntry, content?: EntryContent): void => {
    if (!this.#flattener) return;
    if (++this.#entries > this.maxEntries) {
      this.#flattener = null;
      this.#pending = [];
      return;
    }
    const se: SplitTarEntry = e;
    if (e.kind === "file" && content !== undefined) {
      if (content instanceof Uint8Array) se.content = { type: "inline", data: content };
      else if (content instanceof Promise) {
        const c: { type: "external"; id: ObjectId; size: number } = {
          type: "external",
          id: undefined as unknown as ObjectId, // filled in before the tree is used (done())
          size: e.size,
        };
        this.#pending.push(content.then((id) => (c.id = id), () => {}));
        se.content = c;
      } else se.content = { type: "external", id: content, size: e.size };
    }
    this.#flattener.apply(se);
  };

  /** The flattener with the layer complete (every id in place); undefined when it was dropped. */
  async done(): Promise<Flattener | undefined> {
    await Promise.all(this.#pending);
    this.#pending = [];
    return this.#flattener ?? undefined;
  }
}

/**
 * Flattens the layers (config order) into one tree, with the OCI root transform applied. `lowest`:
 * the first layer already applied (LiveLayerTree), the others are read from their streams.
 */
export async function buildImageTree(
  repo: Repository,
  diffIds: string[],
  verities?: Map<string, ObjectId>,
  lowest?: Flattener,
): Promise<Directory> {
  const f = lowest ?? new Flattener();
  for (const diffId of lowest ? diffIds.slice(1) : diffIds) {
    f.beginLayer();
    try {
      const layer = await openLayerStream(repo, diffId, verities?.get(diffId));
      for await (const e of tarEntriesFromSplitstream(layer)) {
        f.apply(e);
      }
    } catch (err) {
      if (err instanceof FormatError || err instanceof NotFoundError) err.within(`layer ${diffId}`);
      throw err;
    }
  }
  return f.finish();
}

/**
 * Makes `tree` say what an image of `version` stores, so that a dump of it agrees with the image
 * (docs/c-compatibility.md, "one truth"): the V2 format (composefs-rs) keeps no mtime nanoseconds,
 * so they become 0 (a PAX mtime of 100.5 is 100.0 in a V2 image); V0/V1 store everything. In place.
 */
export function treeAsStoredIn(tree: Directory, version: 0 | 1 | 2): Directory {
  if (version === 2) zeroNanoseconds(tree);
  return tree;
}

export { commitImages, computeImageId } from "../repository/commit_images.ts";
