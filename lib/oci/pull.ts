// Pulling an image from any ImageSource into the repository (docs/oci.md#verification, docs/oci.md#link),
// written once for every transport. Unlike composefs-rs 0.7.0 every digest is checked (manifest, config,
// compressed blob, diff_id of the uncompressed tar), and the config/manifest streams are written once, after
// the EROFS images exist, so the printed verities name the streams that are kept.
import { FormatError, IntegrityError } from "../errors.ts";
import { humanBytes } from "../util/format.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { nullReporter, type ProgressReporter, ThrottledProgress } from "../progress/events.ts";
import type { Repository } from "../repository/repository.ts";
import { SplitStreamWriter } from "../splitstream/mod.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import { decompressLayer, isTarLayerMediaType } from "./media_types.ts";
import { releaseDecoders, warmDecoders } from "../compress/decompress.ts";
import { digestCheckingStream, parseDigest, verifyDigest } from "./digest.ts";
import { tagImage, writeConfigStream, writeManifestStream } from "./image_store.ts";
import { asImageConfig, asManifest, configDiffIds } from "./json_types.ts";
import { imageRefKey, OciImage } from "./oci_image.ts";
import { buildImageTree, commitImages, LiveLayerTree } from "./image_tree.ts";
import { splitTarInto } from "./layer_split.ts";
import { completeStream } from "../repository/completeness.ts";
import { storedImageComplete } from "./stored_complete.ts";
import { isImageConfigMediaType, MT } from "./media_types.ts";
import { hostPlatform, type Platform } from "./platform.ts";
import { layerStreamId, manifestStreamId, validateTagName } from "./tags.ts";
import { parseJson } from "../util/json.ts";
import { runBounded } from "../util/run_bounded.ts";
import { abortableSource } from "./transport/abortable_source.ts";
import {
  checkDescriptor,
  checkDescriptorSize,
  type Descriptor,
  type ImageSource,
  MAX_JSON_BLOB,
  readAllLimited,
} from "./transport/source.ts";

export interface PullOptions {
  /** Tag to set (default: none; the CLI passes the reference string). */
  name?: string;
  platform?: Platform;
  reporter?: ProgressReporter;
  /** Concurrent layer imports (default: number of cores). */
  concurrency?: number;
  /**
   * Aborts the pull while it fetches: downloads stop at once and no image, config or manifest stream
   * or tag is written. Once every layer is in, the rest is local work and runs to the end.
   */
  signal?: AbortSignal;
}

export interface PullStats {
  layers: number;
  layersSkipped: number;
  objectsNew: number;
  objectsPresent: number;
  bytesStored: number;
  bytesInlined: number;
  bytesFetched: number;
}

export interface PullResult {
  manifestDigest: string;
  configDigest: string;
  manifestVerity: ObjectId;
  configVerity: ObjectId;
  tag?: string;
  isContainer: boolean;
  /** EROFS image ids linked from the config, by config key (composefs.image, composefs.image.v1). */
  images: Map<string, ObjectId>;
  stats: PullStats;
}

export function formatStats(s: PullStats): string {
  return `${s.objectsNew} new + ${s.objectsPresent} already present objects; ${
    humanBytes(s.bytesStored)
  } stored, ${humanBytes(s.bytesInlined)} inlined`;
}

/** Refuses a digest that is not `sha256:<64 hex>` (other algorithms cannot be stored by name). */
function sha256Only(digest: string, what: string): void {
  const { alg } = parseDigest(digest, what);
  if (alg !== "sha256") {
    throw new FormatError(
      `${what} ${digest}: only sha256 digests are supported for manifests, configs and layers`,
    );
  }
}

/**
 * A layer's stream stored; its sync and `streams/oci-layer-…` link go on in the background (added to
 * `links`), so the image build overlaps the last layer's sync (docs/performance.md#shaped-pull).
 */
async function storeLayerStream(
  repo: Repository,
  key: string,
  w: SplitStreamWriter,
  links: Promise<void>[],
): Promise<ObjectId> {
  const { id, linked } = await repo.storeStream(layerStreamId(key), w);
  links.push(linked);
  return id;
}

