// OciImage (lib/oci/oci_image.ts): one image opened by tag, by manifest digest and by config digest
// agrees with itself; missing or wrong pieces give typed errors; the trust policy re-hashes layers
// when nothing vouches for a config's layer refs, and catches a tampered layer.
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { tempDir } from "./helpers/cli.ts";
import { addImage, type BuiltImage, writeArtifactLayout } from "./helpers/oci_builder.ts";
import { END, tarMember } from "./helpers/tar_fixtures.ts";
import { FormatError, IntegrityError, NotFoundError } from "../lib/errors.ts";
import { imageRefKey, OciImage, openImageByNameOrConfig } from "../lib/oci/oci_image.ts";
import { imageListFields, inspectFields } from "../lib/oci/image_json.ts";
import { asImageConfig, asIndex, asManifest, configDiffIds } from "../lib/oci/json_types.ts";
import { listImages } from "../lib/oci/image_store.ts";
import { pullImage } from "../lib/oci/pull.ts";
import { parseImageReference } from "../lib/oci/reference.ts";
import { storedImageComplete } from "../lib/oci/stored_complete.ts";
import { layerStreamId } from "../lib/oci/tags.ts";
import { openImageSource } from "../lib/oci/transport/open_source.ts";
import { Repository } from "../lib/repository/repository.ts";
import { concatBytes } from "../lib/util/bytes.ts";

const enc = new TextEncoder();

/** `fn` rejects with an error of class `cls` whose message contains `part`. */
async function rejectsWith(fn: () => Promise<unknown>, cls: new (...a: any[]) => Error, part: string) {
  const e = await assertRejects(fn, cls);
  assert(e.message.includes(part), `${e.message} should mention ${part}`);
}

function layerTar(name: string, body: string): Uint8Array {
  const data = enc.encode(body);
  return concatBytes([tarMember({ name, size: data.length, mode: 0o644 }, data), END]);
}

/** A repository with one two-layer image pulled and tagged `t`. */
async function pulledRepo(dir: string): Promise<{ repo: Repository; built: BuiltImage }> {
  const built = await addImage(`${dir}/layout`, {
    tag: "t",
    layers: [
      { tar: layerTar("a.txt", "A".repeat(5000)) },
      { tar: layerTar("b.txt", "B".repeat(7000)) },
    ],
  });
  await Repository.init(`${dir}/repo`, { insecure: true });
  const repo = await Repository.open(`${dir}/repo`);
  const source = await openImageSource(parseImageReference(`oci:${dir}/layout:t`), {});
  try {
    await pullImage(repo, source, { name: "t", platform: { os: "linux", architecture: "amd64" } });
  } finally {
    await source.close();
  }
  return { repo, built };
}

