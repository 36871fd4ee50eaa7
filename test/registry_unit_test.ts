// Unit tests of the registry client's parts: reference normalisation, challenges, registries.conf,
// auth file lookup, Retry-After, transparent resume, and manifest checks against an in-process server.
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { tempDir } from "./helpers/cli.ts";
import { parseDockerReference } from "../lib/oci/transport/registry/docker_reference.ts";
import { parseWwwAuthenticate } from "../lib/oci/transport/registry/www_authenticate.ts";
import { parseTomlSubset } from "../lib/oci/transport/registry/toml_subset.ts";
import { loadRegistriesConf, pullEndpoints } from "../lib/oci/transport/registry/registries_conf.ts";
import { authKeys, findInAuthFile, lookupCredentials } from "../lib/oci/transport/registry/auth_file.ts";
import { parseRetryAfter, retryPolicy } from "../lib/oci/transport/registry/retry_policy.ts";
import { resumableBody } from "../lib/oci/transport/registry/resumable_body.ts";
import { RegistrySource } from "../lib/oci/transport/registry/registry_source.ts";
import { FormatError, IntegrityError, InvalidArgumentError, TransportError } from "../lib/errors.ts";
import { sha256 } from "./helpers/oci_builder.ts";

Deno.test("docker references normalise like docker/containers-image", () => {
  const p = parseDockerReference;
  assertEquals(p("busybox"), {
    registry: "docker.io",
    repository: "library/busybox",
    tag: "latest",
    digest: undefined,
  });
  assertEquals(p("user/app:1.0").repository, "user/app");
  assertEquals(p("docker.io/busybox:1").repository, "library/busybox");
  assertEquals(p("index.docker.io/busybox").registry, "docker.io");
  assertEquals(p("quay.io/a/b/c:x"), {
    registry: "quay.io",
    repository: "a/b/c",
    tag: "x",
    digest: undefined,
  });
  assertEquals(p("localhost/app").registry, "localhost");
  assertEquals(p("127.0.0.1:5000/app").registry, "127.0.0.1:5000");
  assertEquals(p("localhost:5000/ns/app:v2").tag, "v2");
  const d = "sha256:" + "a".repeat(64);
  assertEquals(p(`quay.io/app@${d}`), { registry: "quay.io", repository: "app", tag: undefined, digest: d });
  assertThrows(() => p(`quay.io/app:v1@${d}`), InvalidArgumentError);
  assertThrows(() => p("quay.io/App"), InvalidArgumentError);
  assertThrows(() => p("quay.io/app@sha256:abc"), InvalidArgumentError);
  assertThrows(() => p(""), InvalidArgumentError);
});

Deno.test("WWW-Authenticate: Bearer and Basic, quoted commas, several challenges", () => {
  assertEquals(
    parseWwwAuthenticate(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push"',
    ),
    [{
      scheme: "bearer",
      params: {
        realm: "https://auth.docker.io/token",
        service: "registry.docker.io",
        scope: "repository:a/b:pull,push",
      },
    }],
  );
  assertEquals(parseWwwAuthenticate('Basic realm="x", Bearer realm="y"'), [
    { scheme: "basic", params: { realm: "x" } },
    { scheme: "bearer", params: { realm: "y" } },
  ]);
  assertEquals(parseWwwAuthenticate("Basic"), [{ scheme: "basic", params: {} }]);
});

Deno.test("TOML subset: tables, arrays of tables, nested arrays, strings, errors with line numbers", () => {
  const doc = parseTomlSubset(
    `# c\nunqualified-search-registries = ["a", 'b',\n  "c"]\n[[registry]]\nlocation = "x\\u0041" # c\n` +
      `insecure = true\n[[registry.mirror]]\nlocation = "m1"\n[[registry.mirror]]\nlocation = "m2"\n` +
      `[[registry]]\nprefix = "p"\n[aliases]\n"a/b" = "c"\nn = 1_000\n`,
    "t.conf",
  );
  assertEquals(doc, {
    "unqualified-search-registries": ["a", "b", "c"],
    registry: [{ location: "xA", insecure: true, mirror: [{ location: "m1" }, { location: "m2" }] }, {
      prefix: "p",
    }],
    aliases: { "a/b": "c", n: 1000 },
  });
  const e = assertThrows(() => parseTomlSubset('a = 1\nb = "x\n', "f.conf"), FormatError);
  assert(e.message.startsWith("f.conf:2:"), e.message);
  assertThrows(() => parseTomlSubset("a = 1\na = 2\n", "f"), FormatError);
});

