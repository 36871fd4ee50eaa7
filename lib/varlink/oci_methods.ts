// The methods of org.composefs.Oci but Pull (lib/varlink/org.composefs.Oci.varlink,
// docs/varlink.md#calls), one function each; Pull is in ./oci_pull.ts.
import { bootImageTree } from "../boot/oci_boot.ts";
import { writeErofs } from "../erofs/writer.ts";
import { fsverityDigest } from "../fsverity/hasher.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { ociFsck } from "../oci/fsck.ts";
import {
  imageRefKey,
  listImages,
  openConfig,
  openManifest,
  resolveManifestDigest,
  type StoredConfig,
  type StoredManifest,
  tagImage,
  untagImage,
} from "../oci/image_store.ts";
import { buildImageTree } from "../oci/image_tree.ts";
import { fsckReportFields } from "../repository/fsck_json.ts";
import type { Repository } from "../repository/repository.ts";
import { mountOptions, replyWithMount } from "./detached_mount.ts";
import { IFACE } from "./interfaces.ts";
import { type CallContext, failure, internalError, type Method, repoOf } from "./method.ts";
import { bool, type Params, str } from "./params.ts";
import { pull } from "./oci_pull.ts";

const OCI = IFACE.oci;

/** NotFoundError → Oci.NoSuchImage{image}, anything else Oci.InternalError. */
const noSuch = (image: string) => failure(OCI, ["NoSuchImage", { image }]);

/** Tag (or `@sha256:`/`sha256:` manifest digest) → its stored manifest and config. */
async function openImage(repo: Repository, image: string): Promise<{ m: StoredManifest; c: StoredConfig }> {
  const digest = await resolveManifestDigest(repo, image).catch(noSuch(image));
  const m = await openManifest(repo, digest).catch(noSuch(image));
  const c = await openConfig(repo, m.configDigest, m.refs.get(`config:${m.configDigest}`), m)
    .catch(failure(OCI));
  return { m, c };
}

async function listImagesMethod(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const filter = str(cx.p, "filter", true);
  const all = await listImages(repo).catch(failure(OCI));
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

async function check(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const image = str(cx.p, "image", true);
  const base = await repo.fsck().catch(failure(OCI));
  const oci = await ociFsck(repo, image).catch(noSuch(image ?? ""));
  return {
    ok: base.ok && oci.ok,
    images_checked: oci.imagesChecked,
    images_corrupted: oci.imagesCorrupted,
    errors: oci.errors,
    repo: fsckReportFields(base),
  };
}

async function inspect(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const image = str(cx.p, "image");
  const { m, c } = await openImage(repo, image);
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

async function tag(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const digest = str(cx.p, "manifest_digest");
  await tagImage(repo, digest, str(cx.p, "name")).catch(noSuch(digest));
  return {};
}

async function untag(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const name = str(cx.p, "name");
  await untagImage(repo, name).catch(noSuch(name));
  return {};
}

/**
 * The composefs image id, computed (nothing is stored) as `oci compute-id [--bootable]` does: the
 * merged tree of the layers, with the boot transform when `bootable` (docs/boot.md), written as the
 * repository's default EROFS format and hashed.
 */
async function computeId(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const image = str(cx.p, "image");
  const verity = str(cx.p, "verity", true);
  const bootable = bool(cx.p, "bootable");
  let configDigest: string;
  let configVerity: ObjectId | undefined;
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
  if (!cfg.isContainer) throw internalError(OCI, `${image} is an artifact, not a container image`);
  const build = bootable ? bootImageTree(repo, cfg).then((b) => b.tree) : buildImageTree(repo, cfg.diffIds);
  const tree = await build.catch(failure(OCI));
  const id = fsverityDigest(writeErofs(tree, { version: repo.erofsVersions()[0] }), repo.alg);
  return { image_id: id.hex() };
}

/** Mounts the image's composefs EROFS (`bootable`: its boot image, linked by a bootable Pull). */
async function ociMount(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const image = str(cx.p, "image");
  const opts = mountOptions(cx.p);
  const bootable = bool(cx.p, "bootable");
  const { c } = await openImage(repo, image);
  const id = c.refs.get(imageRefKey(repo.erofsVersions()[0], bootable));
  if (!id) {
    throw internalError(
      OCI,
      bootable
        ? "No boot EROFS image linked — try pulling with bootable"
        : "No composefs EROFS image linked — try re-pulling the image",
    );
  }
  return await replyWithMount(cx, repo, id.hex(), opts, noSuch(image));
}

export const OCI_METHODS: Record<string, Method> = {
  ListImages: listImagesMethod,
  Check: check,
  Inspect: inspect,
  Tag: tag,
  Untag: untag,
  ComputeId: computeId,
  OciMount: ociMount,
  Pull: pull,
};
