// Pulls through `skopeo experimental-image-proxy` (socketpair + SCM_RIGHTS over FFI): the same image
// from dir:, docker-archive: and a registry gives the same composefs image id as the native paths.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { DENO, MAIN, runCli, tempDir } from "./helpers/cli.ts";
import { startFaultProxy } from "./helpers/fault_proxy.ts";
import { buildFixtures, imageId, initRepo, manifestDigestOf } from "./helpers/registry_fixtures.ts";
import { htpasswdFile, pushImage, startRegistry } from "./helpers/registry_server.ts";
import { closeFd, receiveMessage, sendMessage, socketPair } from "../lib/linux/socket.ts";

const haveSkopeo = (() => {
  try {
    return new Deno.Command("skopeo", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

Deno.test("socket: SEQPACKET messages keep their boundaries and carry file descriptors", async () => {
  const [a, b] = socketPair();
  try {
    // The descriptor passed is one end of a second pair, so that its identity can be checked.
    const [c, d] = socketPair();
    sendMessage(a, new TextEncoder().encode("first"), [c]);
    sendMessage(a, new TextEncoder().encode("second"));
    const m1 = await receiveMessage(b, 1024);
    const m2 = await receiveMessage(b, 1024);
    assertEquals(new TextDecoder().decode(m1.data), "first");
    assertEquals(m1.fds.length, 1);
    assert(m1.fds[0] !== c);
    assertEquals(new TextDecoder().decode(m2.data), "second");
    assertEquals(m2.fds, []);
    // The received descriptor is the same socket: a message sent on d arrives on it.
    sendMessage(d, new TextEncoder().encode("via passed fd"));
    const m3 = await receiveMessage(m1.fds[0], 1024);
    assertEquals(new TextDecoder().decode(m3.data), "via passed fd");
    for (const x of [c, d, m1.fds[0]]) closeFd(x);
  } finally {
    closeFd(a);
    closeFd(b);
  }
});

Deno.test({
  name: "skopeo proxy: dir:, docker-archive: and docker:// give the native image ids",
  ignore: !haveSkopeo,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using tmp = await tempDir("cfsctl-skopeo-");
    const fx = await buildFixtures(`${tmp.path}/fx`);
    const repo = `${tmp.path}/repo`;
    await initRepo(repo);
    const pull = (...args: string[]) =>
      runCli(["--repo", repo, "oci", "pull", "--progress", "none", ...args]);
    const base = await pull(`oci:${fx.layout}:v1`, "native-oci");
    assertEquals(base.code, 0, base.stderr);
    const nativeId = await imageId(repo, "native-oci");

    const skopeoCopy = async (src: string, dst: string) => {
      const o = await new Deno.Command("skopeo", { args: ["copy", "-q", src, dst], stderr: "piped" })
        .output();
      assertEquals(o.code, 0, new TextDecoder().decode(o.stderr));
    };

    await t.step("dir: through skopeo", async () => {
      const dir = `${tmp.path}/dirimg`;
      await skopeoCopy(`oci:${fx.layout}:v1`, `dir:${dir}`);
      const a = await pull(`skopeo:dir:${dir}`, "via-skopeo-dir");
      assertEquals(a.code, 0, a.stderr);
      const b = await pull(`dir:${dir}`, "native-dir");
      assertEquals(b.code, 0, b.stderr);
      assertEquals(await imageId(repo, "via-skopeo-dir"), nativeId);
      assertEquals(await imageId(repo, "native-dir"), nativeId);
    });

    await t.step("docker-archive: through skopeo (Docker manifest converted by the proxy)", async () => {
      const archive = `${tmp.path}/img.tar`;
      await skopeoCopy(`oci:${fx.layout}:gz`, `docker-archive:${archive}:test/app:gz`);
      const a = await pull(`skopeo:docker-archive:${archive}`, "via-skopeo-archive");
      assertEquals(a.code, 0, a.stderr);
      const b = await pull(`docker-archive:${archive}`, "native-archive");
      assertEquals(b.code, 0, b.stderr);
      const c = await pull(`oci:${fx.layout}:gz`, "native-gz");
      assertEquals(c.code, 0, c.stderr);
      const gzId = await imageId(repo, "native-gz");
      assertEquals(await imageId(repo, "via-skopeo-archive"), gzId);
      assertEquals(await imageId(repo, "native-archive"), gzId);
    });

    await t.step("docker:// with --transport-backend skopeo, platform from an index", async () => {
      await using reg = await startRegistry(`${tmp.path}/reg`);
      await pushImage(`oci:${fx.layout}:multi`, `docker://${reg.host}/test/multi:latest`, { all: true });
      const r = await pull(
        "--transport-backend",
        "skopeo",
        "--tls-verify=false",
        "--platform",
        "linux/arm64",
        `docker://${reg.host}/test/multi:latest`,
        "arm",
      );
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await manifestDigestOf(repo, "arm"), fx.arm64.manifestDigest);
      const native = await pull(
        "--tls-verify=false",
        "--platform",
        "linux/arm64",
        `docker://${reg.host}/test/multi`,
        "arm2",
      );
      assertEquals(native.code, 0, native.stderr);
      assertEquals(await imageId(repo, "arm"), await imageId(repo, "arm2"));
    });

    await t.step(
      "--creds with skopeo: nothing holding the password on disk after SIGTERM/SIGKILL",
      async () => {
        const user = "carol";
        const pass = `pw-${crypto.randomUUID()}`;
        const secrets = [pass, btoa(`${user}:${pass}`)];
        const htpasswd = await htpasswdFile(`${tmp.path}/htpasswd`, user, pass);
        await using areg = await startRegistry(`${tmp.path}/areg`, { htpasswd });
        await pushImage(`oci:${fx.layout}:v1`, `docker://${areg.host}/test/app:v1`, {
          creds: `${user}:${pass}`,
        });
        const runtime = `${tmp.path}/xdg-run`;
        await Deno.mkdir(runtime, { recursive: true });
        const marker = `${tmp.path}/marker`;
        await Deno.writeTextFile(marker, "");
        await new Promise((r) => setTimeout(r, 20)); // mtimes after the marker's
        // The big layer stalls half-way: the pull is mid-way (skopeo running, credentials in use) for good.
        await using proxy = startFaultProxy(areg.host, [
          {
            path: new RegExp(`/blobs/${fx.bigLayer}$`),
            fault: { kind: "stall", afterBytes: 100_000 },
            times: 100,
          },
        ]);
        const flags = MAIN.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"];
        const search = async (roots: string[]) => {
          const o = await new Deno.Command("sh", {
            args: [
              "-c",
              'find "$@" -xdev -type f -newer "$M" -size -4M -print0 2>/dev/null | xargs -0 -r grep -l -F -e "$S1" -e "$S2" 2>/dev/null; true',
              "sh",
              ...roots,
            ],
            env: { M: marker, S1: secrets[0], S2: secrets[1] },
            stdout: "piped",
          }).output();
          return new TextDecoder().decode(o.stdout).trim();
        };
        for (const signal of ["SIGTERM", "SIGKILL", "SIGINT"] as const) {
          const repo = `${tmp.path}/kill-${signal}`;
          await initRepo(repo);
          proxy.seen.length = 0;
          const child = new Deno.Command(DENO, {
            args: [
              ...flags,
              MAIN,
              "--repo",
              repo,
              "oci",
              "pull",
              "--progress",
              "none",
              "--transport-backend",
              "skopeo",
              "--tls-verify=false",
              "--creds",
              `${user}:${pass}`,
              `docker://${proxy.host}/test/app:v1`,
              "app",
            ],
            stdin: "null",
            stdout: "null",
            stderr: "piped",
            env: { XDG_RUNTIME_DIR: runtime, HOME: `${tmp.path}/home` },
          }).spawn();
          const stderr = new Response(child.stderr).text();
          const deadline = Date.now() + 30_000;
          while (!proxy.seen.some((s) => s.path.includes(fx.bigLayer) && s.sent >= 100_000)) {
            assert(
              Date.now() < deadline,
              `the pull never reached the stalled blob: ${JSON.stringify(proxy.seen)}`,
            );
            await new Promise((r) => setTimeout(r, 50));
          }
          // skopeo authenticated (the registry wants Basic auth): the credentials reached it.
          assert(proxy.seen.some((s) => s.authorization && s.status === 200), JSON.stringify(proxy.seen));
          let skopeoPids: string[] = [];
          try {
            skopeoPids = (await Deno.readTextFile(`/proc/${child.pid}/task/${child.pid}/children`)).trim()
              .split(/\s+/).filter(Boolean);
          } catch { /* none */ }
          const started = Date.now();
          child.kill(signal);
          const status = await child.status;
          assert(Date.now() - started < 10_000, `${signal}: took ${Date.now() - started} ms to end`);
          assert(!status.success, `${signal}: exited 0: ${await stderr}`);
          // skopeo loses its socket with its parent and exits; give it a moment, then make sure.
          for (const pid of skopeoPids) {
            for (let i = 0; i < 50 && (await Deno.stat(`/proc/${pid}`).then(() => true, () => false)); i++) {
              await new Promise((r) => setTimeout(r, 100));
            }
            try {
              Deno.kill(Number(pid), "SIGKILL");
            } catch { /* gone */ }
          }
          const found = await search(["/tmp", "/dev/shm", "/var/tmp", runtime, repo, Deno.cwd()]);
          assertEquals(found, "", `${signal}: files holding the password remain: ${found}`);
          assert(!(await stderr).includes(pass), `${signal}: password in stderr`);
        }
        // And a complete pull with the same credentials still works (the unnamed file is readable).
        proxy.rules.length = 0;
        const ok = await pull(
          "--transport-backend",
          "skopeo",
          "--tls-verify=false",
          "--creds",
          `${user}:${pass}`,
          `docker://${areg.host}/test/app:v1`,
          "auth-ok",
        );
        assertEquals(ok.code, 0, ok.stderr);
        assertEquals(await imageId(repo, "auth-ok"), nativeId);
        assertEquals(await search(["/tmp", "/dev/shm", "/var/tmp", runtime, repo]), "");
      },
    );

    await t.step("errors: unknown image, skopeo missing", async () => {
      const a = await pull(`skopeo:dir:${tmp.path}/does-not-exist`, "x");
      assertEquals(a.code, 1);
      assertMatch(a.stderr, /skopeo (OpenImage|GetManifest): .*does-not-exist/);
      const b = await runCli([
        "--repo",
        repo,
        "oci",
        "pull",
        "--progress",
        "none",
        "containers-storage:foo",
        "x",
      ], {
        env: { PATH: `${tmp.path}/no-such-bin` },
      });
      assertEquals(b.code, 2);
      assertMatch(b.stderr, /skopeo is not installed/);
    });
  },
});
