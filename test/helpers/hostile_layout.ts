// OCI image layouts with hand-made blobs for the hostile-input tests: every part (index.json,
// manifest, config, layer blobs) can be replaced or tampered with after it is built.
import { createHash } from "node:crypto";
import { DENO, MAIN, runCli } from "./cli.ts";

export const enc = new TextEncoder();

export function digestOf(data: Uint8Array, alg: "sha256" | "sha512" = "sha256"): string {
  return `${alg}:${createHash(alg).update(data).digest("hex")}`;
}

export const MT = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  tar: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
};

export interface HostileLayer {
  /** The blob as stored (compressed when mediaType says so). */
  blob: Uint8Array;
  mediaType: string;
  /** sha256 of the uncompressed tar. */
  diffId: string;
}

export interface BuiltLayout {
  dir: string;
  index: any;
  manifest: any;
  config: any;
  manifestBytes: Uint8Array;
  configBytes: Uint8Array;
  manifestDigest: string;
  configDigest: string;
  blobPath(digest: string): string;
}

export async function writeBlob(dir: string, data: Uint8Array, alg: "sha256" | "sha512" = "sha256") {
  const digest = digestOf(data, alg);
  await Deno.mkdir(`${dir}/blobs/${alg}`, { recursive: true });
  await Deno.writeFile(`${dir}/blobs/${alg}/${digest.slice(alg.length + 1)}`, data);
  return { digest, size: data.length };
}

/**
 * Writes an OCI layout at `dir` holding one image tagged `t`. `edit` may change the manifest and
 * index documents before they are written (their digests follow the edited bytes).
 */
export async function buildLayout(dir: string, layers: HostileLayer[], edit: {
  manifest?: (m: any) => void;
  config?: (c: any) => void;
  index?: (i: any, manifestDesc: any) => void;
  manifestAlg?: "sha256" | "sha512";
} = {}): Promise<BuiltLayout> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const layerDescs = [];
  for (const l of layers) layerDescs.push({ mediaType: l.mediaType, ...(await writeBlob(dir, l.blob)) });
  const config: any = {
    architecture: "amd64",
    os: "linux",
    config: {},
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
  };
  edit.config?.(config);
  const configBytes = enc.encode(JSON.stringify(config));
  const cfg = await writeBlob(dir, configBytes);
  const manifest: any = {
    schemaVersion: 2,
    mediaType: MT.manifest,
    config: { mediaType: MT.config, ...cfg },
    layers: layerDescs,
  };
  edit.manifest?.(manifest);
  const manifestBytes = enc.encode(JSON.stringify(manifest));
  const man = await writeBlob(dir, manifestBytes, edit.manifestAlg);
  const desc: any = {
    mediaType: MT.manifest,
    ...man,
    annotations: { "org.opencontainers.image.ref.name": "t" },
  };
  const index: any = { schemaVersion: 2, mediaType: MT.index, manifests: [desc] };
  edit.index?.(index, desc);
  await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
  return {
    dir,
    index,
    manifest,
    config,
    manifestBytes,
    configBytes,
    manifestDigest: man.digest,
    configDigest: cfg.digest,
    blobPath: (d: string) => `${dir}/blobs/${d.replace(":", "/")}`,
  };
}

/**
 * Runs the CLI under GNU time and a hard time limit (`timeout -s KILL`, exit code 137 when it
 * fires): exit code, output and the peak RSS of the process in KiB.
 */
export async function runCliMeasured(args: string[], limitSeconds = 60): Promise<{
  code: number;
  stdout: string;
  stderr: string;
  maxRssKiB: number;
  seconds: number;
}> {
  const marker = "@@HOSTILE-RSS";
  const flags = MAIN.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"];
  const o = await new Deno.Command("timeout", {
    args: [
      "-s",
      "KILL",
      String(limitSeconds),
      "/usr/bin/time",
      "-f",
      `${marker} %M %e`,
      DENO,
      ...flags,
      MAIN,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const r = {
    code: o.code,
    stdout: new TextDecoder().decode(o.stdout),
    stderr: new TextDecoder().decode(o.stderr),
  };
  const m = new RegExp(`${marker} (\\d+) ([0-9.]+)\\n?$`).exec(r.stderr);
  if (!m) throw new Error(`no measurement (exit ${r.code}, killed after ${limitSeconds} s?): ${r.stderr}`);
  return {
    code: r.code,
    stdout: r.stdout,
    stderr: r.stderr.slice(0, m.index).replace(/Command exited with non-zero status \d+\n$/, ""),
    maxRssKiB: Number(m[1]),
    seconds: Number(m[2]),
  };
}

/** A fresh repository for the CLI (`init --insecure`: the kernel here has no fs-verity). */
export async function newRepo(path: string): Promise<void> {
  const r = await runCli(["--repo", path, "init", "--insecure"]);
  if (r.code !== 0) throw new Error(`init failed: ${r.stderr}`);
}
