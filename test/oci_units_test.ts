// Unit tests of the small OCI pieces: references, tags, platforms, layout index walking.
import { assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { parseImageReference } from "../lib/oci/reference.ts";
import { decodeTag, encodeTag } from "../lib/oci/tags.ts";
import { parsePlatform, selectPlatformEntry } from "../lib/oci/platform.ts";
import { OciLayoutSource } from "../lib/oci/transport/oci_layout.ts";
import { DirFiles } from "../lib/oci/transport/layout_files.ts";
import { addImage, sha256 } from "./helpers/oci_builder.ts";
import { InvalidArgumentError, NotFoundError } from "../lib/errors.ts";

Deno.test("reference: transports and the oci: tag rule (last ':' is a tag only if no '/' follows)", () => {
  assertEquals(parseImageReference("oci:/a/b:latest"), { transport: "oci", path: "/a/b", tag: "latest" });
  assertEquals(parseImageReference("oci:/a:b/c"), { transport: "oci", path: "/a:b/c", tag: undefined });
  assertEquals(parseImageReference("oci-archive:x.tar"), {
    transport: "oci-archive",
    path: "x.tar",
    tag: undefined,
  });
  assertEquals(parseImageReference("docker-archive:/t/x.tar:busybox:1.36"), {
    transport: "docker-archive",
    path: "/t/x.tar",
    ref: "busybox:1.36",
  });
  assertEquals(parseImageReference("dir:/d"), { transport: "dir", path: "/d" });
  assertEquals(parseImageReference("docker://quay.io/a/b:1"), { transport: "docker", ref: "quay.io/a/b:1" });
  assertEquals(parseImageReference("containers-storage:x"), {
    transport: "skopeo",
    ref: "containers-storage:x",
  });
  assertThrows(() => parseImageReference("no-transport"), InvalidArgumentError);
  assertThrows(() => parseImageReference("docker:quay.io/x"), InvalidArgumentError);
});

Deno.test("tags: percent-encoding of docs/oci.md round-trips, unknown escapes kept, '@' names refused", () => {
  assertEquals(encodeTag("docker://quay.io/x/y:latest"), "docker:%2F%2Fquay.io%2Fx%2Fy:latest");
  assertEquals(encodeTag("100%/a"), "100%25%2Fa");
  for (const t of ["a/b%c", "%2F", "%%", "plain"]) assertEquals(decodeTag(encodeTag(t)), t);
  assertEquals(decodeTag("a%41b"), "a%41b");
  assertThrows(() => encodeTag("@sha256:x"), InvalidArgumentError);
  assertThrows(() => encodeTag(""), InvalidArgumentError);
});

Deno.test("platform: parse and select (variants, missing platforms, clear error)", () => {
  assertEquals(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64", variant: "v8" });
  assertThrows(() => parsePlatform("linux"), InvalidArgumentError);
  const entries = [
    { d: "amd", platform: { os: "linux", architecture: "amd64" } },
    { d: "arm7", platform: { os: "linux", architecture: "arm", variant: "v7" } },
    { d: "arm6", platform: { os: "linux", architecture: "arm", variant: "v6" } },
  ];
  assertEquals(selectPlatformEntry(entries, parsePlatform("linux/amd64"), "x").d, "amd");
  assertEquals(selectPlatformEntry(entries, parsePlatform("linux/arm/v6"), "x").d, "arm6");
  const only: { d: string; platform?: { os: string; architecture: string } }[] = [{ d: "only" }];
  assertEquals(selectPlatformEntry(only, parsePlatform("linux/s390x"), "x").d, "only");
  const e = assertThrows(
    () => selectPlatformEntry(entries, parsePlatform("linux/s390x"), "idx"),
    NotFoundError,
  );
  assertEquals(/linux\/amd64, linux\/arm\/v7, linux\/arm\/v6/.test(e.message), true);
});

Deno.test("oci layout: tags, multi-platform entries, nested indexes, and digest checks of what is read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tar = new Uint8Array(1024); // an empty tar (two zero blocks)
    const amd = await addImage(`${dir}/l`, { tag: "amd", layers: [{ tar }], architecture: "amd64" });
    const arm = await addImage(`${dir}/l`, { tag: "arm", layers: [{ tar }], architecture: "arm64" });
    // Nest: an index blob listing both manifests, referenced from index.json under tag "multi".
    const nested = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: amd.manifestDigest,
          size: amd.manifest.length,
          platform: { os: "linux", architecture: "amd64" },
        },
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: arm.manifestDigest,
          size: arm.manifest.length,
          platform: { os: "linux", architecture: "arm64", variant: "v8" },
        },
      ],
    }));
    const nd = sha256(nested);
    await Deno.writeFile(`${dir}/l/blobs/sha256/${nd.slice(7)}`, nested);
    const index = JSON.parse(await Deno.readTextFile(`${dir}/l/index.json`));
    index.manifests.push({
      mediaType: "application/vnd.oci.image.index.v1+json",
      digest: nd,
      size: nested.length,
      annotations: { "org.opencontainers.image.ref.name": "multi" },
    });
    await Deno.writeTextFile(`${dir}/l/index.json`, JSON.stringify(index));
    const src = (tag?: string) => new OciLayoutSource(new DirFiles(`${dir}/l`), tag, `oci:${dir}/l`);
    assertEquals((await src("multi").getManifest(parsePlatform("linux/arm64"))).digest, arm.manifestDigest);
    assertEquals((await src("multi").getManifest(parsePlatform("linux/amd64"))).digest, amd.manifestDigest);
    assertEquals((await src("arm").getManifest(parsePlatform("linux/amd64"))).digest, arm.manifestDigest);
    await assertRejects(
      () => src("nope").getManifest(parsePlatform("linux/amd64")),
      /no image tagged "nope"/,
    );
    await assertRejects(() => src("multi").getManifest(parsePlatform("linux/riscv64")), NotFoundError);
    // A corrupted manifest blob is caught when read.
    await Deno.writeTextFile(`${dir}/l/blobs/sha256/${arm.manifestDigest.slice(7)}`, "{}");
    await assertRejects(() => src("arm").getManifest(parsePlatform("linux/arm64")), /digest mismatch/);
    await assertRejects(
      () =>
        new OciLayoutSource(new DirFiles(`${dir}/none`), undefined, "x").getManifest(
          parsePlatform("linux/amd64"),
        ),
      NotFoundError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
