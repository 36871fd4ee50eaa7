// Registry authentication and TLS, end to end: htpasswd Basic auth over TLS (test CA + leaf) with every
// credential source, certs.d / --cert-dir / --tls-verify=false, client certificates, and Bearer
// tokens from a token server (also across a redirect that must not carry the Authorization header).
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { startFaultProxy } from "./helpers/fault_proxy.ts";
import { buildFixtures, initRepo, manifestDigestOf } from "./helpers/registry_fixtures.ts";
import { htpasswdFile, makePki, pushImage, startRegistry } from "./helpers/registry_server.ts";
import { startTokenServer } from "./helpers/token_server.ts";

const haveTools = ["docker-registry", "skopeo", "openssl", "htpasswd"].every((t) => {
  try {
    new Deno.Command(t, { args: ["--help"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
});

const USER = "alice";
const PASS = "s3cr:et-Pa55";

function authJson(key: string, user: string, pass: string): string {
  return JSON.stringify({ auths: { [key]: { auth: btoa(`${user}:${pass}`) } } });
}

Deno.test({
  name: "registry auth: Basic over TLS, credential sources, certs.d, client certs, Bearer tokens",
  ignore: !haveTools,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using tmp = await tempDir("cfsctl-regauth-");
    const fx = await buildFixtures(`${tmp.path}/fx`);
    const pki = await makePki(`${tmp.path}/pki`);
    const htpasswd = await htpasswdFile(`${tmp.path}/htpasswd`, USER, PASS);
    await using reg = await startRegistry(`${tmp.path}/reg`, {
      tls: { cert: pki.leafCert, key: pki.leafKey },
      htpasswd,
    });
    await pushImage(`oci:${fx.layout}:v1`, `docker://${reg.host}/team/app:v1`, { creds: `${USER}:${PASS}` });

    const home = `${tmp.path}/home`;
    const run = `${tmp.path}/run`;
    await Deno.mkdir(home, { recursive: true });
    await Deno.mkdir(run, { recursive: true });
    // The CA for the registry, found through a certs.d root.
    const certsD = `${tmp.path}/certs.d`;
    await Deno.mkdir(`${certsD}/${reg.host}`, { recursive: true });
    await Deno.copyFile(pki.caCert, `${certsD}/${reg.host}/ca.crt`);
    const baseEnv = { HOME: home, XDG_RUNTIME_DIR: run, CFSCTL_CERTS_D: certsD };
    const image = `docker://${reg.host}/team/app:v1`;
    let n = 0;
    const pull = async (args: string[], env: Record<string, string> = {}) => {
      const repo = `${tmp.path}/repo${n++}`;
      await initRepo(repo);
      const r = await runCli(
        ["--repo", repo, "oci", "pull", "--progress", "none", "--retries", "0", ...args],
        {
          env: { ...baseEnv, ...env },
        },
      );
      return { ...r, repo };
    };
    const ok = async (args: string[], env: Record<string, string> = {}) => {
      const r = await pull(args, env);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await manifestDigestOf(r.repo, "app"), fx.app.manifestDigest);
      assert(!r.stderr.includes(PASS) && !r.stdout.includes(PASS));
    };

    await t.step("--creds with certs.d CA", () => ok(["--creds", `${USER}:${PASS}`, image, "app"]));

    await t.step("wrong credentials: clear 401, no secret in the message", async () => {
      const r = await pull(["--creds", `${USER}:wrong-pass`, image, "app"]);
      assertEquals(r.code, 1);
      assertMatch(
        r.stderr,
        /access denied by https:\/\/127\.0\.0\.1:\d+\/v2\/team\/app\/manifests\/v1: HTTP 401: the credentials from --creds were rejected/,
      );
      assert(!r.stderr.includes("wrong-pass"));
    });

    await t.step("no credentials: says so", async () => {
      const r = await pull([image, "app"]);
      assertEquals(r.code, 1);
      assertMatch(r.stderr, /HTTP 401: no credentials found for 127\.0\.0\.1:\d+/);
    });

    await t.step("--authfile", async () => {
      const f = `${tmp.path}/authfile.json`;
      await Deno.writeTextFile(f, authJson(reg.host, USER, PASS));
      await ok(["--authfile", f, image, "app"]);
    });

    await t.step("REGISTRY_AUTH_FILE, and it replaces the default files", async () => {
      const f = `${tmp.path}/env-auth.json`;
      await Deno.writeTextFile(f, authJson(reg.host, USER, PASS));
      await ok([image, "app"], { REGISTRY_AUTH_FILE: f });
      // A good default file does not help when REGISTRY_AUTH_FILE names one without the registry.
      await Deno.mkdir(`${run}/containers`, { recursive: true });
      await Deno.writeTextFile(`${run}/containers/auth.json`, authJson(reg.host, USER, PASS));
      await Deno.writeTextFile(f, authJson("other.example", USER, PASS));
      const r = await pull([image, "app"], { REGISTRY_AUTH_FILE: f });
      assertEquals(r.code, 1);
      assertMatch(r.stderr, /no credentials found/);
      await Deno.remove(`${run}/containers/auth.json`);
    });

    await t.step("$XDG_RUNTIME_DIR/containers/auth.json wins over ~/.docker/config.json", async () => {
      await Deno.mkdir(`${run}/containers`, { recursive: true });
      await Deno.writeTextFile(`${run}/containers/auth.json`, authJson(reg.host, USER, PASS));
      await Deno.mkdir(`${home}/.docker`, { recursive: true });
      await Deno.writeTextFile(`${home}/.docker/config.json`, authJson(reg.host, USER, "bad"));
      await ok([image, "app"]);
      await Deno.remove(`${run}/containers/auth.json`);
      await Deno.remove(`${home}/.docker/config.json`);
    });

    await t.step("~/.config/containers/auth.json, most specific key first", async () => {
      await Deno.mkdir(`${home}/.config/containers`, { recursive: true });
      await Deno.writeTextFile(
        `${home}/.config/containers/auth.json`,
        JSON.stringify({
          auths: {
            [reg.host]: { auth: btoa(`${USER}:bad`) },
            [`${reg.host}/team`]: { auth: btoa(`${USER}:${PASS}`) },
          },
        }),
      );
      await ok([image, "app"]);
      await Deno.remove(`${home}/.config/containers/auth.json`);
    });

    await t.step("~/.docker/config.json with a legacy https:// key", async () => {
      await Deno.mkdir(`${home}/.docker`, { recursive: true });
      await Deno.writeTextFile(
        `${home}/.docker/config.json`,
        authJson(`https://${reg.host}/v1/`, USER, PASS),
      );
      await ok([image, "app"]);
      await Deno.remove(`${home}/.docker/config.json`);
    });

    await t.step("TLS: unknown CA refused; --cert-dir; --tls-verify=false", async () => {
      const creds = ["--creds", `${USER}:${PASS}`];
      const r = await pull([...creds, image, "app"], { CFSCTL_CERTS_D: `${tmp.path}/empty` });
      assertEquals(r.code, 1);
      assertMatch(r.stderr, /cannot reach registry 127\.0\.0\.1:\d+ .*(UnknownIssuer|certificate)/i);
      const dir = `${tmp.path}/certdir`;
      await Deno.mkdir(dir, { recursive: true });
      await Deno.copyFile(pki.caCert, `${dir}/ca.crt`);
      await ok([...creds, "--cert-dir", dir, image, "app"], { CFSCTL_CERTS_D: `${tmp.path}/empty` });
      await ok([...creds, "--tls-verify=false", image, "app"], { CFSCTL_CERTS_D: `${tmp.path}/empty` });
      // The same through skopeo: credentials reach it in a private auth file, never on its command line.
      await ok(["--transport-backend", "skopeo", ...creds, "--cert-dir", dir, image, "app"]);
      const bad = await pull([
        "--transport-backend",
        "skopeo",
        "--creds",
        `${USER}:wrong`,
        "--cert-dir",
        dir,
        image,
        "x",
      ]);
      assertEquals(bad.code, 1);
      assertMatch(bad.stderr, /skopeo OpenImage: .*(unauthorized|authentication required)/i);
    });

    await t.step("client certificate from certs.d (mutual TLS)", async () => {
      await using mtls = await startRegistry(`${tmp.path}/mtls`, {
        tls: { cert: pki.leafCert, key: pki.leafKey, clientCas: [pki.caCert] },
      });
      // skopeo pushes with the client pair from a cert dir.
      const pushDir = `${tmp.path}/pushcerts`;
      await Deno.mkdir(pushDir, { recursive: true });
      await Deno.copyFile(pki.clientCert, `${pushDir}/client.cert`);
      await Deno.copyFile(pki.clientKey, `${pushDir}/client.key`);
      await Deno.copyFile(pki.caCert, `${pushDir}/ca.crt`);
      const o = await new Deno.Command("skopeo", {
        args: [
          "copy",
          "-q",
          "--preserve-digests",
          "--dest-cert-dir",
          pushDir,
          `oci:${fx.layout}:v1`,
          `docker://${mtls.host}/m/app:v1`,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      assertEquals(o.code, 0, new TextDecoder().decode(o.stderr));
      const root = `${tmp.path}/mtls-certs.d`;
      await Deno.mkdir(`${root}/${mtls.host}`, { recursive: true });
      await Deno.copyFile(pki.caCert, `${root}/${mtls.host}/ca.crt`);
      const without = await pull([`docker://${mtls.host}/m/app:v1`, "app"], { CFSCTL_CERTS_D: root });
      assertEquals(without.code, 1);
      await Deno.copyFile(pki.clientCert, `${root}/${mtls.host}/client.cert`);
      await Deno.copyFile(pki.clientKey, `${root}/${mtls.host}/client.key`);
      await ok([`docker://${mtls.host}/m/app:v1`, "app"], { CFSCTL_CERTS_D: root });
    });

    await t.step("Bearer token auth; access_token; redirect drops Authorization", async () => {
      const tokenOpts = { users: { bob: "t0ken-pass" }, field: "token" as "token" | "access_token" };
      await using ts = await startTokenServer(`${tmp.path}/token`, tokenOpts);
      await using treg = await startRegistry(`${tmp.path}/treg`, {
        token: { realm: ts.realm, service: ts.service, issuer: ts.issuer, rootCertBundle: ts.rootCertBundle },
      });
      await pushImage(`oci:${fx.layout}:v1`, `docker://${treg.host}/tok/app:v1`, { creds: "bob:t0ken-pass" });
      const timage = `docker://${treg.host}/tok/app:v1`;
      ts.requests.length = 0;
      await ok(["--tls-verify=false", "--creds", "bob:t0ken-pass", timage, "app"]);
      assert(ts.requests.length >= 1);
      assert(ts.requests.every((r) => r.accepted && r.account === "bob"));
      assert(
        ts.requests.some((r) => r.scope.includes("repository:tok/app:pull")),
        JSON.stringify(ts.requests),
      );

      tokenOpts.field = "access_token";
      await ok(["--tls-verify=false", "--creds", "bob:t0ken-pass", timage, "app"]);

      const anon = await pull(["--tls-verify=false", timage, "app"]);
      assertEquals(anon.code, 1);
      assertMatch(
        anon.stderr,
        /authentication required: token server http:\/\/127\.0\.0\.1:\d+\/token refused anonymous access/,
      );
      const bad = await pull(["--tls-verify=false", "--creds", "bob:nope", timage, "app"]);
      assertEquals(bad.code, 1);
      assertMatch(bad.stderr, /authentication failed: .* rejected the credentials from --creds \(HTTP 401\)/);

      const proxy = startFaultProxy(treg.host, [
        { path: /\/blobs\/sha256:/, fault: { kind: "redirect" }, times: 100 },
      ]);
      try {
        await ok([
          "--tls-verify=false",
          "--creds",
          "bob:t0ken-pass",
          `docker://${proxy.host}/tok/app:v1`,
          "app",
        ]);
        const cdn = proxy.seen.filter((s) => s.listener === "cdn");
        const redirected = proxy.seen.filter((s) => s.listener === "main" && s.status === 307);
        assert(cdn.length >= 3 && redirected.length === cdn.length, JSON.stringify(proxy.seen));
        assert(redirected.every((s) => s.authorization), "registry requests carry the token");
        assert(
          cdn.every((s) => !s.authorization && s.status === 200),
          "the other host gets no Authorization",
        );
      } finally {
        await proxy.stop();
      }
    });
  },
});
