// `containers-storage:` images read straight from an overlay-driver store (docs/containers-storage.md), no
// skopeo: the manifest and config come from the image store's big-data files, layers are imported from
// diff/ + tar-split by lib/oci/pull.ts calling splitLayer(). The main store and its additional image
// stores are read-locked from opening to close() (store_lock.ts). Stores with other drivers, a missing
// store, or (in auto mode) an image no store has go to the skopeo proxy instead (openContainersStorage
// returns null). Reference syntax and limits: docs/containers-storage.md.
import {
  CfsError,
  describeError,
  FormatError,
  InternalError,
  InvalidArgumentError,
  KernelError,
  NotFoundError,
  PermissionError,
} from "../../../errors.ts";
import { Errno } from "../../../linux/libc.ts";
import type { Repository } from "../../../repository/repository.ts";
import type { SplitSink } from "../../layer_split.ts";
import { MT } from "../../media_types.ts";
import type { Platform } from "../../platform.ts";
import { parseJson } from "../../../util/json.ts";
import { type Descriptor, type ImageSource, MAX_JSON_BLOB, type ResolvedManifest } from "../source.ts";
import {
  importOverlayLayer,
  type LocalFetchMode,
  type LocalFetchStats,
  ZeroCopyState,
} from "./layer_import.ts";
import {
  diffDir,
  OverlayStore,
  type StorageImage,
  type StorageLayer,
  StoreSet,
  tarSplitPath,
} from "./store.ts";
import { locateStorage, type StorageLocation } from "./store_config.ts";
import { type StoreLockOptions, StoreReadLocks } from "./store_lock.ts";
import { createHash } from "node:crypto";

export interface ContainersStorageOptions {
  mode: LocalFetchMode;
  /** `--storage-root`: the store's graphroot (else the reference's `[driver@root]`, else storage.conf). */
  storageRoot?: string;
  /** `--storage-trust-diff-ids`: take each layer's diff_id from the store instead of re-hashing it. */
  trustDiffIds?: boolean;
  /** Told when a store's lock is held for writing (podman is changing it) and the open waits. */
  onLockWait?: StoreLockOptions["onWait"];
}

export interface ParsedStorageReference {
  driver?: string;
  root?: string;
  image: string;
}

/** `containers-storage:[driver@root+runroot:options]IMAGE` (the store part is optional). */
export function parseStorageReference(ref: string): ParsedStorageReference {
  let rest = ref.replace(/^containers-storage:/, "");
  let driver: string | undefined;
  let root: string | undefined;
  if (rest.startsWith("[")) {
    const end = rest.indexOf("]");
    if (end < 0) {
      throw new InvalidArgumentError(
        `invalid containers-storage reference ${JSON.stringify(ref)}: missing ]`,
      );
    }
    let spec = rest.slice(1, end);
    rest = rest.slice(end + 1);
    const at = spec.indexOf("@");
    if (at >= 0) {
      driver = spec.slice(0, at) || undefined;
      spec = spec.slice(at + 1);
    }
    root = spec.split(/[+:]/)[0] || undefined;
  }
  if (!rest) {
    throw new InvalidArgumentError(`invalid containers-storage reference ${JSON.stringify(ref)}: no image`);
  }
  return { driver, root, image: rest };
}