Deno.test("registries.conf: prefix rewriting, mirrors, digest-only, blocked, v1 lists", async () => {
  await using tmp = await tempDir();
  const f = `${tmp.path}/r.conf`;
  await Deno.writeTextFile(
    f,
    `[[registry]]\nprefix = "example.com/foo"\nlocation = "internal.example:5000/bar"\ninsecure = true\n` +
      `[[registry.mirror]]\nlocation = "mirror.example/m"\n` +
      `[[registry.mirror]]\nlocation = "digest.example/d"\npull-from-mirror = "digest-only"\n` +
      `[[registry]]\nlocation = "example.com"\n` +
      `[[registry]]\nlocation = "bad.example"\nblocked = true\n` +
      `[registries.insecure]\nregistries = ["old.example:5000"]\n`,
  );
  const conf = await loadRegistriesConf(f);
  const ep = (s: string) => pullEndpoints(conf, parseDockerReference(s));
  assertEquals(ep("example.com/foo/app:1"), [
    { registry: "mirror.example", repository: "m/app", insecure: false, mirror: true },
    { registry: "internal.example:5000", repository: "bar/app", insecure: true, mirror: false },
  ]);
  const d = "sha256:" + "b".repeat(64);
  assertEquals(ep(`example.com/foo/app@${d}`).map((e) => e.registry), [
    "mirror.example",
    "digest.example",
    "internal.example:5000",
  ]);
  // Longest prefix wins; a prefix only matches at a path boundary.
  assertEquals(ep("example.com/foobar/x").map((e) => `${e.registry}/${e.repository}`), [
    "example.com/foobar/x",
  ]);
  assertEquals(ep("old.example:5000/x")[0].insecure, true);
  assertEquals(ep("other.example/x"), [{
    registry: "other.example",
    repository: "x",
    insecure: false,
    mirror: false,
  }]);
  assertThrows(() => ep("bad.example/x"), Error);
  await assertRejects(() => loadRegistriesConf(`${tmp.path}/missing.conf`), FormatError);
});

