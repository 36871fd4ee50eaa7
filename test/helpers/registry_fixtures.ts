// Test images for registry and skopeo tests: a two-layer image (gzip + zstd, one layer large enough
// to cut mid-way) and a two-platform index, in one OCI layout built with oci_builder.
import { addImage, type BuiltImage, sha256, tarDirectory } from "./oci_builder.ts";
import { runCli } from "./cli.ts";

export interface Fixtures {
  layout: string;
  app: BuiltImage;
  /** A one-layer gzip image tagged `gz` (Docker formats cannot carry the app image's zstd layer). */
  gz: BuiltImage;
  amd64: BuiltImage;
  arm64: BuiltImage;
  /** Digest of the two-platform index tagged `multi`. */
  indexDigest: string;
  /** The app image's biggest layer (compressed) digest. */
  bigLayer: string;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function rootfs(dir: string, files: Record<string, Uint8Array | string>): Promise<Uint8Array> {
  for (const [p, content] of Object.entries(files)) {
    const full = `${dir}/${p}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(full, content);
    else await Deno.writeFile(full, content);
  }
  return await tarDirectory(dir, { rootOwner: true });
}

export async function buildFixtures(base: string): Promise<Fixtures> {
  const layout = `${base}/layout`;
  const l1 = await rootfs(`${base}/r1`, {
    "usr/bin/hello": "#!/bin/sh\necho hello\n",
    "usr/lib/blob.bin": randomBytes(400_000, 7),
    "etc/os-release": "ID=test\n",
  });
  const l2 = await rootfs(`${base}/r2`, { "usr/share/doc/readme": "layer two\n", "etc/hostname": "box\n" });
  const app = await addImage(layout, {
    // The big layer stays uncompressed: oci_builder's compress() writes all of stdin before reading
    // stdout, which deadlocks once the compressed output passes the pipe buffer (64 KiB).
    layers: [{ tar: l1, compression: "none" }, { tar: l2, compression: "zstd" }],
    tag: "v1",
  });
  const gz = await addImage(layout, { layers: [{ tar: l2, compression: "gzip" }], tag: "gz" });
  const ra = await rootfs(`${base}/ra`, { "usr/bin/arch": "amd64\n" });
  const rb = await rootfs(`${base}/rb`, { "usr/bin/arch": "arm64\n" });
  const amd64 = await addImage(layout, { layers: [{ tar: ra, compression: "gzip" }], architecture: "amd64" });
  const arm64 = await addImage(layout, { layers: [{ tar: rb, compression: "gzip" }], architecture: "arm64" });
  const index = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [amd64, arm64].map((img, i) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: img.manifestDigest,
      size: img.manifest.length,
      platform: { os: "linux", architecture: i === 0 ? "amd64" : "arm64" },
    })),
  }));
  const indexDigest = sha256(index);
  await Deno.writeFile(`${layout}/blobs/sha256/${indexDigest.slice(7)}`, index);
  const top = JSON.parse(await Deno.readTextFile(`${layout}/index.json`));
  // Only tagged entries stay in the top-level index (the per-arch images live inside "multi").
  top.manifests = top.manifests.filter((m: any) => m.annotations?.["org.opencontainers.image.ref.name"]);
  top.manifests.push({
    mediaType: "application/vnd.oci.image.index.v1+json",
    digest: indexDigest,
    size: index.length,
    annotations: { "org.opencontainers.image.ref.name": "multi" },
  });
  await Deno.writeTextFile(`${layout}/index.json`, JSON.stringify(top));
  const sizes = app.layerDigests.map((d) => Deno.statSync(`${layout}/blobs/sha256/${d.slice(7)}`).size);
  const bigLayer = app.layerDigests[sizes.indexOf(Math.max(...sizes))];
  return { layout, app, gz, amd64, arm64, indexDigest, bigLayer };
}

export async function initRepo(path: string): Promise<void> {
  const r = await runCli(["--repo", path, "init", "--insecure"]);
  if (r.code !== 0) throw new Error(`init failed: ${r.stderr}`);
}

/** The composefs EROFS image id of a tagged image (from `oci inspect`). */
export async function imageId(repo: string, name: string): Promise<string> {
  const r = await runCli(["--repo", repo, "oci", "inspect", name]);
  if (r.code !== 0) throw new Error(`inspect ${name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout).composefs_erofs;
}

export async function manifestDigestOf(repo: string, name: string): Promise<string> {
  const r = await runCli(["--repo", repo, "oci", "images", "--json"]);
  if (r.code !== 0) throw new Error(`images failed: ${r.stderr}`);
  const img = JSON.parse(r.stdout).images.find((i: any) => i.name === name);
  if (!img) throw new Error(`no image ${name} in ${r.stdout}`);
  return img.manifest_digest;
}