/** Imports one layer blob (any tar media type, or a raw artifact blob); returns its stream verity. */
async function importLayer(
  repo: Repository,
  source: ImageSource,
  desc: Descriptor,
  key: string,
  isTar: boolean,
  reporter: ProgressReporter,
  stats: PullStats,
  links: Promise<void>[],
  live?: LiveLayerTree,
): Promise<ObjectId> {
  parseDigest(desc.digest, "layer digest");
  if (isTar && source.splitLayer) {
    // The source imports the layer itself (containers-storage: files in place, no blob).
    reporter.report({ type: "started", id: key, unit: "bytes" });
    const progress = new ThrottledProgress(reporter, key);
    let last = 0;
    const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_LAYER);
    const r = await source.splitLayer(desc, key, repo, w, (done) => {
      progress.add(done - last);
      last = done;
    });
    stats.bytesStored += r.externalSize;
    stats.bytesInlined += r.inlineSize;
    const verity = await storeLayerStream(repo, key, w, links);
    progress.flush();
    reporter.report({ type: "done", id: key, transferred: progress.done });
    return verity;
  }
  reporter.report({ type: "started", id: key, total: desc.size, unit: "bytes" });
  const progress = new ThrottledProgress(reporter, key, desc.size);
  const counted = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, ctl) {
      progress.add(chunk.length);
      ctl.enqueue(chunk);
    },
  });
  const raw = (await source.getBlob(desc))
    .pipeThrough(digestCheckingStream(desc.digest, `layer ${desc.digest}`, desc.size))
    .pipeThrough(counted);
  let verity: ObjectId;
  if (isTar) {
    const tar = decompressLayer(raw, desc.mediaType);
    const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_LAYER);
    const r = await splitTarInto(tar, repo, w, { expectedDiffId: key, onEntry: live?.entry }).catch((e) => {
      w.discard(); // frees its zstd encoder now
      throw e;
    });
    stats.bytesStored += r.externalSize;
    stats.bytesInlined += r.inlineSize;
    verity = await storeLayerStream(repo, key, w, links);
  } else {
    // Artifact layer: the raw blob as one object in an oci_blob splitstream (docs/oci.md#identifiers).
    const ow = repo.createObjectWriter();
    try {
      for await (const chunk of raw) await ow.write(chunk);
    } catch (e) {
      await ow.abort();
      throw e;
    }
    const { id, size, alreadyPresent } = await ow.finish();
    if (!alreadyPresent) stats.bytesStored += size;
    const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_BLOB);
    w.writeExternal(id, size);
    verity = await storeLayerStream(repo, key, w, links);
  }
  progress.flush();
  stats.bytesFetched += progress.done;
  reporter.report({ type: "done", id: key, transferred: progress.done });
  return verity;
}

/** A manifest fetched from the source and checked, with what the pull reads from it. */
interface PullPlan {
  digest: string;
  bytes: Uint8Array;
  configDesc: Descriptor;
  layers: Descriptor[];
  isContainer: boolean;
}

/**
 * Fetches the manifest for the platform and checks every descriptor before anything else is fetched;
 * sizes are then held to (config here, layers by digestCheckingStream). The repository names
 * manifests, configs and layer streams by sha256 digests (as composefs-rs does), so other algorithms
 * are refused here, not half-stored.
 */
async function fetchManifest(source: ImageSource, platform: Platform): Promise<PullPlan> {
  const resolved = await source.getManifest(platform);
  verifyDigest(resolved.bytes, resolved.digest, `${source.description}: manifest`);
  const manifest = asManifest(
    parseJson(resolved.bytes, `${source.description}: manifest ${resolved.digest}`),
  );
  if (!manifest) throw new FormatError(`${source.description}: manifest ${resolved.digest} has no config`);
  const configDesc: Descriptor = manifest.config;
  const layers: Descriptor[] = manifest.layers;
  sha256Only(resolved.digest, `${source.description}: manifest digest`);
  checkDescriptor(configDesc, `${source.description}: config`, MAX_JSON_BLOB);
  sha256Only(configDesc.digest, `${source.description}: config digest`);
  layers.forEach((l, i) => checkDescriptor(l, `${source.description}: layer ${i}`));
  const isContainer = isImageConfigMediaType(configDesc.mediaType) ||
    (configDesc.mediaType === undefined && resolved.mediaType === MT.DOCKER_MANIFEST);
  return { digest: resolved.digest, bytes: resolved.bytes, configDesc, layers, isContainer };
}