Deno.test("auth files: key order, legacy keys, file order, explicit file, --creds", async () => {
  assertEquals(authKeys("quay.io", "a/b/c"), ["quay.io/a/b/c", "quay.io/a/b", "quay.io/a", "quay.io"]);
  const enc = (s: string) => btoa(s);
  const doc = {
    auths: {
      "quay.io": { auth: enc("host:h") },
      "quay.io/a": { auth: enc("ns:n") },
      "https://index.docker.io/v1/": { auth: enc("hub:x:y") },
    },
  };
  assertEquals(findInAuthFile(doc, "quay.io", "a/b", "f")?.username, "ns");
  assertEquals(findInAuthFile(doc, "quay.io", "z/b", "f")?.username, "host");
  const hub = findInAuthFile(doc, "docker.io", "library/busybox", "f");
  assertEquals([hub?.username, hub?.password], ["hub", "x:y"]);
  assertEquals(findInAuthFile(doc, "ghcr.io", "a", "f"), undefined);
  assertThrows(() => findInAuthFile({ auths: { "q.io": { auth: "!!" } } }, "q.io", "a", "f"), FormatError);

  await using tmp = await tempDir();
  const env: Record<string, string> = { HOME: `${tmp.path}/home`, XDG_RUNTIME_DIR: `${tmp.path}/run` };
  const get = (n: string) => env[n];
  const write = async (p: string, user: string) => {
    await Deno.mkdir(p.slice(0, p.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(p, JSON.stringify({ auths: { "r.example": { auth: enc(`${user}:pw`) } } }));
  };
  assertEquals(await lookupCredentials("r.example", "x", { env: get }), undefined);
  await write(`${tmp.path}/home/.docker/config.json`, "docker");
  assertEquals((await lookupCredentials("r.example", "x", { env: get }))?.username, "docker");
  await write(`${tmp.path}/home/.config/containers/auth.json`, "config");
  assertEquals((await lookupCredentials("r.example", "x", { env: get }))?.username, "config");
  await write(`${tmp.path}/run/containers/auth.json`, "runtime");
  const c = await lookupCredentials("r.example", "x", { env: get });
  assertEquals([c?.username, c?.source], ["runtime", `${tmp.path}/run/containers/auth.json`]);
  env.REGISTRY_AUTH_FILE = `${tmp.path}/env.json`;
  await assertRejects(() => lookupCredentials("r.example", "x", { env: get }), InvalidArgumentError);
  await write(env.REGISTRY_AUTH_FILE, "envfile");
  assertEquals((await lookupCredentials("r.example", "x", { env: get }))?.username, "envfile");
  await write(`${tmp.path}/explicit.json`, "explicit");
  assertEquals(
    (await lookupCredentials("r.example", "x", { env: get, authfile: `${tmp.path}/explicit.json` }))
      ?.username,
    "explicit",
  );
  const cr = await lookupCredentials("r.example", "x", { env: get, creds: "u:p:q" });
  assertEquals([cr?.username, cr?.password, cr?.source], ["u", "p:q", "--creds"]);
  await Deno.writeTextFile(`${tmp.path}/explicit.json`, "{ not json, password: hunter2");
  const e = await assertRejects(() =>
    lookupCredentials("r.example", "x", { env: get, authfile: `${tmp.path}/explicit.json` })
  );
  assert(!e.message.includes("hunter2"), e.message);
});

Deno.test("Retry-After: seconds and HTTP dates", () => {
  assertEquals(parseRetryAfter("3"), 3000);
  const now = Date.parse("Wed, 21 Oct 2015 07:28:00 GMT");
  assertEquals(parseRetryAfter("Wed, 21 Oct 2015 07:28:02 GMT", now), 2000);
  assertEquals(parseRetryAfter(null), undefined);
  assertEquals(parseRetryAfter("soon"), undefined);
});

function streamOf(chunks: Uint8Array[], fail?: Error): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(ctl) {
      if (i < chunks.length) ctl.enqueue(chunks[i++]);
      else if (fail) ctl.error(fail);
      else ctl.close();
    },
  });
}

async function collect(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(s).arrayBuffer());
}

Deno.test("resumable body: resumes after errors and short ends, skips bytes a Range-ignoring server resends", async () => {
  const data = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
  const offsets: number[] = [];
  let call = 0;
  const body = resumableBody(
    (offset) => {
      offsets.push(offset);
      call++;
      if (call === 1) {
        return Promise.resolve({ body: streamOf([data.slice(0, 1000)], new Error("reset")), offset: 0 });
      }
      // The server ignores Range: sends everything from 0, then ends short (no error).
      if (call === 2) return Promise.resolve({ body: streamOf([data.slice(0, 1500)]), offset: 0 });
      return Promise.resolve({ body: streamOf([data.slice(offset)]), offset });
    },
    data.length,
    retryPolicy(3, 1),
    "blob",
  );
  assertEquals(await collect(body), data);
  assertEquals(offsets, [0, 1000, 1500]);

  // A connection that keeps failing without progress gives up after the tries.
  const dead = resumableBody(
    () => Promise.resolve({ body: streamOf([], new Error("reset")), offset: 0 }),
    10,
    retryPolicy(2, 1),
    "blob sha256:x",
  );
  const e = await assertRejects(() => collect(dead), TransportError);
  assert(/blob sha256:x: connection lost after 0 bytes.*gave up after 3 tries/.test(e.message), e.message);
});