Deno.test("OciImage: by tag, by manifest digest and by config digest the same image", async () => {
  await using t = await tempDir("cfsctl-ociimage-");
  const { repo, built } = await pulledRepo(t.path);
  using _ = repo;
  const byTag = await OciImage.open(repo, "t");
  assertEquals(byTag.manifestDigest, built.manifestDigest);
  assertEquals(byTag.configDigest, built.configDigest);
  assertEquals(byTag.diffIds, built.diffIds);
  assertEquals(byTag.isContainer, true);
  assertEquals([byTag.architecture, byTag.os, byTag.created], ["amd64", "linux", "2023-11-14T22:13:20Z"]);
  assertEquals(byTag.layerCount, 2);
  assertEquals(byTag.manifest!.json.layers.map((l) => l.digest), built.layerDigests);
  assertEquals(byTag.layersVouched, true);
  // Each diff_id's ref is the stream stored for it; the EROFS image of the default format is linked.
  assertEquals([...byTag.layerRefs.keys()], built.diffIds);
  for (const d of built.diffIds) {
    assertEquals(byTag.layerRefs.get(d)?.hex(), (await repo.hasStream(layerStreamId(d)))?.hex());
  }
  const v = repo.erofsVersions()[0];
  const image = byTag.imageId(v);
  assert(image !== undefined, "an EROFS image is linked");
  assertEquals(byTag.requireImageId(v).hex(), image.hex());
  assertEquals([...byTag.imageIds.keys()], [imageRefKey(v)]);
  assertEquals(byTag.imageId(v, true), undefined);

  for (
    const other of [
      await OciImage.open(repo, `@${built.manifestDigest}`),
      await OciImage.open(repo, built.manifestDigest),
    ]
  ) {
    assertEquals(other.manifest!.verity.hex(), byTag.manifest!.verity.hex());
    assertEquals(other.config.verity.hex(), byTag.config.verity.hex());
  }
  const byManifest = await OciImage.openManifest(repo, built.manifestDigest, byTag.manifest!.verity);
  assertEquals(byManifest.config.verity.hex(), byTag.config.verity.hex());

  const byConfig = await OciImage.openConfig(repo, built.configDigest);
  assertEquals(byConfig.manifest, undefined);
  assertEquals(byConfig.manifestDigest, undefined);
  assertEquals(byConfig.isContainer, true);
  assertEquals(byConfig.diffIds, built.diffIds);
  assertEquals(byConfig.layersVouched, false, "a config digest alone vouches for nothing");
  assertEquals(byConfig.imageId(v)?.hex(), image.hex());
  assertEquals(
    (await OciImage.openConfig(repo, built.configDigest, byTag.config.verity)).layersVouched,
    true,
  );
  const named = await openImageByNameOrConfig(repo, `@${built.configDigest}`);
  assertEquals([named.manifest, named.configDigest], [undefined, built.configDigest]);
  assertEquals((await openImageByNameOrConfig(repo, "t")).manifestDigest, built.manifestDigest);

  // The JSON fields `oci images` and `oci inspect` print come from the same image.
  const [row] = await listImages(repo);
  assertEquals(imageListFields(row), {
    name: "t",
    manifest_digest: built.manifestDigest,
    is_container: true,
    architecture: "amd64",
    os: "linux",
    created: "2023-11-14T22:13:20Z",
    layer_count: 2,
    referrer_count: 0,
  });
  const fields = inspectFields(byTag);
  assertEquals(fields.manifest, new TextDecoder().decode(built.manifest));
  assertEquals(fields.config, new TextDecoder().decode(built.config));
  assertEquals([fields.composefs_erofs, fields.composefs_boot_erofs], [image.hex(), null]);

  // The merged tree holds both layers' files.
  const tree = await byConfig.tree();
  assertEquals([...tree.entries.keys()].sort(), ["a.txt", "b.txt"]);
});

Deno.test("OciImage: missing or wrong pieces are typed errors", async () => {
  await using t = await tempDir("cfsctl-ociimage-");
  const { repo, built } = await pulledRepo(t.path);
  using _ = repo;
  const absent = "sha256:" + "0".repeat(64);
  await rejectsWith(() => OciImage.open(repo, "nosuch"), NotFoundError, 'no image named "nosuch"');
  await rejectsWith(() => OciImage.open(repo, `@${absent}`), NotFoundError, `no stored manifest ${absent}`);
  await rejectsWith(
    () => OciImage.openManifest(repo, absent),
    NotFoundError,
    `no stored manifest ${absent}`,
  );
  await rejectsWith(() => OciImage.openConfig(repo, absent), NotFoundError, `no stored config ${absent}`);
  await rejectsWith(() => OciImage.open(repo, "@sha256:xyz"), FormatError, "invalid manifest digest");
  await rejectsWith(() => openImageByNameOrConfig(repo, "@nope"), FormatError, "invalid config digest");
  // A tag that names something other than a manifest stream.
  await Deno.symlink(`../../oci-config-${built.configDigest}`, `${repo.path}/streams/refs/oci/odd`);
  await rejectsWith(() => OciImage.open(repo, "odd"), FormatError, "not a manifest");
  // The config digest of an image opened by manifest is not a manifest.
  await rejectsWith(() => OciImage.openManifest(repo, built.configDigest), NotFoundError, built.configDigest);
  // No EROFS image linked for the boot variant: the error says how to get one.
  const img = await OciImage.open(repo, "t");
  let thrown: unknown;
  try {
    img.requireImageId(repo.erofsVersions()[0], true);
  } catch (e) {
    thrown = e;
  }
  assert(thrown instanceof NotFoundError && /--bootable/.test(thrown.message), String(thrown));
});

