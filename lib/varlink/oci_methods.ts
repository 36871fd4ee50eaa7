// The methods of org.composefs.Oci but Pull (lib/varlink/org.composefs.Oci.varlink,
// docs/varlink.md#calls), one function each; Pull is in ./oci_pull.ts.
import { bootImageTree } from "../boot/oci_boot.ts";
import { ociFsck } from "../oci/fsck.ts";
import { listImages, tagImage, untagImage } from "../oci/image_store.ts";
import { imageListFields, inspectFields } from "../oci/image_json.ts";
import { computeImageId } from "../oci/image_tree.ts";
import { OciImage, openImageByNameOrConfig } from "../oci/oci_image.ts";
import { fsckReportFields } from "../repository/fsck_json.ts";
import { mountOptions, replyWithMount } from "./detached_mount.ts";
import { IFACE } from "./interfaces.ts";
import { type CallContext, failure, internalError, type Method, repoOf } from "./method.ts";
import { bool, type Params, str } from "./params.ts";
import { pull } from "./oci_pull.ts";

const OCI = IFACE.oci;

/** NotFoundError → Oci.NoSuchImage{image}, anything else Oci.InternalError. */
const noSuch = (image: string) => failure(OCI, ["NoSuchImage", { image }]);

async function listImagesMethod(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const filter = str(cx.p, "filter", true);
  const all = await listImages(repo).catch(failure(OCI));
  return {
    images: all.filter((i) => filter === undefined || i.name.includes(filter)).map(imageListFields),
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
  return inspectFields(await OciImage.open(repo, image).catch(noSuch(image)));
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
  // A config digest without its stream's verity: the layers are re-hashed first (docs/oci.md#verification).
  const configVerity = image.startsWith("@") && verity !== undefined ? repo.parseObjectId(verity) : undefined;
  const img = await openImageByNameOrConfig(repo, image, configVerity).catch(noSuch(image));
  if (!img.isContainer) throw internalError(OCI, `${image} is an artifact, not a container image`);
  const build = bootable ? bootImageTree(repo, img).then((b) => b.tree) : img.tree();
  const tree = await build.catch(failure(OCI));
  const id = computeImageId(repo, tree, repo.erofsVersions()[0]);
  return { image_id: id.hex() };
}

/** Mounts the image's composefs EROFS (`bootable`: its boot image, linked by a bootable Pull). */
async function ociMount(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, OCI);
  const image = str(cx.p, "image");
  const opts = mountOptions(cx.p);
  const bootable = bool(cx.p, "bootable");
  const img = await OciImage.open(repo, image).catch(noSuch(image));
  const id = img.imageId(repo.erofsVersions()[0], bootable);
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
