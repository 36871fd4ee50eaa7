// Boot images of pulled OCI images (docs/boot.md): the merged tree with the boot transform applied,
// committed in every configured EROFS format and linked from the config stream as
// `composefs.image.boot[.v1]`; and `oci prepare-boot`, which writes the boot entry and the
// deployment's state directories.
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { writeConfigStream, writeManifestStream } from "../oci/image_store.ts";
import { imageRefKey, OciImage } from "../oci/oci_image.ts";
import { commitImages } from "../oci/image_tree.ts";
import type { Repository } from "../repository/repository.ts";
import type { Directory } from "../tree/tree.ts";
import type { BootEntry } from "./entries.ts";
import { formatKarg } from "./karg.ts";
import { repoLeafReader, transformForBoot } from "./transform.ts";
import { writeBootEntry, type WrittenBoot } from "./write_boot.ts";

/**
 * The image's merged tree with the boot transform applied, and the boot entries found in it. The tree
 * comes from `OciImage.tree()`, which re-hashes the layers when nothing vouches for them.
 */
export async function bootImageTree(
  repo: Repository,
  img: OciImage,
): Promise<{ tree: Directory; entries: BootEntry[]; policy: string | null }> {
  if (!img.isContainer) {
    throw new InvalidArgumentError(`config ${img.configDigest} is an artifact, not a container image`);
  }
  const tree = await img.tree();
  const r = await transformForBoot(tree, repoLeafReader(repo));
  return { tree, entries: r.entries, policy: r.policy };
}

export interface LinkedBootImages {
  /** composefs.image.boot* ref → image id, default format first. */
  images: Map<string, ObjectId>;
  manifestVerity: ObjectId;
  configVerity: ObjectId;
}

/**
 * Builds and commits the boot images of a stored manifest and records them in its config stream
 * (a new config stream and a new manifest stream pointing at it; tags name the manifest by digest,
 * so they follow). Already linked for every format → nothing is rewritten.
 */
export async function linkBootImages(repo: Repository, manifestDigest: string): Promise<LinkedBootImages> {
  const img = await OciImage.openManifest(repo, manifestDigest);
  const m = img.manifest!;
  const cfg = img.config;
  const versions = repo.erofsVersions();
  const have = versions.map((v) => cfg.refs.get(imageRefKey(v, true)));
  if (have.every((x) => x !== undefined)) {
    return {
      images: new Map(versions.map((v, i) => [imageRefKey(v, true), have[i]!])),
      manifestVerity: m.verity,
      configVerity: cfg.verity,
    };
  }
  const { tree } = await bootImageTree(repo, img);
  const images = new Map<string, ObjectId>();
  for (const [v, id] of await commitImages(repo, tree)) images.set(imageRefKey(v, true), id);
  const layerRefs = cfg.diffIds.map((d): [string, ObjectId] => {
    const v = cfg.refs.get(d);
    if (!v) throw new NotFoundError(`config ${cfg.digest}: no stored stream for layer ${d}`);
    return [d, v];
  });
  const otherImages = [...cfg.refs].filter(([k]) => k.startsWith("composefs.image") && !images.has(k));
  const configVerity = await writeConfigStream(repo, cfg.digest, cfg.bytes, layerRefs, [
    ...otherImages,
    ...images,
  ]);
  const manifestLayerRefs = [...m.refs].filter(([k]) => !k.startsWith("config:"));
  const manifestVerity = await writeManifestStream(
    repo,
    m.digest,
    m.bytes,
    cfg.digest,
    configVerity,
    manifestLayerRefs,
  );
  return { images, manifestVerity, configVerity };
}

export interface PrepareBootOptions {
  bootdir: string;
  entryId?: string;
  cmdline: string[];
  /** Where `state/deploy/<id>` goes: the repository's parent directory. */
  stateRoot: string;
}

export interface PreparedBoot {
  imageId: ObjectId;
  karg: string;
  written: WrittenBoot;
  stateDir: string;
  /** Entries found; the first one was written. */
  entries: number;
}

/**
 * `oci prepare-boot`: boot transform, images committed in every configured format, the first boot
 * entry written with the karg of the V1 image (if one was made) or the V2 one, and
 * `state/deploy/<id>/{var,etc/upper,etc/work}` created.
 */
export async function prepareBoot(
  repo: Repository,
  img: OciImage,
  opts: PrepareBootOptions,
): Promise<PreparedBoot> {
  const { tree, entries } = await bootImageTree(repo, img);
  if (entries.length === 0) {
    throw new NotFoundError(
      `image ${img.configDigest} has no boot entries (no /boot/loader/entries/*.conf, no UKI in /boot/EFI/Linux ` +
        `or /usr/lib/modules/<kver>/, no /usr/lib/modules/<kver>/vmlinuz)`,
    );
  }
  const committed = await commitImages(repo, tree);
  const v1 = committed.find(([v]) => v === 1);
  const v2 = committed.find(([v]) => v === 2);
  const chosen = v1 ?? v2;
  if (!chosen) {
    throw new InvalidArgumentError("the repository only makes V0 images; a boot image needs format V1 or V2");
  }
  const [version, imageId] = chosen;
  const karg = formatKarg(
    imageId.hex(),
    repo.alg,
    committed.length === 1 && version === 1 ? 1 : 2,
    repo.insecure,
  );
  const written = await writeBootEntry(entries[0], {
    bootdir: opts.bootdir,
    entryId: opts.entryId,
    karg,
    imageHex: imageId.hex(),
    cmdline: opts.cmdline,
    read: repoLeafReader(repo),
  });
  const stateDir = `${opts.stateRoot}/state/deploy/${imageId.hex()}`;
  for (const d of ["var", "etc/upper", "etc/work"]) {
    await Deno.mkdir(`${stateDir}/${d}`, { recursive: true, mode: 0o755 });
  }
  return { imageId, karg, written, stateDir, entries: entries.length };
}