/** Re-pull of a complete image: nothing to fetch, only (re)tag. Undefined when something is missing. */
async function alreadyStored(
  repo: Repository,
  plan: PullPlan,
  opts: PullOptions,
  reporter: ProgressReporter,
  stats: PullStats,
): Promise<PullResult | undefined> {
  if (!(await repo.hasStream(manifestStreamId(plan.digest)))) return undefined;
  const wanted = repo.erofsVersions();
  try {
    const img = await OciImage.openManifest(repo, plan.digest);
    // Everything the tag would rely on must still be there (a killed gc, a lost object): else pull.
    const complete = (!img.isContainer || wanted.every((v) => img.imageId(v) !== undefined)) &&
      await storedImageComplete(img, wanted);
    if (!complete) return undefined;
    reporter.report({ type: "message", text: `Already have manifest ${plan.digest}` });
    if (opts.name !== undefined) await tagImage(repo, plan.digest, opts.name);
    stats.layersSkipped = plan.layers.length;
    return {
      manifestDigest: plan.digest,
      configDigest: img.configDigest,
      manifestVerity: img.manifest!.verity,
      configVerity: img.config.verity,
      tag: opts.name,
      isContainer: img.isContainer,
      images: img.imageIds,
      stats,
    };
  } catch {
    return undefined; // damaged or incomplete: pull again
  }
}

/** Fetches the config (small JSON: size and digest checked before it is parsed); returns it and the layer keys. */
async function fetchConfig(
  source: ImageSource,
  plan: PullPlan,
): Promise<{ bytes: Uint8Array; keys: string[] }> {
  const { configDesc, layers } = plan;
  const bytes = await readAllLimited(await source.getBlob(configDesc), configDesc.size, "config");
  checkDescriptorSize(bytes, configDesc, `${source.description}: config`);
  verifyDigest(bytes, configDesc.digest, `${source.description}: config`);
  const config = asImageConfig(parseJson(bytes, `config ${configDesc.digest}`));
  if (!plan.isContainer) {
    const keys = layers.map((l) => l.digest);
    for (const k of keys) sha256Only(k, `${source.description}: artifact layer digest`);
    return { bytes, keys };
  }
  const keys = configDiffIds(config);
  if (!keys) throw new FormatError(`config ${configDesc.digest}: rootfs.diff_ids missing or malformed`);
  if (keys.length !== layers.length) {
    throw new FormatError(
      `config ${configDesc.digest} lists ${keys.length} diff_ids but the manifest has ${layers.length} layers`,
    );
  }
  for (const k of keys) sha256Only(k, `config ${configDesc.digest}: diff_id`);
  for (const l of layers) {
    if (!isTarLayerMediaType(l.mediaType)) {
      throw new FormatError(`layer ${l.digest}: media type ${l.mediaType} is not a tar layer`);
    }
  }
  return { bytes, keys };
}

/**
 * Layer stream verity by key: complete ones kept, missing ones fetched in parallel, largest first.
 * The lowest layer, when it is fetched, is flattened on the way (`live`).
 */
