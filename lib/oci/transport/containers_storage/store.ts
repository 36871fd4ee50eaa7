// Read-only view of a containers/storage overlay store (what podman, buildah and CRI-O share): the
// image store (`overlay-images/images.json` plus per-image "big data" files) and the layer store
// (`overlay-layers/layers.json` and `volatile-layers.json`, `overlay-layers/<id>.tar-split.gz`,
// `overlay/<id>/diff`); and the main store with its additional read-only image stores as one
// (StoreSet). Where the store is: store_config.ts. Layout facts: docs/containers-storage.md.
import { FormatError, NotFoundError } from "../../../errors.ts";
import { parseDockerReference } from "../registry/docker_reference.ts";

export interface StorageImage {
  id: string;
  names: string[];
  digest?: string;
  digests: string[];
  /** Top layer id (absent for an image without layers). */
  layer?: string;
  bigDataNames: string[];
}

export interface StorageLayer {
  id: string;
  /** The store whose layers.json lists it: its diff/ and tar-split are under this root. */
  root: string;
  parent?: string;
  diffDigest?: string;
  diffSize?: number;
  compressedDigest?: string;
}

/** Big-data file name of a key (containers/storage makeBigDataBaseName). */
export function bigDataFileName(key: string): string {
  if (/^[a-z0-9.]*$/.test(key)) return key;
  return "=" + btoa(String.fromCharCode(...new TextEncoder().encode(key)));
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((n): n is string => typeof n === "string") : [];
}

function parseImage(i: Record<string, unknown>): StorageImage | undefined {
  const id = str(i.id);
  if (!id || !ID.test(id)) return undefined;
  return {
    id,
    names: strings(i.names),
    digest: str(i.digest),
    digests: strings(i.digests),
    layer: str(i.layer),
    bigDataNames: strings(i["big-data-names"]),
  };
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

const ID = /^[0-9a-f]{64}$/;

async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

async function readJsonArray(path: string, what: string): Promise<Record<string, unknown>[]> {
  const text = await readTextOrNull(path);
  if (text === null) return [];
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${path}: ${what} is not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(v)) throw new FormatError(`${path}: ${what} is not a JSON array`);
  return v.filter((x) => x && typeof x === "object");
}

/** An overlay-driver store opened for reading. */
export class OverlayStore {
  readonly images: StorageImage[];
  readonly layers: Map<string, StorageLayer>;

  private constructor(readonly root: string, images: StorageImage[], layers: Map<string, StorageLayer>) {
    this.images = images;
    this.layers = layers;
  }

  /** Reads the store's image and layer lists (the caller holds its read locks: store_lock.ts). */
  static async open(root: string): Promise<OverlayStore> {
    const imgs = await readJsonArray(`${root}/overlay-images/images.json`, "image store");
    // Layers made with the volatile flag are listed in volatile-layers.json beside layers.json.
    const lays = [
      ...await readJsonArray(`${root}/overlay-layers/layers.json`, "layer store"),
      ...await readJsonArray(`${root}/overlay-layers/volatile-layers.json`, "layer store"),
    ];
    const images: StorageImage[] = [];
    for (const i of imgs) {
      const image = parseImage(i);
      if (image) images.push(image);
    }
    const layers = new Map<string, StorageLayer>();
    for (const l of lays) {
      const id = str(l.id);
      if (!id || !ID.test(id) || layers.has(id)) continue;
      layers.set(id, {
        id,
        root,
        parent: str(l.parent),
        diffDigest: str(l["diff-digest"]),
        diffSize: typeof l["diff-size"] === "number" ? l["diff-size"] as number : undefined,
        compressedDigest: str(l["compressed-diff-digest"]),
      });
    }
    return new OverlayStore(root, images, layers);
  }

  /**
   * Finds an image by id (full, `sha256:` prefixed, or a unique prefix of at least 6 hex digits),
   * by name as stored (`localhost/x:latest`), or by a docker-style name normalised the way podman
   * does (`busybox` → `docker.io/library/busybox:latest`; `name@sha256:…` by digest).
   */
  findImage(spec: string): StorageImage | undefined {
    const bare = spec.startsWith("sha256:") ? spec.slice(7) : spec;
    if (ID.test(bare)) {
      const hit = this.images.find((i) => i.id === bare);
      if (hit || spec.startsWith("sha256:")) return hit;
    }
    const exact = this.images.find((i) => i.names.includes(spec));
    if (exact) return exact;
    for (const cand of nameCandidates(spec)) {
      if (cand.digest) {
        const hit = this.images.find((i) =>
          (i.digest === cand.digest || i.digests.includes(cand.digest!)) &&
          i.names.some((n) =>
            n.startsWith(cand.repo + ":") || n.startsWith(cand.repo + "@") || n === cand.repo
          )
        );
        if (hit) return hit;
      } else {
        const hit = this.images.find((i) => i.names.includes(cand.name));
        if (hit) return hit;
      }
    }
    if (/^[0-9a-f]{6,63}$/.test(bare)) {
      const hits = this.images.filter((i) => i.id.startsWith(bare));
      if (hits.length === 1) return hits[0];
    }
    return undefined;
  }

