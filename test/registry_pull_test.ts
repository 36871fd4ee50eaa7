// End-to-end pulls from a real registry (Debian's docker-registry on loopback, images pushed with
// skopeo): tags, digests, platforms, registries.conf, and faults injected by a proxy in front of it.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { startFaultProxy } from "./helpers/fault_proxy.ts";
import { buildFixtures, imageId, initRepo, manifestDigestOf } from "./helpers/registry_fixtures.ts";
import { pushImage, startRegistry } from "./helpers/registry_server.ts";

const haveTools = ["docker-registry", "skopeo"].every((t) => {
  try {
    return new Deno.Command(t, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
});

Deno.test({
  name: "registry pull: plain HTTP registry, tags, digests, platforms, registries.conf, faults",
  ignore: !haveTools,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using tmp = await tempDir("cfsctl-registry-");
    const fx = await buildFixtures(`${tmp.path}/fx`);
    await using reg = await startRegistry(`${tmp.path}/reg`);
    await pushImage(`oci:${fx.layout}:v1`, `docker://${reg.host}/test/app:v1`);
    await pushImage(`oci:${fx.layout}:multi`, `docker://${reg.host}/test/multi:latest`, { all: true });

    // The reference: the same image pulled from its OCI layout.
    const local = `${tmp.path}/local`;
    await initRepo(local);
    const r0 = await runCli([
      "--repo",
      local,
      "oci",
      "pull",
      "--progress",
      "none",
      `oci:${fx.layout}:v1`,
      "app",
    ]);
    assertEquals(r0.code, 0, r0.stderr);
    const localId = await imageId(local, "app");
    const env = { HOME: `${tmp.path}/home`, XDG_RUNTIME_DIR: `${tmp.path}/run` };
    const pull = (repo: string, ...args: string[]) =>
      runCli(["--repo", repo, "oci", "pull", "--progress", "none", ...args], { env });

    await t.step("by tag: same manifest and image id as from the oci: layout", async () => {
      const repo = `${tmp.path}/r-tag`;
      await initRepo(repo);
      const r = await pull(repo, "--tls-verify=false", `docker://${reg.host}/test/app:v1`, "app");
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await manifestDigestOf(repo, "app"), fx.app.manifestDigest);
      assertEquals(await imageId(repo, "app"), localId);
    });

    await t.step("by digest", async () => {
      const repo = `${tmp.path}/r-digest`;
      await initRepo(repo);
      const r = await pull(
        repo,
        "--tls-verify=false",
        `docker://${reg.host}/test/app@${fx.app.manifestDigest}`,
        "d",
      );
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await manifestDigestOf(repo, "d"), fx.app.manifestDigest);
    });

    await t.step("index with two platforms: --platform chooses", async () => {
      const repo = `${tmp.path}/r-multi`;
      await initRepo(repo);
      const a = await pull(
        repo,
        "--tls-verify=false",
        "--platform",
        "linux/arm64",
        `docker://${reg.host}/test/multi`,
        "arm",
      );
      assertEquals(a.code, 0, a.stderr);
      assertEquals(await manifestDigestOf(repo, "arm"), fx.arm64.manifestDigest);
      const b = await pull(
        repo,
        "--tls-verify=false",
        "--platform",
        "linux/amd64",
        `docker://${reg.host}/test/multi`,
        "amd",
      );
      assertEquals(b.code, 0, b.stderr);
      assertEquals(await manifestDigestOf(repo, "amd"), fx.amd64.manifestDigest);
      const c = await pull(
        repo,
        "--tls-verify=false",
        "--platform",
        "linux/s390x",
        `docker://${reg.host}/test/multi`,
        "x",
      );
      assertEquals(c.code, 1);
      assertMatch(c.stderr, /no manifest for platform linux\/s390x.*available: linux\/amd64, linux\/arm64/);
    });

    await t.step("unknown manifest: clear 404", async () => {
      const repo = `${tmp.path}/r-404`;
      await initRepo(repo);
      const r = await pull(repo, "--tls-verify=false", `docker://${reg.host}/test/app:nope`);
      assertEquals(r.code, 1);
      assertMatch(
        r.stderr,
        /manifest nope: not found at http:\/\/127\.0\.0\.1:\d+\/v2\/test\/app\/manifests\/nope \(HTTP 404\)/,
      );
      assertMatch(r.stderr, /MANIFEST_UNKNOWN/);
    });

    await t.step("plain HTTP is refused unless allowed", async () => {
      const repo = `${tmp.path}/r-https`;
      await initRepo(repo);
      const r = await pull(repo, "--retries", "0", `docker://${reg.host}/test/app:v1`);
      assertEquals(r.code, 1);
      assertMatch(r.stderr, /cannot reach registry 127\.0\.0\.1:\d+ \(https:/);
    });

    await t.step("registries.conf: insecure entry and a mirror", async () => {
      const repo = `${tmp.path}/r-conf`;
      await initRepo(repo);
      const conf = `${tmp.path}/registries.conf`;
      await Deno.writeTextFile(
        conf,
        `# test\nunqualified-search-registries = ["docker.io"]\n\n[[registry]]\nlocation = "${reg.host}"\ninsecure = true\n\n` +
          `[[registry]]\nprefix = "mirrored.invalid/test"\nlocation = "mirrored.invalid/test"\n` +
          `[[registry.mirror]]\nlocation = "${reg.host}/test"\ninsecure = true\n`,
      );
      const a = await pull(repo, "--registries-conf", conf, `docker://${reg.host}/test/app:v1`, "a");
      assertEquals(a.code, 0, a.stderr);
      const b = await runCli(
        ["--repo", repo, "oci", "pull", "--progress", "none", "docker://mirrored.invalid/test/app:v1", "b"],
        { env: { ...env, CONTAINERS_REGISTRIES_CONF: conf } },
      );
      assertEquals(b.code, 0, b.stderr);
      assertEquals(await manifestDigestOf(repo, "b"), fx.app.manifestDigest);
      await Deno.writeTextFile(conf, `[[registry]]\nlocation = "${reg.host}"\nblocked = true\n`);
      const c = await pull(repo, "--registries-conf", conf, `docker://${reg.host}/test/app:v1`, "c");
      assertEquals(c.code, 1);
      assertMatch(c.stderr, /is blocked in/);
    });

    const proxy = startFaultProxy(reg.host);
    try {
      const blobPath = new RegExp(`/blobs/${fx.bigLayer}$`);
      const via = `docker://${proxy.host}/test/app:v1`;

      await t.step("connection cut mid-blob: resumed with Range", async () => {
        const repo = `${tmp.path}/r-cut`;
        await initRepo(repo);
        proxy.rules.splice(0, Infinity, {
          path: blobPath,
          fault: { kind: "cut", afterBytes: 150_000 },
          times: 2,
        });
        proxy.seen.length = 0;
        const r = await pull(repo, "--tls-verify=false", via, "app");
        assertEquals(r.code, 0, r.stderr);
        assertEquals(await imageId(repo, "app"), localId);
        const ranges = proxy.seen.filter((s) => blobPath.test(s.path)).map((s) => s.range ?? "");
        assertEquals(ranges, ["", "bytes=150000-", "bytes=300000-"]);
      });

      await t.step("500 and 429 (Retry-After) are retried", async () => {
        const repo = `${tmp.path}/r-5xx`;
        await initRepo(repo);
        proxy.rules.splice(
          0,
          Infinity,
          { path: /\/manifests\/v1$/, fault: { kind: "status", status: 500 }, times: 2 },
          { path: blobPath, fault: { kind: "status", status: 429, retryAfter: "1" }, times: 1 },
        );
        proxy.seen.length = 0;
        const started = Date.now();
        const r = await pull(repo, "--tls-verify=false", "--retries", "3", via, "app");
        assertEquals(r.code, 0, r.stderr);
        assert(Date.now() - started >= 1000, "Retry-After: 1 was not honoured");
        const statuses = proxy.seen.filter((s) => blobPath.test(s.path)).map((s) => s.status);
        assertEquals(statuses, [429, 200]);
        const m = proxy.seen.filter((s) => /manifests\/v1$/.test(s.path)).map((s) => s.status);
        assertEquals(m, [500, 500, 200]);
        assertEquals(await imageId(repo, "app"), localId);
      });

      await t.step("persistent 503: gives up after --retries with the URL named", async () => {
        const repo = `${tmp.path}/r-503`;
        await initRepo(repo);
        proxy.rules.splice(0, Infinity, {
          path: /\/manifests\//,
          fault: { kind: "status", status: 503 },
          times: 100,
        });
        const r = await pull(repo, "--tls-verify=false", "--retries", "1", via, "app");
        assertEquals(r.code, 1);
        assertMatch(
          r.stderr,
          /GET http:\/\/127\.0\.0\.1:\d+\/v2\/test\/app\/manifests\/v1 failed after 2 tries: HTTP 503/,
        );
      });

      await t.step("corrupted byte in a blob: rejected, nothing stored", async () => {
        const repo = `${tmp.path}/r-corrupt`;
        await initRepo(repo);
        proxy.rules.splice(0, Infinity, {
          path: blobPath,
          fault: { kind: "corrupt", offset: 200_000 },
          times: 100,
        });
        const before = await runCli(["--repo", repo, "oci", "images", "--json"]);
        const r = await pull(repo, "--tls-verify=false", via, "app");
        assertEquals(r.code, 1);
        assertMatch(r.stderr, new RegExp(`${fx.bigLayer}.*digest mismatch`));
        const after = await runCli(["--repo", repo, "oci", "images", "--json"]);
        assertEquals(after.stdout, before.stdout);
        const fsck = await runCli(["--repo", repo, "fsck"]);
        assertEquals(fsck.code, 0, fsck.stdout + fsck.stderr);
      });
    } finally {
      await proxy.stop();
    }
  },
});
