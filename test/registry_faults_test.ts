// Every network read bounded in time and size, end to end against a real registry behind the fault
// proxy: stalled manifest, error, blob and token bodies (CFSCTL_TIMEOUT / --timeout), huge error and
// token bodies (capped, and the cap named), overstated Content-Length (the descriptor's size decides),
// an HTML page as a blob, an invalid --authfile (not retried), and a plain-HTTP token realm behind an
// https registry (refused unless insecure). Each pull runs with a deadline: code that hangs fails here.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { DENO, killIfRunning, MAIN, runCli, tempDir } from "./helpers/cli.ts";
import { startFaultProxy } from "./helpers/fault_proxy.ts";
import { buildFixtures, imageId, initRepo } from "./helpers/registry_fixtures.ts";
import { makePki, pushImage, startRegistry } from "./helpers/registry_server.ts";
import { startTokenServer, type TokenServerOptions } from "./helpers/token_server.ts";

const haveTools = ["docker-registry", "skopeo", "openssl"].every((t) => {
  try {
    new Deno.Command(t, { args: ["--help"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
});

const RUN_FLAGS = MAIN.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"];
/** A pull that has not ended by then is killed: the step then fails on its exit code and time. */
const DEADLINE_MS = 40_000;

interface Timed {
  code: number;
  stderr: string;
  ms: number;
  killed: boolean;
}

async function cliWithin(args: string[], env: Record<string, string>): Promise<Timed> {
  const started = Date.now();
  const child = new Deno.Command(DENO, {
    args: [...RUN_FLAGS, MAIN, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env,
  }).spawn();
  let killed = false;
  const timer = setTimeout(() => {
    killed = killIfRunning(child, "SIGKILL");
  }, DEADLINE_MS);
  const o = await child.output();
  clearTimeout(timer);
  return { code: o.code, stderr: new TextDecoder().decode(o.stderr), ms: Date.now() - started, killed };
}

function within(r: Timed, ms: number): void {
  assert(!r.killed, `still running after ${DEADLINE_MS} ms (killed); stderr: ${r.stderr}`);
  assert(r.ms < ms, `took ${r.ms} ms, bound ${ms} ms; stderr: ${r.stderr}`);
}

Deno.test({
  name: "registry faults: stalls, huge bodies, overstated lengths, HTML blobs, http token realm",
  ignore: !haveTools,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using tmp = await tempDir("cfsctl-regfault-");
    const fx = await buildFixtures(`${tmp.path}/fx`);
    await using reg = await startRegistry(`${tmp.path}/reg`);
    await pushImage(`oci:${fx.layout}:v1`, `docker://${reg.host}/test/app:v1`);
    const env = { HOME: `${tmp.path}/home`, XDG_RUNTIME_DIR: `${tmp.path}/run`, CFSCTL_TIMEOUT: "1" };
    let n = 0;
    const pull = async (args: string[], extraEnv: Record<string, string> = {}) => {
      const repo = `${tmp.path}/repo${n++}`;
      await initRepo(repo);
      const r = await cliWithin(
        ["--repo", repo, "oci", "pull", "--progress", "none", "--tls-verify=false", ...args],
        { ...env, ...extraEnv },
      );
      return { ...r, repo };
    };
    const ref = await pull([`docker://${reg.host}/test/app:v1`, "app"]);
    assertEquals(ref.code, 0, ref.stderr);
    const goodId = await imageId(ref.repo, "app");

    await using proxy = startFaultProxy(reg.host);
    const via = `docker://${proxy.host}/test/app:v1`;
    const blobPath = new RegExp(`/blobs/${fx.bigLayer}$`);
    const setRules = (...rules: typeof proxy.rules) => {
      proxy.rules.splice(0, Infinity, ...rules);
      proxy.seen.length = 0;
    };

    await t.step("--timeout and CFSCTL_TIMEOUT are in --help with their default", async () => {
      const h = await new Deno.Command(DENO, { args: [...RUN_FLAGS, MAIN, "oci", "pull", "--help"] })
        .output();
      assertEquals(h.code, 0);
      const text = new TextDecoder().decode(h.stdout).replace(/\s+/g, " ");
      assertMatch(text, /--timeout <SECONDS>.*stall timeout.*\(default 60; env CFSCTL_TIMEOUT\)/);
      const bad = await pull(["--timeout", "0", via, "app"]);
      assertEquals(bad.code, 2);
      assertMatch(bad.stderr, /--timeout takes seconds/);
    });

    await t.step("manifest body stalls: retried, then a clear error within the timeout", async () => {
      setRules({ path: /\/manifests\/v1$/, fault: { kind: "stall", afterBytes: 20 }, times: 100 });
      const r = await pull(["--retries", "1", via, "app"]);
      within(r, 15_000);
      assertEquals(r.code, 1, r.stderr);
      assertMatch(
        r.stderr,
        /manifest v1: reading http:\/\/127\.0\.0\.1:\d+\/v2\/test\/app\/manifests\/v1 failed: no data for 1 s \(gave up after 2 tries\)/,
      );
      assertEquals(proxy.seen.filter((s) => /manifests\/v1$/.test(s.path)).length, 2);
    });

    await t.step("--timeout overrides CFSCTL_TIMEOUT", async () => {
      setRules({ path: /\/manifests\/v1$/, fault: { kind: "stall", afterBytes: 20 }, times: 100 });
      const r = await pull(["--retries", "0", "--timeout", "2", via, "app"], { CFSCTL_TIMEOUT: "30" });
      within(r, 12_000);
      assertMatch(r.stderr, /failed: no data for 2 s \(gave up after 1 tries\)/);
    });

    await t.step("error body stalls: the 404 is reported, its body said to be unreadable", async () => {
      setRules({ path: /\/manifests\/nope$/, fault: { kind: "status", status: 404, body: "stall" } });
      const r = await pull([`docker://${proxy.host}/test/app:nope`, "x"]);
      within(r, 12_000);
      assertEquals(r.code, 1);
      assertMatch(
        r.stderr,
        /manifest nope: not found at .*\(HTTP 404\) \(error body unreadable: no data for 1 s\)/,
      );
    });

    await t.step("blob body stalls: resumed with Range after the timeout", async () => {
      setRules({ path: blobPath, fault: { kind: "stall", afterBytes: 100_000 } });
      const r = await pull([via, "app"]);
      within(r, 15_000);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await imageId(r.repo, "app"), goodId);
      const ranges = proxy.seen.filter((s) => blobPath.test(s.path)).map((s) => s.range ?? "");
      assertEquals(ranges, ["", "bytes=100000-"]);
    });

    await t.step("huge error bodies: read no further than 256 KiB, and the message says so", async () => {
      const huge = 512 * 1024 * 1024;
      setRules({
        path: /\/manifests\/nope$/,
        fault: { kind: "status", status: 404, body: { huge, declareLength: false } },
      });
      const a = await pull([`docker://${proxy.host}/test/app:nope`, "x"]);
      within(a, 12_000);
      assertEquals(a.code, 1);
      assertMatch(a.stderr, /\(HTTP 404\) \(error body not read past the 256 KiB limit\)/);
      const sent = proxy.seen.find((s) => /nope$/.test(s.path))!.sent;
      assert(sent < 32 * 1024 * 1024, `the client read ${sent} bytes of the error body`);

      setRules({
        path: /\/manifests\/nope$/,
        fault: { kind: "status", status: 404, body: { huge, declareLength: true } },
      });
      const b = await pull([`docker://${proxy.host}/test/app:nope`, "x"]);
      within(b, 12_000);
      assertMatch(b.stderr, /\(error body of 536870912 bytes not read: over the 256 KiB limit\)/);
      const sent2 = proxy.seen.find((s) => /nope$/.test(s.path))!.sent;
      assert(sent2 < 32 * 1024 * 1024, `the client read ${sent2} bytes of the error body`);
    });

    await t.step("overstated Content-Length on every blob: complete at the descriptor's size", async () => {
      for (const hold of [false, true]) {
        setRules({ path: /\/blobs\//, fault: { kind: "overstate", extra: 1000, hold }, times: 100 });
        const r = await pull([via, "app"]);
        within(r, 10_000);
        assertEquals(r.code, 0, `hold=${hold}: ${r.stderr}`);
        assertEquals(await imageId(r.repo, "app"), goodId);
        assert(proxy.seen.every((s) => s.range === undefined), JSON.stringify(proxy.seen));
      }
    });

    await t.step("an HTML page served as a blob: named as such, not retried", async () => {
      setRules({ path: blobPath, fault: { kind: "html" }, times: 100 });
      const r = await pull([via, "app"]);
      within(r, 10_000);
      assertEquals(r.code, 1);
      assertMatch(
        r.stderr,
        new RegExp(
          `blob ${fx.bigLayer}: http://127\\.0\\.0\\.1:\\d+/v2/test/app/blobs/${fx.bigLayer} sent an HTML page \\(Content-Type: text/html`,
        ),
      );
      assertEquals(proxy.seen.filter((s) => blobPath.test(s.path)).length, 1);
    });

    await t.step({
      name: "disk full at many points of a pull: the error names a path and the pull, nothing tagged",
      ignore: Deno.uid() !== 0,
      fn: async () => {
        const mnt = `${tmp.path}/small`;
        await Deno.mkdir(mnt);
        let failed = 0;
        let fdNamed = 0;
        let late = 0; // after the layers: linking streams, the image, the tag
        for (let kb = 280; kb <= 480; kb += 10) {
          const m = await new Deno.Command("mount", {
            args: ["-t", "tmpfs", "-o", `size=${kb}k`, "tmpfs", mnt],
          })
            .output();
          assertEquals(m.code, 0, new TextDecoder().decode(m.stderr));
          try {
            const repo = `${mnt}/repo`;
            const init = await cliWithin(["--repo", repo, "init", "--insecure"], env);
            if (init.code !== 0) continue; // not even room for the repository
            const image = `docker://${reg.host}/test/app:v1`;
            const r = await cliWithin(
              ["--repo", repo, "oci", "pull", "--progress", "none", "--tls-verify=false", image, "app"],
              env,
            );
            within(r, 20_000);
            if (r.code === 0) continue;
            failed++;
            if (!r.stderr.includes("layer sha256:")) late++;
            assertEquals(r.code, 1, r.stderr);
            assertMatch(r.stderr, /ENOSPC|No space left on device/);
            assert(r.stderr.includes(`error: pulling ${image}: `), `${kb} KiB: no pull context: ${r.stderr}`);
            if (/fd \d+/.test(r.stderr)) fdNamed++;
            // A path: the repository's, or an object's (objects/XX/…).
            assertMatch(r.stderr, new RegExp(`${repo}|object [0-9a-f]{2}/[0-9a-f]+`));
            const images = await runCli(["--repo", repo, "oci", "images", "--json"], { env });
            assertEquals(images.code, 0, images.stderr);
            assert(
              !images.stdout.includes('"app"'),
              `${kb} KiB: tagged after a failed pull: ${images.stdout}`,
            );
          } finally {
            await new Deno.Command("umount", { args: [mnt] }).output();
          }
        }
        assert(failed >= 3, `only ${failed} pulls ran out of space: the sizes no longer cover the pull`);
        assertEquals(fdNamed, 0, "an error named a file descriptor instead of a path");
        assert(late >= 1, "no size ran out of space after the layers were in");
      },
    });

    await t.step("token auth: invalid --authfile not retried; stalled and huge token replies", async () => {
      const tokenOpts: TokenServerOptions = { users: { bob: "t0ken-pass" } };
      await using ts = await startTokenServer(`${tmp.path}/token`, tokenOpts);
      await using treg = await startRegistry(`${tmp.path}/treg`, {
        token: { realm: ts.realm, service: ts.service, issuer: ts.issuer, rootCertBundle: ts.rootCertBundle },
      });
      await pushImage(`oci:${fx.layout}:v1`, `docker://${treg.host}/tok/app:v1`, { creds: "bob:t0ken-pass" });
      const timage = `docker://${treg.host}/tok/app:v1`;

      const dn = await pull(["--authfile", "/dev/null", timage, "app"]);
      within(dn, 10_000);
      assertEquals(dn.code, 1);
      assertMatch(dn.stderr, /\/dev\/null: auth file is not valid JSON/);
      assert(!/tries/.test(dn.stderr), `retried: ${dn.stderr}`);

      tokenOpts.fault = "stall";
      const st = await pull(["--retries", "0", "--creds", "bob:t0ken-pass", timage, "app"]);
      within(st, 12_000);
      assertEquals(st.code, 1);
      assertMatch(
        st.stderr,
        /reading the reply of token server http:\/\/127\.0\.0\.1:\d+\/token failed: no data for 1 s/,
      );

      tokenOpts.fault = { huge: 512 * 1024 * 1024 };
      const before = ts.faultBytesSent;
      const hu = await pull(["--retries", "0", "--creds", "bob:t0ken-pass", timage, "app"]);
      within(hu, 12_000);
      assertEquals(hu.code, 1);
      assertMatch(
        hu.stderr,
        /token server http:\/\/127\.0\.0\.1:\d+\/token sent a reply larger than 256 KiB/,
      );
      const pulled = ts.faultBytesSent - before;
      assert(pulled < 32 * 1024 * 1024, `the client read ${pulled} bytes of the token reply`);
      tokenOpts.fault = undefined;
    });

    await t.step("https registry with an http token realm: refused unless insecure", async () => {
      const pki = await makePki(`${tmp.path}/pki`);
      await using ts = await startTokenServer(`${tmp.path}/token2`, { users: { bob: "t0ken-pass" } });
      await using sreg = await startRegistry(`${tmp.path}/sreg`, {
        tls: { cert: pki.leafCert, key: pki.leafKey },
        token: { realm: ts.realm, service: ts.service, issuer: ts.issuer, rootCertBundle: ts.rootCertBundle },
      });
      await pushImage(`oci:${fx.layout}:v1`, `docker://${sreg.host}/tok/app:v1`, { creds: "bob:t0ken-pass" });
      const certsD = `${tmp.path}/certs.d`;
      await Deno.mkdir(`${certsD}/${sreg.host}`, { recursive: true });
      await Deno.copyFile(pki.caCert, `${certsD}/${sreg.host}/ca.crt`);
      ts.requests.length = 0;
      const repo = `${tmp.path}/repo-realm`;
      await initRepo(repo);
      const args = ["--repo", repo, "oci", "pull", "--progress", "none", "--retries", "0"];
      const image = `docker://${sreg.host}/tok/app:v1`;
      const r = await cliWithin([...args, "--creds", "bob:t0ken-pass", image, "app"], {
        ...env,
        CFSCTL_CERTS_D: certsD,
      });
      within(r, 15_000);
      assertEquals(r.code, 1, r.stderr);
      assertMatch(
        r.stderr,
        /refusing the token realm http:\/\/127\.0\.0\.1:\d+\/token: it is plain HTTP while the registry is served over HTTPS.*--tls-verify=false/,
      );
      assertEquals(ts.requests.length, 0, "the token server was asked anyway");
      const ok = await cliWithin([...args, "--tls-verify=false", "--creds", "bob:t0ken-pass", image, "app"], {
        ...env,
        CFSCTL_CERTS_D: certsD,
      });
      assertEquals(ok.code, 0, ok.stderr);
      assertEquals(await imageId(repo, "app"), goodId);
      assert(ts.requests.length >= 1 && ts.requests.every((q) => q.accepted));
    });
  },
});