/** A registry in this process serving fixed manifests, to check what the client accepts. */
function fakeRegistry(routes: Record<string, { body: string; type: string; dcd?: string }>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/v2/") return new Response("{}");
    const r = routes[path];
    if (!r) return new Response('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"nope"}]}', { status: 404 });
    const headers: Record<string, string> = { "content-type": r.type };
    if (r.dcd) headers["docker-content-digest"] = r.dcd;
    return new Response(r.body, { headers });
  });
  return { host: `127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

Deno.test({
  name: "registry source: schema 1 refused, digests checked, Docker lists resolved",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      config: {
        mediaType: "application/vnd.docker.container.image.v1+json",
        digest: "sha256:" + "c".repeat(64),
        size: 2,
      },
      layers: [],
    });
    const md = sha256(new TextEncoder().encode(manifest));
    const list = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.list.v2+json",
      manifests: [{
        mediaType: "application/vnd.docker.distribution.manifest.v2+json",
        digest: md,
        size: manifest.length,
        platform: { os: "linux", architecture: "riscv64" },
      }],
    });
    const v1 = JSON.stringify({ schemaVersion: 1, name: "a", tag: "old", fsLayers: [] });
    const srv = fakeRegistry({
      "/v2/a/manifests/old": { body: v1, type: "application/vnd.docker.distribution.manifest.v1+prettyjws" },
      "/v2/a/manifests/list": {
        body: list,
        type: "application/vnd.docker.distribution.manifest.list.v2+json",
      },
      [`/v2/a/manifests/${md}`]: {
        body: manifest,
        type: "application/vnd.docker.distribution.manifest.v2+json",
      },
      "/v2/a/manifests/lying": {
        body: manifest,
        type: "application/vnd.docker.distribution.manifest.v2+json",
        dcd: "sha256:" + "d".repeat(64),
      },
      [`/v2/a/manifests/sha256:${"e".repeat(64)}`]: {
        body: manifest,
        type: "application/vnd.docker.distribution.manifest.v2+json",
      },
    });
    const conf = { registries: [], files: [] };
    const open = (ref: string) =>
      new RegistrySource(parseDockerReference(`${srv.host}/${ref}`), { tlsVerify: false, retries: 0 }, conf);
    const platform = { os: "linux", architecture: "riscv64" };
    try {
      const s1 = open("a:old");
      const e1 = await assertRejects(() => s1.getManifest(platform), FormatError);
      assert(/schema 1 manifests are not supported/.test(e1.message), e1.message);
      await s1.close();

      const s2 = open("a:list");
      const m = await s2.getManifest(platform);
      assertEquals([m.digest, m.mediaType], [md, "application/vnd.docker.distribution.manifest.v2+json"]);
      await s2.close();

      const s3 = open("a:lying");
      const e3 = await assertRejects(() => s3.getManifest(platform), IntegrityError);
      assert(/Docker-Content-Digest says sha256:d+ but the manifest hashes to/.test(e3.message), e3.message);
      await s3.close();

      const s4 = open(`a@sha256:${"e".repeat(64)}`);
      await assertRejects(() => s4.getManifest(platform), IntegrityError);
      await s4.close();
    } finally {
      await srv.stop();
    }
  },
});

Deno.test("resumable body: the expected size ends the blob, however long the connection stays open", async () => {
  const data = Uint8Array.from({ length: 2000 }, (_, i) => (i * 7) & 0xff);
  let cancelled = false;
  // Sends the blob and 100 bytes more in one chunk, then never ends (an overstated Content-Length).
  const body = resumableBody(
    () =>
      Promise.resolve({
        body: new ReadableStream<Uint8Array>({
          start(ctl) {
            const more = new Uint8Array(data.length + 100);
            more.set(data);
            ctl.enqueue(more);
          },
          cancel() {
            cancelled = true;
          },
        }),
        offset: 0,
      }),
    data.length,
    retryPolicy(0, 1),
    "blob",
  );
  assertEquals(await collect(body), data);
  assert(cancelled, "the connection was not let go");
});