Deno.test("OciImage: verifyLayers re-hashes the layers and catches a tampered one; tree() does so when unvouched", async () => {
  await using t = await tempDir("cfsctl-ociimage-");
  const { repo, built } = await pulledRepo(t.path);
  using _ = repo;
  await (await OciImage.open(repo, "t")).verifyLayers();
  await (await OciImage.openConfig(repo, built.configDigest)).verifyLayers();

  // Change the content object of the second layer's file (same length, other bytes).
  const reader = await repo.openStream(layerStreamId(built.diffIds[1]));
  let external;
  for await (const c of reader.chunks()) if (c.kind === "external") external = c.id;
  assert(external !== undefined, "the 7000-byte file is an external object");
  const path = repo.objectPath(external);
  await Deno.chmod(path, 0o644);
  await Deno.writeFile(path, enc.encode("C".repeat(7000)));

  const byConfig = await OciImage.openConfig(repo, built.configDigest);
  await rejectsWith(() => byConfig.verifyLayers(), IntegrityError, built.diffIds[1]);
  await rejectsWith(() => byConfig.tree(), IntegrityError, "diff_id mismatch");
  // Through the tag the chain of refs vouches for the layers: the tree is built without re-hashing,
  // and an explicit verifyLayers() still finds the change.
  const byTag = await OciImage.open(repo, "t");
  assertEquals(byTag.layersVouched, true);
  await byTag.tree();
  await rejectsWith(() => byTag.verifyLayers(), IntegrityError, "diff_id mismatch");
});

Deno.test("json_types: manifests without a config descriptor, malformed diff_ids and indexes are told apart", () => {
  const config = { mediaType: "m", digest: "sha256:" + "1".repeat(64), size: 2 };
  assertEquals(asManifest({ config })?.layers, [], "no layers array reads as no layers");
  for (const bad of [null, [], "x", {}, { config: null }, { config: { digest: 5 } }, { config: [] }]) {
    assertEquals(asManifest(bad), undefined, JSON.stringify(bad));
  }
  assertEquals(configDiffIds(asImageConfig({ rootfs: { diff_ids: ["a", "b"] } })), ["a", "b"]);
  assertEquals(configDiffIds(asImageConfig({ rootfs: { diff_ids: ["a", 1] } })), undefined);
  assertEquals(configDiffIds(asImageConfig(null)), undefined);
  assertEquals(asImageConfig([1, 2]), {});
  assertEquals(asIndex({ manifests: [config] })?.manifests, [config]);
  assertEquals(asIndex({ manifests: {} }), undefined);
});

Deno.test("OciImage: an artifact has the manifest's layer digests as keys, its refs, and no EROFS image", async () => {
  await using t = await tempDir("cfsctl-ociimage-");
  const layout = `${t.path}/layout`;
  const { layer, config } = await writeArtifactLayout(layout, enc.encode("an SBOM, not a tar\n".repeat(20)));
  await Repository.init(`${t.path}/repo`, { insecure: true });
  using repo = await Repository.open(`${t.path}/repo`);
  const source = await openImageSource(parseImageReference(`oci:${layout}:sbom`), {});
  try {
    await pullImage(repo, source, { name: "sbom" });
  } finally {
    await source.close();
  }
  const img = await OciImage.open(repo, "sbom");
  assertEquals([img.isContainer, img.architecture, img.os, img.layerCount], [false, "", "", 1]);
  assertEquals(img.diffIds, [layer.digest]);
  assertEquals(
    img.layerRefs.get(layer.digest)?.hex(),
    (await repo.hasStream(layerStreamId(layer.digest)))?.hex(),
  );
  assertEquals(img.imageIds.size, 0);
  const e = assertThrows(() => img.requireImageId(repo.erofsVersions()[0]), NotFoundError);
  assert(e.message.includes("re-pulling"), e.message);
  await img.verifyLayers(); // nothing to re-hash: an artifact has no diff_ids
  assertEquals(await storedImageComplete(img, repo.erofsVersions()), true);
  // Opened by its config digest alone, nothing says it is an artifact's: no layers, not a container.
  const byConfig = await OciImage.openConfig(repo, config.digest);
  assertEquals([byConfig.isContainer, byConfig.diffIds.length], [false, 0]);
});