async function importLayers(
  repo: Repository,
  source: ImageSource,
  plan: PullPlan,
  keys: string[],
  opts: PullOptions,
  reporter: ProgressReporter,
  stats: PullStats,
): Promise<{ layerVerity: Map<string, ObjectId>; live?: LiveLayerTree; links: Promise<void>[] }> {
  const { layers } = plan;
  const links: Promise<void>[] = [];
  const layerVerity = new Map<string, ObjectId>();
  const todo: number[] = [];
  for (let i = 0; i < layers.length; i++) {
    const have = await completeStream(repo, layerStreamId(keys[i])); // missing objects: import again
    if (have) {
      layerVerity.set(keys[i], have);
      stats.layersSkipped++;
      reporter.report({ type: "skipped", id: keys[i] });
    } else todo.push(i);
  }
  todo.sort((a, b) => (layers[b].size ?? 0) - (layers[a].size ?? 0));
  const seen = new Set<string>();
  const unique = todo.filter((i) => !seen.has(keys[i]) && seen.add(keys[i]));
  // The layers' decoding thread starts while the first downloads are being requested.
  if (plan.isContainer && !source.splitLayer && unique.length > 0) warmDecoders();
  const before = repo.objects.counts();
  // Not for sources that split layers themselves (containers-storage: no tar passes through here).
  const live = plan.isContainer && !source.splitLayer && unique.some((i) => keys[i] === keys[0])
    ? new LiveLayerTree()
    : undefined;
  try {
    await runBounded(unique, opts.concurrency ?? navigator.hardwareConcurrency ?? 2, async (i) => {
      try {
        const onLive = keys[i] === keys[0] ? live : undefined;
        layerVerity.set(
          keys[i],
          await importLayer(
            repo,
            source,
            layers[i],
            keys[i],
            plan.isContainer,
            reporter,
            stats,
            links,
            onLive,
          ),
        );
      } catch (e) {
        if (e instanceof Error && "within" in e) (e as IntegrityError).within(`layer ${layers[i].digest}`);
        throw e;
      }
    });
  } catch (e) {
    // Layers that did complete stay usable: their links land before the failure is reported.
    await Promise.allSettled(links);
    throw e;
  } finally {
    releaseDecoders(); // its memory is better spent on the image build
  }
  opts.signal?.throwIfAborted();
  const after = repo.objects.counts();
  // Each imported layer also stored its splitstream as one object: count file contents only.
  stats.objectsNew = Math.max(0, after.written - before.written - unique.length);
  stats.objectsPresent = after.present - before.present;
  return { layerVerity, live, links };
}

export async function pullImage(
  repo: Repository,
  source: ImageSource,
  opts: PullOptions = {},
): Promise<PullResult> {
  const reporter = opts.reporter ?? nullReporter;
  if (opts.name !== undefined) validateTagName(opts.name);
  if (opts.signal) source = abortableSource(source, opts.signal);
  await repo.checkWritable();
  const plan = await fetchManifest(source, opts.platform ?? hostPlatform());
  const stats: PullStats = {
    layers: plan.layers.length,
    layersSkipped: 0,
    objectsNew: 0,
    objectsPresent: 0,
    bytesStored: 0,
    bytesInlined: 0,
    bytesFetched: 0,
  };
  const stored = await alreadyStored(repo, plan, opts, reporter, stats);
  if (stored) return stored;

  const config = await fetchConfig(source, plan);
  const keys = config.keys;
  reporter.report({
    type: "plan",
    components: plan.layers.map((l, i) => ({ id: keys[i], total: l.size, skipped: false })),
  });
  const { layerVerity, live, links } = await importLayers(repo, source, plan, keys, opts, reporter, stats);

  // The EROFS images first, then the config and manifest streams that link them (written once).
  const layerRefs: [string, ObjectId][] = keys.map((k) => [k, layerVerity.get(k)!]);
  const images = new Map<string, ObjectId>();
  if (plan.isContainer) {
    try {
      const tree = await buildImageTree(repo, keys, layerVerity, await live?.done());
      for (const [version, id] of await commitImages(repo, tree)) images.set(imageRefKey(version), id);
    } catch (e) {
      // The layers are stored and good: their links still land, so a retry does not download them again.
      await Promise.allSettled(links);
      throw e;
    }
  }
  // Every layer stream linked before the config and manifest streams that name them.
  await Promise.all(links);
  const configDigest = plan.configDesc.digest;
  const configVerity = await writeConfigStream(repo, configDigest, config.bytes, layerRefs, [...images]);
  const manifestVerity = await writeManifestStream(
    repo,
    plan.digest,
    plan.bytes,
    configDigest,
    configVerity,
    layerRefs,
  );
  if (opts.name !== undefined) await tagImage(repo, plan.digest, opts.name);
  return {
    manifestDigest: plan.digest,
    configDigest,
    manifestVerity,
    configVerity,
    tag: opts.name,
    isContainer: plan.isContainer,
    images,
    stats,
  };
}
