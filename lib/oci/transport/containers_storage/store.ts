// Read-only view of a containers/storage store (what podman, buildah and CRI-O share): where it is
// (storage.conf `graphroot`, or an explicit root), which driver it uses, the image store
// (`<driver>-images/images.json` plus per-image "big data" files) and the layer store
// (`<driver>-layers/layers.json`, `<driver>-layers/<id>.tar-split.gz`, `overlay/<id>/diff`).
// Layout facts: docs/containers-storage.md.
import { FormatError, NotFoundError } from "../../../errors.ts";
import { parseTomlSubset, type TomlTable } from "../registry/toml_subset.ts";
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
  parent?: string;
  diffDigest?: string;
  diffSize?: number;
  compressedDigest?: string;
}

export interface StorageLocation {
  root: string;
  /** The driver named in storage.conf or the reference; undefined when detected from the layout. */
  driver: string;
  /** Where the root came from (for messages). */
  from: string;
}

const STORAGE_CONFS = ["/etc/containers/storage.conf", "/usr/share/containers/storage.conf"];

async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** `[storage]` of the first storage.conf found ($CONTAINERS_STORAGE_CONF, /etc, /usr/share). */
async function storageConf(): Promise<{ table: TomlTable; path: string } | null> {
  const env = Deno.env.get("CONTAINERS_STORAGE_CONF");
  for (const path of env ? [env] : STORAGE_CONFS) {
    const text = await readTextOrNull(path);
    if (text === null) continue;
    const t = parseTomlSubset(text, path);
    const s = t.storage;
    return { table: s && typeof s === "object" && !Array.isArray(s) ? s as TomlTable : {}, path };
  }
  return null;
}

/**
 * The store to read: `explicitRoot` (--storage-root or the reference's `[driver@root]`), else
 * storage.conf's graphroot (root) / rootless_storage_path, else the containers/storage defaults.
 */
export async function locateStorage(
  explicitRoot?: string,
  explicitDriver?: string,
): Promise<StorageLocation> {
  const conf = await storageConf();
  const confDriver = typeof conf?.table.driver === "string" && conf.table.driver
    ? conf.table.driver
    : undefined;
  let root = explicitRoot;
  let from = "--storage-root";
  if (!root) {
    const isRoot = Deno.uid() === 0;
    const key = isRoot ? "graphroot" : "rootless_storage_path";
    const v = conf?.table[key];
    if (typeof v === "string" && v) {
      root = v.replace(/^\$HOME\b/, Deno.env.get("HOME") ?? "");
      from = `${conf!.path} ${key}`;
    } else if (isRoot) {
      root = "/var/lib/containers/storage";
      from = "default";
    } else {
      const data = Deno.env.get("XDG_DATA_HOME") ?? `${Deno.env.get("HOME") ?? ""}/.local/share`;
      root = `${data}/containers/storage`;
      from = "default (rootless)";
    }
  }
  let driver = explicitDriver ?? confDriver;
  if (!driver) driver = await detectDriver(root);
  return { root, driver, from };
}

/** containers/storage's own detection order for an existing store: the first `<driver>-layers` found. */
async function detectDriver(root: string): Promise<string> {
  for (const d of ["overlay", "btrfs", "zfs", "vfs", "devmapper", "aufs"]) {
    try {
      if ((await Deno.stat(`${root}/${d}-layers`)).isDirectory) return d;
    } catch { /* next */ }
  }
  return "overlay";
}

/** Big-data file name of a key (containers/storage makeBigDataBaseName). */
export function bigDataFileName(key: string): string {
  if (/^[a-z0-9.]*$/.test(key)) return key;
  return "=" + btoa(String.fromCharCode(...new TextEncoder().encode(key)));
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

const ID = /^[0-9a-f]{64}$/;

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

  static async open(root: string): Promise<OverlayStore> {
    const imgs = await readJsonArray(`${root}/overlay-images/images.json`, "image store");
    const lays = await readJsonArray(`${root}/overlay-layers/layers.json`, "layer store");
    // Read-only additional layer stores may list more layers (volatile ones live in the runroot).
    const images: StorageImage[] = [];
    for (const i of imgs) {
      const id = str(i.id);
      if (!id || !ID.test(id)) continue;
      images.push({
        id,
        names: Array.isArray(i.names) ? i.names.filter((n): n is string => typeof n === "string") : [],
        digest: str(i.digest),
        digests: Array.isArray(i.digests) ? i.digests.filter((n): n is string => typeof n === "string") : [],
        layer: str(i.layer),
        bigDataNames: Array.isArray(i["big-data-names"])
          ? (i["big-data-names"] as unknown[]).filter((n): n is string => typeof n === "string")
          : [],
      });
    }
    const layers = new Map<string, StorageLayer>();
    for (const l of lays) {
      const id = str(l.id);
      if (!id || !ID.test(id)) continue;
      layers.set(id, {
        id,
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

  /** The image's layers, bottom first (following `parent` links from its top layer). */
  layerChain(image: StorageImage): StorageLayer[] {
    const chain: StorageLayer[] = [];
    const seen = new Set<string>();
    let id = image.layer;
    while (id) {
      if (seen.has(id) || chain.length > 4096) {
        throw new FormatError(`${this.root}: layer parent chain of image ${image.id} loops at ${id}`);
      }
      seen.add(id);
      const l = this.layers.get(id);
      if (!l) throw new NotFoundError(`${this.root}: layer ${id} of image ${image.id} is not in layers.json`);
      chain.push(l);
      id = l.parent;
    }
    return chain.reverse();
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

  diffDir(layer: StorageLayer): string {
    return `${this.root}/overlay/${layer.id}/diff`;
  }

  tarSplitPath(layer: StorageLayer): string {
    return `${this.root}/overlay-layers/${layer.id}.tar-split.gz`;
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
