// Benchmark: pull a ≥ 500 MB multi-layer image from a local docker-registry into an empty repository
// (`cfsctl oci pull docker://…`) vs `skopeo copy docker://… oci:…`, in one run.
//
//   deno run -A scripts/bench_registry_pull.ts [--dirs usr/bin,usr/lib/gcc,…] [--rounds N] [--keep]
//
// Layers are gzip tars of host directories (real file mixes). Everything lives in one temporary
// directory that is removed at the end (unless --keep).
import { createHash } from "node:crypto";
import { V8_FLAGS } from "./build.ts";
import { pushImage, startRegistry } from "../test/helpers/registry_server.ts";
import { parseDockerReference } from "../lib/oci/transport/registry/docker_reference.ts";
import { RegistrySource } from "../lib/oci/transport/registry/registry_source.ts";
import { digestCheckingStream } from "../lib/oci/digest.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const args = Deno.args;
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const DIRS = (opt("--dirs") ?? "usr/bin,usr/lib/gcc,usr/lib/python3.11,usr/lib/git-core,usr/lib/postgresql")
  .split(",");
const ROUNDS = Number(opt("--rounds") ?? "1");
const KEEP = args.includes("--keep");

async function sh(cmd: string, cmdArgs: string[], env?: Record<string, string>): Promise<string> {
  const o = await new Deno.Command(cmd, { args: cmdArgs, stdout: "piped", stderr: "piped", env }).output();
  if (o.code !== 0) throw new Error(`${cmd} ${cmdArgs.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  return new TextDecoder().decode(o.stdout);
}

async function fileDigest(path: string): Promise<{ digest: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  using f = await Deno.open(path);
  for await (const c of f.readable) {
    h.update(c);
    size += c.length;
  }
  return { digest: "sha256:" + h.digest("hex"), size };
}

async function timed(label: string, fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  const s = (performance.now() - t) / 1000;
  console.log(`${label}: ${s.toFixed(2)} s`);
  return s;
}

const work = await Deno.makeTempDir({ prefix: "cfsctl-bench-registry-" });
try {
  // 1. The image: one gzip layer per directory, as an OCI layout.
  const layout = `${work}/layout`;
  await Deno.mkdir(`${layout}/blobs/sha256`, { recursive: true });
  const layers = [];
  const diffIds = [];
  let uncompressed = 0;
  for (const d of DIRS) {
    const tar = `${work}/layer.tar`;
    // Parent directories first (without their other contents): image trees need every parent.
    const parts = d.split("/");
    const parents = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("/"));
    await sh("tar", [
      "-C",
      "/",
      "-cf",
      tar,
      "--numeric-owner",
      "--no-recursion",
      ...parents,
      "--recursion",
      d,
    ]);
    const t = await fileDigest(tar);
    await sh("gzip", ["-f", tar]);
    const g = await fileDigest(`${tar}.gz`);
    await Deno.rename(`${tar}.gz`, `${layout}/blobs/sha256/${g.digest.slice(7)}`);
    layers.push({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: g.digest, size: g.size });
    diffIds.push(t.digest);
    uncompressed += t.size;
    console.log(`layer /${d}: ${(t.size / 1e6).toFixed(0)} MB tar, ${(g.size / 1e6).toFixed(0)} MB gzip`);
  }
  const writeBlob = async (bytes: Uint8Array) => {
    const digest = "sha256:" + createHash("sha256").update(bytes).digest("hex");
    await Deno.writeFile(`${layout}/blobs/sha256/${digest.slice(7)}`, bytes);
    return { digest, size: bytes.length };
  };
  const config = await writeBlob(new TextEncoder().encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config: {},
    rootfs: { type: "layers", diff_ids: diffIds },
  })));
  const manifest = await writeBlob(new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers,
  })));
  await Deno.writeTextFile(`${layout}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
  await Deno.writeTextFile(
    `${layout}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...manifest,
        annotations: { "org.opencontainers.image.ref.name": "bench" },
      }],
    }),
  );
  const compressed = layers.reduce((a, l) => a + l.size, 0);
  console.log(
    `image: ${layers.length} layers, ${(uncompressed / 1e6).toFixed(0)} MB uncompressed, ` +
      `${(compressed / 1e6).toFixed(0)} MB compressed`,
  );

  // 2. The registry, with the image pushed.
  await using reg = await startRegistry(`${work}/registry`);
  await pushImage(`oci:${layout}:bench`, `docker://${reg.host}/bench/image:latest`);
  const ref = `docker://${reg.host}/bench/image:latest`;

  // 3. Both pulls, alternating, each into an empty destination.
  const deno = Deno.execPath();
  const results: { skopeo: number[]; cfsctl: number[] } = { skopeo: [], cfsctl: [] };
  const pullInto = (repo: string, image: string) =>
    sh(deno, [
      "run",
      "-A",
      `--v8-flags=${V8_FLAGS}`,
      `${ROOT}main.ts`,
      "--repo",
      repo,
      "oci",
      "pull",
      "--progress",
      "none",
      "--tls-verify=false",
      image,
      "bench",
    ])
      .then(() => {});
  for (let round = 1; round <= ROUNDS; round++) {
    const dest = `${work}/skopeo-oci`;
    results.skopeo.push(
      await timed(
        `round ${round} skopeo copy`,
        () => sh("skopeo", ["copy", "-q", "--src-tls-verify=false", ref, `oci:${dest}:bench`]).then(() => {}),
      ),
    );
    await Deno.remove(dest, { recursive: true });
    const repo = `${work}/repo`;
    await sh(deno, ["run", "-A", `${ROOT}main.ts`, "--repo", repo, "init", "--insecure"]);
    results.cfsctl.push(
      await timed(`round ${round} cfsctl oci pull`, () => pullInto(repo, ref)),
    );
    const du = await sh("du", ["-sm", repo]);
    console.log(`  repository size: ${du.split("\t")[0]} MB`);
    await Deno.remove(repo, { recursive: true });
  }
  // Where the time goes: the registry client alone (all blobs downloaded and sha256-checked, two at
  // a time like the pull), and the same pull from the OCI layout on disk (no network at all).
  await timed("registry client only (download + sha256 of every blob)", async () => {
    const src = new RegistrySource(parseDockerReference(ref.slice(9)), { tlsVerify: false }, {
      registries: [],
      files: [],
    });
    const m = JSON.parse(
      new TextDecoder().decode((await src.getManifest({ os: "linux", architecture: "amd64" })).bytes),
    );
    const todo = [...m.layers];
    await Promise.all([0, 1].map(async () => {
      for (let l = todo.shift(); l; l = todo.shift()) {
        for await (
          const _ of (await src.getBlob(l)).pipeThrough(digestCheckingStream(l.digest, "blob", l.size))
        ) { /* drain */ }
      }
    }));
    await src.close();
  });
  {
    const repo = `${work}/repo-oci`;
    await sh(deno, ["run", "-A", `${ROOT}main.ts`, "--repo", repo, "init", "--insecure"]);
    await timed(
      "cfsctl oci pull from the oci: layout (no registry)",
      () => pullInto(repo, `oci:${layout}:bench`),
    );
    await Deno.remove(repo, { recursive: true });
  }
  const best = (xs: number[]) => Math.min(...xs);
  console.log(
    `best: skopeo ${best(results.skopeo).toFixed(2)} s, cfsctl ${best(results.cfsctl).toFixed(2)} s, ` +
      `ratio ${(best(results.cfsctl) / best(results.skopeo)).toFixed(2)}x (goal ≤ 1.3x)`,
  );
} finally {
  if (!KEEP) await Deno.remove(work, { recursive: true }).catch(() => {});
  else console.log(`kept ${work}`);
}