function sha256(b: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

export class ContainersStorageSource implements ImageSource {
  readonly description: string;
  readonly state = new ZeroCopyState();
  #layers: StorageLayer[];
  #configKey: string;

  /** `locks` (released by close()) must be held on every store of `stores`. */
  constructor(
    readonly stores: StoreSet,
    readonly store: OverlayStore,
    readonly image: StorageImage,
    readonly opts: ContainersStorageOptions,
    readonly locks?: StoreReadLocks,
  ) {
    this.description = `containers-storage:[overlay@${store.root}]${image.id}`;
    this.#layers = stores.layerChain(image, store);
    this.#configKey = `sha256:${image.id}`;
  }

  /** Objects reflinked / hard-linked / copied / found present so far (for the pull summary). */
  get localFetchStats(): LocalFetchStats {
    return this.state.stats;
  }

  async getManifest(platform: Platform): Promise<ResolvedManifest> {
    const bytes = await this.store.readBigData(this.image, "manifest", MAX_JSON_BLOB);
    const m = parseJson(bytes, `${this.description}: manifest`);
    const mediaType = typeof m?.mediaType === "string" ? m.mediaType : MT.OCI_MANIFEST;
    if (Array.isArray(m?.manifests)) {
      // A list stored as the image's manifest: its instance for this platform is kept as manifest-<digest>.
      const inst = (m.manifests as Descriptor[]).find((d) =>
        d.platform?.os === platform.os && d.platform?.architecture === platform.architecture &&
        (!platform.variant || d.platform?.variant === platform.variant)
      );
      if (!inst) {
        throw new NotFoundError(
          `${this.description}: no manifest for ${platform.os}/${platform.architecture}`,
        );
      }
      const ib = await this.store.readBigData(this.image, `manifest-${inst.digest}`, MAX_JSON_BLOB);
      return { bytes: ib, digest: sha256(ib), mediaType: inst.mediaType };
    }
    return { bytes, digest: sha256(bytes), mediaType };
  }

  async getBlob(desc: Descriptor): Promise<ReadableStream<Uint8Array>> {
    if (desc.digest === this.#configKey) {
      const bytes = await this.store.readBigData(this.image, this.#configKey, MAX_JSON_BLOB);
      return ReadableStream.from([bytes]);
    }
    throw new FormatError(
      `${this.description}: blob ${desc.digest} is not served as a blob (layers are imported from diff/)`,
    );
  }

  /** The image's layer with this diff_id (the same content may appear twice: either will do). */
  #layerFor(diffId: string): StorageLayer {
    const l = this.#layers.find((x) => x.diffDigest === diffId);
    if (!l) {
      throw new FormatError(
        `${this.description}: no layer with diff_id ${diffId} in the image's layer chain (${this.#layers.length} layers)`,
      );
    }
    return l;
  }

  async splitLayer(
    _desc: Descriptor,
    diffId: string,
    repo: Repository,
    sink: SplitSink,
    onProgress: (done: number, total?: number) => void,
  ): Promise<{ size: number; externalSize: number; inlineSize: number }> {
    const layer = this.#layerFor(diffId);
    if (this.opts.mode === "disabled") throw new InternalError("local fetch disabled");
    let done = 0;
    return await importOverlayLayer(
      tarSplitPath(layer),
      diffDir(layer),
      repo.objects,
      sink,
      this.state,
      {
        mode: this.opts.mode,
        verifyDiffId: this.opts.trustDiffIds ? undefined : diffId,
        insecure: repo.insecure,
        onProgress: (n) => onProgress(done += n, layer.diffSize),
      },
    ).catch((e) => {
      const r = rootlessHint(e, layer.root);
      throw r instanceof CfsError ? r.within(`layer ${layer.id}`) : r;
    });
  }

  /** Ends the import: the prefetch thread, then the stores' read locks. */
  async close(): Promise<void> {
    try {
      await this.state.close();
    } finally {
      this.locks?.release();
    }
  }
}

function denied(e: unknown): boolean {
  return e instanceof PermissionError || e instanceof Deno.errors.PermissionDenied ||
    (e instanceof KernelError && (e.errno === Errno.EACCES || e.errno === Errno.EPERM));
}

/**
 * A permission error met by a caller that is not root: in a rootless store most files belong to
 * sub-uids that only the user namespace podman sets up can read, so say how to get in there.
 */
function rootlessHint(e: unknown, root: string): unknown {
  if (!denied(e) || Deno.uid() === 0) return e;
  // The whole first error goes into the message (not as the cause, whose context would repeat).
  return new PermissionError(
    `cannot read containers-storage at ${root} as uid ${Deno.uid()}: ${describeError(e)}; the files of ` +
      "a rootless store belong to the user's sub-uids: run cfsctl inside podman's user namespace, " +
      "`podman unshare cfsctl …`",
  );
}

/** The stores to search that exist: the main one (if it does), then each additional image store. */
async function existingStores(loc: StorageLocation, strict: boolean): Promise<string[] | null> {
  const roots: string[] = [];
  for (const [i, root] of [loc.root, ...loc.additionalImageStores].entries()) {
    try {
      await Deno.stat(`${root}/overlay-images`);
      roots.push(root);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      if (!strict) return null;
      const where = i === 0 ? loc.from : "additional image store";
      if (e instanceof Deno.errors.PermissionDenied) {
        throw new PermissionError(
          `containers-storage image store at ${root} (${where}) is not readable as uid ${Deno.uid()}`,
          { cause: e },
        );
      }
      throw e;
    }
  }
  if (roots.length || !strict) return roots.length ? roots : null;
  throw new NotFoundError(`no containers-storage image store at ${loc.root} (${loc.from})`);
}

/**
 * The native source for `ref`, or null where the skopeo proxy should serve it: the store uses a
 * driver other than overlay, does not exist, or (mode auto) no store has the image. In zerocopy mode
 * a missing store or image is an error (the user asked for this path). The returned source holds
 * read locks on the stores until its close().
 */
export async function openContainersStorage(
  ref: string,
  opts: ContainersStorageOptions,
): Promise<ContainersStorageSource | null> {
  if (opts.mode === "disabled") return null;
  const parsed = parseStorageReference(ref);
  const loc = await locateStorage(opts.storageRoot ?? parsed.root, parsed.driver);
  const strict = opts.mode === "zerocopy";
  if (loc.driver !== "overlay") {
    if (strict) {
      throw new InvalidArgumentError(
        `--local-fetch zerocopy: storage driver ${loc.driver} at ${loc.root} is not overlay`,
      );
    }
    return null;
  }
  const roots = await existingStores(loc, strict);
  if (!roots) return null;
  const locks = await StoreReadLocks.acquire(roots, "overlay", { onWait: opts.onLockWait })
    .catch((e) => {
      throw rootlessHint(e, roots[0]);
    });
  try {
    const set = new StoreSet(await Promise.all(roots.map((r) => OverlayStore.open(r))));
    const hit = set.findImage(parsed.image);
    if (!hit) {
      locks.release();
      if (!strict) return null;
      throw new NotFoundError(
        `image ${JSON.stringify(parsed.image)} is not in containers-storage at ${roots.join(", ")}`,
      );
    }
    return new ContainersStorageSource(set, hit.store, hit.image, opts, locks);
  } catch (e) {
    locks.release();
    throw rootlessHint(e, roots[0]);
  }
}
