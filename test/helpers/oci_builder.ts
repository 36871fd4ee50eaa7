// Builds OCI image layouts for tests and the embedded example: layers are tar files made by GNU tar
// from a directory (or given as bytes), optionally compressed with gzip/zstd, written as blobs with a
// config and a manifest, and tagged in index.json.
import { createHash } from "node:crypto";
import { runTool } from "./process.ts";

export type Compression = "none" | "gzip" | "zstd";

export interface LayerSpec {
  /** The uncompressed tar bytes. */
  tar: Uint8Array;
  compression?: Compression;
  /** Replace the compressed blob (to build tampered layers). */
  mutateBlob?: (blob: Uint8Array) => Uint8Array;
}

export interface ImageSpec {
  layers: LayerSpec[];
  architecture?: string;
  os?: string;
  tag?: string;
  /** Override diff_ids written into the config (to build lying configs). */
  diffIds?: string[];
  created?: string;
}

export function sha256(data: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

const run = (cmd: string, args: string[], stdin?: Uint8Array, cwd?: string) =>
  runTool(cmd, args, { stdin, cwd });

/** A reproducible tar of `dir`'s contents (entries relative to it, `./` prefixed like many images). */
export async function tarDirectory(
  dir: string,
  opts: { format?: "gnu" | "posix" | "ustar"; xattrs?: boolean; entries?: string[]; rootOwner?: boolean } =
    {},
): Promise<Uint8Array> {
  const args = [
    "-c",
    "-f",
    "-",
    `--format=${opts.format ?? "posix"}`,
    "--sort=name",
    "--numeric-owner",
    "--mtime=@1700000000",
    "--clamp-mtime",
  ];
  if (opts.rootOwner) args.push("--owner=0", "--group=0");
  if ((opts.format ?? "posix") === "posix") args.push("--pax-option=delete=atime,delete=ctime");
  if (opts.xattrs) args.push("--xattrs", "--xattrs-include=*");
  args.push(...(opts.entries ?? ["."]));
  return await run("tar", args, undefined, dir);
}

export async function compress(data: Uint8Array, c: Compression): Promise<Uint8Array> {
  if (c === "gzip") return await run("gzip", ["-n", "-c"], data);
  if (c === "zstd") return await run("zstd", ["-q", "-c"], data);
  return data;
}

const LAYER_MT: Record<Compression, string> = {
  none: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
};

async function writeBlob(layout: string, data: Uint8Array): Promise<{ digest: string; size: number }> {
  const digest = sha256(data);
  await Deno.mkdir(`${layout}/blobs/sha256`, { recursive: true });
  await Deno.writeFile(`${layout}/blobs/sha256/${digest.slice(7)}`, data);
  return { digest, size: data.length };
}

export interface BuiltImage {
  manifestDigest: string;
  configDigest: string;
  diffIds: string[];
  layerDigests: string[];
  manifest: Uint8Array;
  config: Uint8Array;
}

/** Adds one image to the OCI layout at `layout` (created if needed) and tags it in index.json. */
export async function addImage(layout: string, spec: ImageSpec): Promise<BuiltImage> {
  await Deno.mkdir(layout, { recursive: true });
  await Deno.writeTextFile(`${layout}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const diffIds: string[] = [];
  const layerDescs = [];
  const layerDigests: string[] = [];
  for (const l of spec.layers) {
    diffIds.push(sha256(l.tar));
    let blob = await compress(l.tar, l.compression ?? "none");
    if (l.mutateBlob) blob = l.mutateBlob(blob);
    const { digest, size } = await writeBlob(layout, blob);
    layerDigests.push(digest);
    layerDescs.push({ mediaType: LAYER_MT[l.compression ?? "none"], digest, size });
  }
  const config = new TextEncoder().encode(JSON.stringify({
    architecture: spec.architecture ?? "amd64",
    os: spec.os ?? "linux",
    created: spec.created ?? "2023-11-14T22:13:20Z",
    config: {},
    rootfs: { type: "layers", diff_ids: spec.diffIds ?? diffIds },
    history: spec.layers.map(() => ({ created_by: "test" })),
  }));
  const cfg = await writeBlob(layout, config);
  const manifest = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: cfg.digest, size: cfg.size },
    layers: layerDescs,
  }));
  const man = await writeBlob(layout, manifest);
  let index: any = { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [] };
  try {
    index = JSON.parse(await Deno.readTextFile(`${layout}/index.json`));
  } catch { /* new layout */ }
  const desc: any = {
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: man.digest,
    size: man.size,
    platform: { architecture: spec.architecture ?? "amd64", os: spec.os ?? "linux" },
  };
  if (spec.tag) {
    desc.annotations = { "org.opencontainers.image.ref.name": spec.tag };
    index.manifests = index.manifests.filter((m: any) =>
      m.annotations?.["org.opencontainers.image.ref.name"] !== spec.tag
    );
  }
  index.manifests.push(desc);
  await Deno.writeTextFile(`${layout}/index.json`, JSON.stringify(index));
  return { manifestDigest: man.digest, configDigest: cfg.digest, diffIds, layerDigests, manifest, config };
}

/**
 * Writes an OCI layout holding one artifact (not a container image), tagged `tag`: an empty config and
 * one non-tar layer of media type application/vnd.example.sbom.v1+json. Returns the layer's and the
 * config's digest and size.
 */
export async function writeArtifactLayout(
  layout: string,
  payload: Uint8Array,
  opts: { tag?: string; artifactType?: string } = {},
): Promise<{ layer: { digest: string; size: number }; config: { digest: string; size: number } }> {
  await Deno.mkdir(`${layout}/blobs/sha256`, { recursive: true });
  const put = async (data: Uint8Array) => {
    const d = sha256(data);
    await Deno.writeFile(`${layout}/blobs/sha256/${d.slice(7)}`, data);
    return { digest: d, size: data.length };
  };
  const layer = await put(payload);
  const config = await put(new TextEncoder().encode("{}"));
  const m = await put(new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    ...(opts.artifactType ? { artifactType: opts.artifactType } : {}),
    config: { mediaType: "application/vnd.oci.empty.v1+json", ...config },
    layers: [{ mediaType: "application/vnd.example.sbom.v1+json", ...layer }],
  })));
  await Deno.writeTextFile(`${layout}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
  await Deno.writeTextFile(
    `${layout}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...m,
        annotations: { "org.opencontainers.image.ref.name": opts.tag ?? "sbom" },
      }],
    }),
  );
  return { layer, config };
}
