// The cfsctl varlink service (docs/varlink.md): org.composefs.Repository and
// org.composefs.Oci on one socket, plus org.varlink.service. Repositories are addressed by handles
// (1, 2, …, never reused in one process); a connection's handles are released when it closes.
import { fsckReportFields } from "../repository/fsck_json.ts";
import { describeError, NotFoundError } from "../errors.ts";
import { collectObjects } from "../erofs/reader.ts";
import { writeErofs } from "../erofs/writer.ts";
import { fsverityDigest } from "../fsverity/hasher.ts";
import { ociFsck } from "../oci/fsck.ts";
import {
  imageRefKey,
  listImages,
  openConfig,
  openManifest,
  resolveManifestDigest,
  tagImage,
  untagImage,
} from "../oci/image_store.ts";
import { buildImageTree } from "../oci/image_tree.ts";
import { formatStats, pullImage } from "../oci/pull.ts";
import { parseImageReference } from "../oci/reference.ts";
import { openImageSource } from "../oci/transport/open_source.ts";
import { remoteSourceFactory } from "../oci/transport/registry/open_remote.ts";
import type { ProgressEvent } from "../progress/events.ts";
import type { FsckReport } from "../repository/fsck.ts";
import { SYSTEM_REPO_PATH, userRepoPath } from "../repository/location.ts";
import { type OpenOptions, Repository } from "../repository/repository.ts";
import {
  AT_FDCWD,
  AT_RECURSIVE,
  MNT_DETACH,
  OPEN_TREE_CLONE,
  openTree,
  umount2,
} from "../linux/mount_api.ts";
import { mountRepositoryImage } from "../mount/repository_image.ts";
import { INTERFACES } from "./interfaces.ts";
import {
  type ConnectionInfo,
  type ReplySink,
  type VarlinkCall,
  VarlinkError,
  type VarlinkService,
} from "./server.ts";

const REPO = "org.composefs.Repository";
const OCI = "org.composefs.Oci";
const SVC = "org.varlink.service";

export interface ServiceInfo {
  version: string;
}

type Params = Record<string, unknown>;

function invalid(parameter: string): never {
  throw new VarlinkError(`${SVC}.InvalidParameter`, { parameter });
}
function str(p: Params, k: string): string;
function str(p: Params, k: string, optional: true): string | undefined;
function str(p: Params, k: string, optional = false): string | undefined {
  const v = p[k];
  if (v === undefined || v === null) return optional ? undefined : invalid(k);
  return typeof v === "string" ? v : invalid(k);
}
function bool(p: Params, k: string, optional = false): boolean | undefined {
  const v = p[k];
  if (v === undefined || v === null) return optional ? undefined : invalid(k);
  return typeof v === "boolean" ? v : invalid(k);
}
function int(p: Params, k: string): number {
  const v = p[k];
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : invalid(k);
}
function strings(p: Params, k: string): string[] {
  const v = p[k];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) return invalid(k);
  return v as string[];
}

function message(e: unknown): string {
  return describeError(e);
}

function fsckReply(r: FsckReport): Params {
  return fsckReportFields(r);
}

/** A library progress event as a Pull frame (exactly one field set), or null for events not sent. */
export function pullFrame(e: ProgressEvent): Params | null {
  switch (e.type) {
    case "started":
      return { started: { id: e.id, total: e.total, unit: e.unit === "bytes" ? "Bytes" : "Items" } };
    case "progress":
      return { progress: { id: e.id, fetched: e.done, total: e.total } };
    case "skipped":
      return { skipped: { id: e.id } };
    case "done":
      return { done: { id: e.id, transferred: e.transferred } };
    case "message":
      return { message: e.text };
    default:
      return null;
  }
}

const OPEN_TREE_CLOEXEC = 0o2000000;

/** `options` of Mount/OciMount: {overlay?, read_write?}. */
function mountOptions(p: Params): { overlay: boolean; readWrite: boolean } {
  const o = p.options ?? {};
  if (typeof o !== "object" || o === null || Array.isArray(o)) return invalid("options");
  const overlay = bool(o as Params, "overlay", true) ?? false;
  const readWrite = bool(o as Params, "read_write", true) ?? false;
  if (readWrite && !overlay) return invalid("options");
  return { overlay, readWrite };
}