  /** Path of an image's big-data item (`manifest`, the config under `sha256:<id>`, …). */
  bigDataPath(image: StorageImage, key: string): string {
    return `${this.root}/overlay-images/${image.id}/${bigDataFileName(key)}`;
  }

  async readBigData(image: StorageImage, key: string, limit: number): Promise<Uint8Array> {
    const path = this.bigDataPath(image, key);
    let f: Deno.FsFile;
    try {
      f = await Deno.open(path, { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new NotFoundError(`image ${image.id}: no ${JSON.stringify(key)} in the image store (${path})`);
      }
      throw e;
    }
    try {
      const size = (await f.stat()).size;
      if (size > limit) throw new FormatError(`${path}: ${size} bytes is larger than ${limit}`);
      const buf = new Uint8Array(size);
      let o = 0;
      while (o < size) {
        const n = await f.read(buf.subarray(o));
        if (n === null) break;
        o += n;
      }
      return buf.subarray(0, o);
    } finally {
      f.close();
    }
  }
}

/** Where a layer's files are extracted. */
export function diffDir(layer: StorageLayer): string {
  return `${layer.root}/overlay/${layer.id}/diff`;
}

/** The layer's tar-split (its tar headers and the order of its files). */
export function tarSplitPath(layer: StorageLayer): string {
  return `${layer.root}/overlay-layers/${layer.id}.tar-split.gz`;
}

/**
 * The main store and its additional read-only image stores, searched in that order as containers/storage
 * does: an image is the first store's match; a layer is looked for in every store's layer list (an
 * image in an additional store normally has its layers there, but may share the main store's).
 */
export class StoreSet {
  constructor(readonly stores: OverlayStore[]) {}

  findImage(spec: string): { store: OverlayStore; image: StorageImage } | undefined {
    for (const store of this.stores) {
      const image = store.findImage(spec);
      if (image) return { store, image };
    }
    return undefined;
  }

  layer(id: string): StorageLayer | undefined {
    for (const s of this.stores) {
      const l = s.layers.get(id);
      if (l) return l;
    }
    return undefined;
  }

  /** The image's layers, bottom first (following `parent` links from its top layer). */
  layerChain(image: StorageImage, imageStore: OverlayStore): StorageLayer[] {
    const chain: StorageLayer[] = [];
    const seen = new Set<string>();
    let id = image.layer;
    while (id) {
      if (seen.has(id) || chain.length > 4096) {
        throw new FormatError(`${imageStore.root}: layer parent chain of image ${image.id} loops at ${id}`);
      }
      seen.add(id);
      const l = this.layer(id);
      if (!l) {
        const where = this.stores.map((s) => s.root).join(", ");
        throw new NotFoundError(`layer ${id} of image ${image.id} is in no layers.json (stores: ${where})`);
      }
      chain.push(l);
      id = l.parent;
    }
    return chain.reverse();
  }
}

/** Names podman would try for a short or docker-style reference. */
function nameCandidates(spec: string): { name: string; repo: string; digest?: string }[] {
  const out: { name: string; repo: string; digest?: string }[] = [];
  let d;
  try {
    d = parseDockerReference(spec);
  } catch {
    return out;
  }
  const repos = [`${d.registry}/${d.repository}`];
  // podman's own builds are named localhost/NAME; a short name may mean one of those.
  if (!spec.includes("/") || !/^[^/]*[.:]|^localhost\//.test(spec)) {
    repos.push(`localhost/${spec.replace(/[:@].*$/, "")}`);
  }
  for (const repo of repos) {
    if (d.digest) out.push({ name: `${repo}@${d.digest}`, repo, digest: d.digest });
    else out.push({ name: `${repo}:${d.tag ?? "latest"}`, repo });
  }
  return out;
}