/**
 * Mounts `images/<name>` of `repo` as a detached mount and returns its descriptor: mounted on a
 * private temporary directory, cloned with open_tree(OPEN_TREE_CLONE), and the directory's mount
 * lazily detached again (the clone lives on while its descriptor is open).
 */
async function mountDetached(
  repo: Repository,
  name: string,
  fds: number[],
  opts: { overlay: boolean; readWrite: boolean },
): Promise<number> {
  if (opts.overlay && fds.length < 2) invalid("fds");
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-varlink-mount-" });
  try {
    await mountRepositoryImage(repo, name, dir, {
      upperdir: opts.overlay ? `/proc/self/fd/${fds[0]}` : undefined,
      workdir: opts.overlay ? `/proc/self/fd/${fds[1]}` : undefined,
      readWrite: opts.readWrite,
    });
    try {
      return openTree(AT_FDCWD, dir, OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC);
    } finally {
      try {
        umount2(dir, MNT_DETACH);
      } catch { /* already gone */ }
    }
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

interface Handle {
  repo: Repository;
  owner: number;
}

export class CfsctlService implements VarlinkService {
  #handles = new Map<number, Handle>();
  #next = 0;
  constructor(
    private info: ServiceInfo,
    private openOpts: Pick<OpenOptions, "insecure" | "requireVerity" | "noUpgrade"> = {},
  ) {}

  /** Repositories still open (for tests and shutdown). */
  get openHandles(): number {
    return this.#handles.size;
  }

  closed(conn: ConnectionInfo): void {
    for (const [h, e] of this.#handles) {
      if (e.owner !== conn.id) continue;
      e.repo.close();
      this.#handles.delete(h);
    }
  }

  closeAll(): void {
    for (const e of this.#handles.values()) e.repo.close();
    this.#handles.clear();
  }

  #repo(p: Params, iface: string): Repository {
    const handle = int(p, "handle");
    const e = this.#handles.get(handle);
    if (!e) throw new VarlinkError(`${iface}.InvalidHandle`, { handle });
    return e.repo;
  }

  async handle(call: VarlinkCall, sink: ReplySink, conn: ConnectionInfo): Promise<Params> {
    const p = call.parameters;
    const dot = call.method.lastIndexOf(".");
    const iface = call.method.slice(0, dot);
    const name = call.method.slice(dot + 1);
    if (!(iface in INTERFACES)) throw new VarlinkError(`${SVC}.InterfaceNotFound`, { interface: iface });
    const internal = (ifc: string) => (e: unknown): never => {
      if (e instanceof VarlinkError) throw e;
      throw new VarlinkError(`${ifc}.InternalError`, { message: message(e) });
    };

    if (iface === SVC) {
      if (name === "GetInfo") {
        return {
          vendor: "org.composefs",
          product: "cfsctl",
          version: this.info.version,
          url: "https://github.com/containers/composefs-rs",
          interfaces: Object.keys(INTERFACES),
        };
      }
      if (name === "GetInterfaceDescription") {
        const want = str(p, "interface");
        const d = INTERFACES[want];
        if (d === undefined) throw new VarlinkError(`${SVC}.InterfaceNotFound`, { interface: want });
        return { description: d };
      }
    }

    if (iface === REPO) {
      switch (name) {
        case "InitRepository": {
          const path = str(p, "path");
          const algorithm = str(p, "algorithm", true) ?? "fsverity-sha512-12";
          if (algorithm !== "fsverity-sha512-12" && algorithm !== "fsverity-sha256-12") {
            throw new VarlinkError(`${REPO}.InvalidSpec`, {
              message: `invalid algorithm ${
                JSON.stringify(algorithm)
              } (fsverity-sha256-12 or fsverity-sha512-12)`,
            });
          }
          const insecure = bool(p, "insecure", true) ?? this.openOpts.insecure ?? false;
          const r = await Repository.init(path, { algorithm, insecure }).catch(internal(REPO));
          return { created: r.created };
        }
        case "OpenRepository": {
          const path = str(p, "path", true);
          const user = bool(p, "user", true) ?? false;
          const system = bool(p, "system", true) ?? false;
          if ((path !== undefined ? 1 : 0) + (user ? 1 : 0) + (system ? 1 : 0) !== 1) {
            throw new VarlinkError(`${REPO}.InvalidSpec`, {
              message: "exactly one of `path`, `user`, `system` must be set",
            });
          }
          let where: string;
          try {
            where = path ?? (system ? SYSTEM_REPO_PATH : userRepoPath());
          } catch (e) {
            throw new VarlinkError(`${REPO}.InvalidSpec`, { message: message(e) });
          }
          let repo: Repository;
          try {
            repo = await Repository.open(where, this.openOpts);
          } catch (e) {
            throw new VarlinkError(`${REPO}.RepoNotFound`, { message: message(e) });
          }
          const handle = ++this.#next;
          this.#handles.set(handle, { repo, owner: conn.id });
          return { handle };
        }
        case "CloseRepository": {
          const handle = int(p, "handle");
          const e = this.#handles.get(handle);
          if (!e) throw new VarlinkError(`${REPO}.InvalidHandle`, { handle });
          e.repo.close();
          this.#handles.delete(handle);
          return {};
        }
        case "Fsck": {
          const repo = this.#repo(p, REPO);
          const metadataOnly = bool(p, "metadata_only", true) ?? false;
          return fsckReply(await repo.fsck({ metadataOnly }).catch(internal(REPO)));
        }
        case "Gc": {
          const repo = this.#repo(p, REPO);
          const dryRun = bool(p, "dry_run")!;
          const roots = strings(p, "roots");
          const r = await repo.gc({ dryRun, roots }).catch(internal(REPO));
          return {
            result: {
              objects_removed: r.objectsRemoved,
              objects_bytes: r.bytesRemoved,
              images_pruned: r.imagesPruned,
              streams_pruned: r.streamsPruned,
            },
            dry_run: dryRun,
          };
        }
        case "ImageObjects": {
          const repo = this.#repo(p, REPO);
          const image = str(p, "name");
          let bytes: Uint8Array;
          try {
            bytes = (await repo.readImage(image)).bytes;
          } catch (e) {
            if (e instanceof NotFoundError) throw new VarlinkError(`${REPO}.NoSuchRef`, { reference: image });
            return internal(REPO)(e);
          }
          const ids = collectObjects(bytes, repo.alg).map((id) => id.toId());
          return { object_ids: [...new Set(ids)].sort() };
        }
        case "Mount": {
          const repo = this.#repo(p, REPO);
          const image = str(p, "name");
          const opts = mountOptions(p);
          const fd = await mountDetached(repo, image, call.fds, opts).catch((e) => {
            if (e instanceof NotFoundError) throw new VarlinkError(`${REPO}.NoSuchRef`, { reference: image });
            return internal(REPO)(e);
          });
          sink.attachFds([fd]);
          return { fd_index: 0 };
        }
      }
    }

    if (iface === OCI) {
      const noSuch = (image: string) => (e: unknown): never => {
        if (e instanceof NotFoundError) throw new VarlinkError(`${OCI}.NoSuchImage`, { image });
        return internal(OCI)(e);
      };
      switch (name) {
        case "ListImages": {
          const repo = this.#repo(p, OCI);
          const filter = str(p, "filter", true);
          const all = await listImages(repo).catch(internal(OCI));
          return {
            images: all.filter((i) => filter === undefined || i.name.includes(filter)).map((i) => ({
              name: i.name,
              manifest_digest: i.manifestDigest,
              is_container: i.isContainer,
              architecture: i.architecture,
              os: i.os,
              created: i.created,
              layer_count: i.layerCount,
              referrer_count: i.referrerCount,
            })),
          };
        }
        case "Check": {
          const repo = this.#repo(p, OCI);
          const image = str(p, "image", true);
          const base = await repo.fsck().catch(internal(OCI));
          const oci = await ociFsck(repo, image).catch(noSuch(image ?? ""));
          return {
            ok: base.ok && oci.ok,
            images_checked: oci.imagesChecked,
            images_corrupted: oci.imagesCorrupted,
            errors: oci.errors,
            repo: fsckReply(base),
          };
        }
        case "Inspect": {
          const repo = this.#repo(p, OCI);
          const image = str(p, "image");
          const digest = await resolveManifestDigest(repo, image).catch(noSuch(image));
          const m = await openManifest(repo, digest).catch(noSuch(image));
          const c = await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m).catch(
            internal(OCI),
          );
          const dec = new TextDecoder();
          const v = repo.erofsVersions()[0];
          return {
            manifest: dec.decode(m.bytes),
            config: dec.decode(c.bytes),
            referrers: [],
            composefs_erofs: c.refs.get(imageRefKey(v))?.hex() ?? null,
            composefs_boot_erofs: c.refs.get(imageRefKey(v, true))?.hex() ?? null,
          };
        }
        case "Tag": {
          const repo = this.#repo(p, OCI);
          const digest = str(p, "manifest_digest");
          await tagImage(repo, digest, str(p, "name")).catch(noSuch(digest));
          return {};
        }
        case "Untag": {
          const repo = this.#repo(p, OCI);
          const tag = str(p, "name");
          await untagImage(repo, tag).catch(noSuch(tag));
          return {};
        }
        case "ComputeId": {
          const repo = this.#repo(p, OCI);
          const image = str(p, "image");
          const verity = str(p, "verity", true);
          if (bool(p, "bootable")) {
            throw new VarlinkError(`${OCI}.InternalError`, {
              message: "bootable images are not supported yet",
            });
          }
          let configDigest: string;
          let configVerity = undefined;
          if (image.startsWith("@")) {
            configDigest = image.slice(1);
            if (verity !== undefined) configVerity = repo.parseObjectId(verity);
          } else {
            const digest = await resolveManifestDigest(repo, image).catch(noSuch(image));
            const m = await openManifest(repo, digest).catch(noSuch(image));
            configDigest = m.configDigest;
            configVerity = m.refs.get(`config:${m.configDigest}`);
          }
          const cfg = await openConfig(repo, configDigest, configVerity).catch(noSuch(image));
          if (!cfg.isContainer) {
            throw new VarlinkError(`${OCI}.InternalError`, {
              message: `${image} is an artifact, not a container image`,
            });
          }
          const tree = await buildImageTree(repo, cfg.diffIds).catch(internal(OCI));
          const id = fsverityDigest(writeErofs(tree, { version: repo.erofsVersions()[0] }), repo.alg);
          return { image_id: id.hex() };
        }
        case "OciMount": {
          const repo = this.#repo(p, OCI);
          const image = str(p, "image");
          const opts = mountOptions(p);
          if (bool(p, "bootable")) {
            throw new VarlinkError(`${OCI}.InternalError`, {
              message: "bootable images are not supported yet",
            });
          }
          const digest = await resolveManifestDigest(repo, image).catch(noSuch(image));
          const m = await openManifest(repo, digest).catch(noSuch(image));
          const c = await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m).catch(
            internal(OCI),
          );
          const id = c.refs.get(imageRefKey(repo.erofsVersions()[0]));
          if (!id) {
            throw new VarlinkError(`${OCI}.InternalError`, {
              message: "No composefs EROFS image linked — try re-pulling the image",
            });
          }
          const fd = await mountDetached(repo, id.hex(), call.fds, opts).catch(noSuch(image));
          sink.attachFds([fd]);
          return { fd_index: 0 };
        }
        case "Pull": {
          const repo = this.#repo(p, OCI);
          const image = str(p, "image");
          const tag = str(p, "name", true);
          str(p, "local_fetch");
          str(p, "storage_root", true);
          if (bool(p, "bootable")) {
            throw new VarlinkError(`${OCI}.InternalError`, {
              message: "bootable pulls are not supported yet",
            });
          }
          const result = await (async () => {
            const source = await openImageSource(parseImageReference(image), {
              remote: remoteSourceFactory(),
            });
            return await pullImage(repo, source, {
              name: tag ?? image,
              reporter: {
                report(e) {
                  const f = pullFrame(e);
                  if (f) sink.progress(f);
                },
              },
            });
          })().catch(internal(OCI));
          return {
            completed: {
              manifest_digest: result.manifestDigest,
              config_digest: result.configDigest,
              manifest_verity: result.manifestVerity.hex(),
              config_verity: result.configVerity.hex(),
              stats: formatStats(result.stats),
              boot_image: null,
            },
          };
        }
      }
    }
    throw new VarlinkError(`${SVC}.MethodNotFound`, { method: call.method });
  }
}
