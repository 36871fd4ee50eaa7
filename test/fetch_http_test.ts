// `cfsctl fetch URL NAME` against a repository served by `python3 -m http.server` (docs/fetch.md):
// same image as the source, every object verified (a flipped one is refused), an interrupted
// download resumes, and a second fetch downloads nothing.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli } from "./helpers/cli.ts";
import { startCuttingProxy } from "./helpers/cutting_proxy.ts";
import { Rng } from "./helpers/random_tree.ts";
import { makePki } from "./helpers/registry_server.ts";
import { addImage, sha256, tarDirectory } from "./helpers/oci_builder.ts";
import { startBusyboxServer, startStaticServer } from "./helpers/static_server.ts";
import { Repository } from "../lib/repository/repository.ts";
import { SplitStreamWriter } from "../lib/splitstream/mod.ts";
import { CONTENT_TYPE } from "../lib/oci/content_types.ts";

async function cfs(repo: string, args: string[], expectCode = 0) {
  const r = await runCli(["--repo", repo, ...args]);
  if (r.code !== expectCode) {
    throw new Error(
      `cfsctl ${args.join(" ")} exited ${r.code} (wanted ${expectCode}):\n${r.stderr}${r.stdout}`,
    );
  }
  return r;
}

/** objects/XX/REST of every object, with sizes. */
async function objectFiles(repo: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const d of Deno.readDir(`${repo}/objects`)) {
    if (!d.isDirectory) continue;
    for await (const f of Deno.readDir(`${repo}/objects/${d.name}`)) {
      out.set(`${d.name}/${f.name}`, (await Deno.stat(`${repo}/objects/${d.name}/${f.name}`)).size);
    }
  }
  return out;
}

function randomBytes(n: number, seed: number): Uint8Array {
  return new Rng(seed).bytes(n);
}

interface Fixture {
  dir: string;
  source: string;
  manifestDigest: string;
  /** objects/ path of the 3 MiB file (streamed download) and of a 3000-byte one (in-memory). */
  bigObject: string;
  smallObject: string;
}

async function makeSource(dir: string): Promise<Fixture> {
  const l1 = `${dir}/l1`;
  const l2 = `${dir}/l2`;
  await Deno.mkdir(`${l1}/usr/bin`, { recursive: true });
  await Deno.mkdir(`${l2}/etc`, { recursive: true });
  await Deno.writeFile(`${l1}/usr/bin/big`, randomBytes(3 << 20, 7));
  await Deno.writeFile(`${l1}/usr/bin/small`, randomBytes(3000, 8));
  for (let i = 0; i < 40; i++) await Deno.writeFile(`${l1}/usr/f${i}`, randomBytes(200 + i * 50, 100 + i));
  await Deno.writeTextFile(`${l2}/etc/hostname`, "fetched\n");
  await Deno.writeFile(`${l2}/etc/data`, randomBytes(70_000, 9));
  const built = await addImage(`${dir}/layout`, {
    tag: "t",
    layers: [{ tar: await tarDirectory(l1), compression: "gzip" }, { tar: await tarDirectory(l2) }],
  });
  const source = `${dir}/source`;
  await cfs(source, ["init", "--insecure"]);
  await cfs(source, ["oci", "pull", `oci:${dir}/layout:t`, "demo"]);
  const objs = await objectFiles(source);
  const bySize = (n: number) => [...objs].find(([, s]) => s === n)?.[0];
  const bigObject = bySize(3 << 20);
  const smallObject = bySize(3000);
  assert(bigObject && smallObject, "the source repository holds the two files as objects");
  return { dir, source, manifestDigest: built.manifestDigest, bigObject, smallObject };
}

/** `fetch URL refs/oci/demo --json --progress none FLAGS` into `repo`, its JSON output. */
async function fetchJson(repo: string, url: string, flags: string[] = []): Promise<any> {
  return JSON.parse(
    (await cfs(repo, ["fetch", url, "refs/oci/demo", "--json", "--progress", "none", ...flags])).stdout,
  );
}

async function inspect(repo: string, name: string): Promise<any> {
  return JSON.parse((await cfs(repo, ["oci", "inspect", name])).stdout);
}

Deno.test("fetch: an OCI image from python3 -m http.server, resumed after a cut, verified, idempotent", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-fetch-" });
  const fx = await makeSource(dir);
  const server = await startStaticServer(fx.source);
  const proxy = startCuttingProxy(server.port);
  try {
    // Cut the 3 MiB object after 1 MiB once: the download must resume from there.
    proxy.cut((p) => p.endsWith(fx.bigObject), 1 << 20);
    const target = `${dir}/target`;
    await cfs(target, ["init", "--insecure"]);
    // Two processes share the objects (the cut one may land in the helper).
    const r = await cfs(target, [
      "fetch",
      proxy.url,
      "refs/oci/demo",
      "--json",
      "--progress",
      "none",
      "--processes",
      "2",
    ]);
    const out = JSON.parse(r.stdout);

    // The same image: content digest = manifest digest, same stream verity, same EROFS image id,
    // and compute-id over the fetched layers rebuilds exactly that id.
    assertEquals(out.content, fx.manifestDigest);
    const srcVerity = (await Deno.readLink(`${fx.source}/streams/oci-manifest-${fx.manifestDigest}`)).split(
      "/",
    );
    assertEquals(out.verity, srcVerity.slice(-2).join(""));
    const a = await inspect(fx.source, "demo");
    const b = await inspect(target, "demo");
    assert(typeof a.composefs_erofs === "string" && a.composefs_erofs.length === 128, "source has an image");
    assertEquals(b.composefs_erofs, a.composefs_erofs);
    assertEquals(b.manifest, a.manifest);
    assertEquals(
      (await cfs(target, ["oci", "compute-id", "demo"])).stdout,
      (await cfs(fx.source, ["oci", "compute-id", "demo"])).stdout,
    );
    // Every object arrived, none is damaged (fsck re-hashes them all).
    const srcObjs = await objectFiles(fx.source);
    const dstObjs = await objectFiles(target);
    assertEquals([...dstObjs.keys()].sort(), [...srcObjs.keys()].sort());
    const fsck = JSON.parse((await cfs(target, ["fsck", "--json"])).stdout);
    assert(fsck.ok === true, `fsck of the fetched repository: ${JSON.stringify(fsck.errors)}`);
    assertEquals(out.stats.objects_present, 0);
    assertEquals(out.stats.processes, 2, "a helper process took part");
    assert(out.stats.objects_fetched >= 40, `objects fetched: ${out.stats.objects_fetched}`);

    // The cut: the big object was asked for again, from the byte reached (Range), and completed.
    const bigReqs = proxy.requests.filter((q) => q.path.endsWith(fx.bigObject));
    assertEquals(bigReqs.length, 2, `requests for the cut object: ${JSON.stringify(bigReqs)}`);
    assertEquals(bigReqs[0].range, null);
    assertMatch(bigReqs[1].range ?? "", /^bytes=[1-9]\d*-$/);
    assertEquals(dstObjs.get(fx.bigObject), 3 << 20);

    // A second fetch downloads nothing: no object or stream-object requests at all.
    const before = proxy.requests.length;
    const again = JSON.parse(
      (await cfs(target, ["fetch", proxy.url, "refs/oci/demo", "--json", "--progress", "none"])).stdout,
    );
    const later = proxy.requests.slice(before);
    assertEquals(later.filter((q) => q.path.includes("/objects/")).length, 0, JSON.stringify(later));
    assertEquals(later.length, 1, "only streams/refs/oci/demo itself is read");
    assertEquals(again.stats.objects_fetched, 0);
    assertEquals(again.stats.streams_fetched, 0);
    assertEquals(again.stats.objects_present, out.stats.objects);
    assertEquals(again.verity, out.verity);
  } finally {
    await proxy.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fetch: from busybox httpd, a cut download continues with 206 Partial Content", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-fetch-" });
  const fx = await makeSource(dir);
  const server = await startBusyboxServer(fx.source);
  const proxy = startCuttingProxy(server.port);
  try {
    // Cut twice: the resume is retried too.
    proxy.cut((p) => p.endsWith(fx.bigObject), 700_000, 2);
    const target = `${dir}/target`;
    await cfs(target, ["init", "--insecure"]);
    const out = JSON.parse(
      (await cfs(target, ["fetch", proxy.url, "refs/oci/demo", "--json", "--progress", "none"])).stdout,
    );
    assertEquals(out.content, fx.manifestDigest);
    // 40+ objects: fetch threads did the downloads (docs/fetch.md#threads), the cut one included.
    assert(out.stats.threads >= 1, `fetch threads: ${out.stats.threads}`);
    assertEquals(out.stats.objects_fetched, out.stats.objects);
    const reqs = proxy.requests.filter((q) => q.path.endsWith(fx.bigObject));
    assertEquals(reqs.map((q) => q.status), [200, 206, 206], JSON.stringify(reqs));
    const offsets = reqs.map((q) => Number(/^bytes=(\d+)-$/.exec(q.range ?? "bytes=0-")![1]));
    assertEquals(offsets[0], 0);
    assert(offsets[1] > 0 && offsets[2] > offsets[1], `resumed at increasing offsets: ${offsets}`);
    // The object is complete and every digest checks.
    assertEquals((await Deno.stat(`${target}/objects/${fx.bigObject}`)).size, 3 << 20);
    const fsck = JSON.parse((await cfs(target, ["fsck", "--json"])).stdout);
    assert(fsck.ok === true, JSON.stringify(fsck.errors));
    // The same fetch on the main thread alone (--threads 0) stores the same objects and stream.
    const single = `${dir}/single`;
    await cfs(single, ["init", "--insecure"]);
    const one = await fetchJson(single, server.url, ["--threads", "0"]);
    assertEquals(one.stats.threads, 0);
    assertEquals(one.verity, out.verity);
    assertEquals([...(await objectFiles(single))].sort(), [...(await objectFiles(target))].sort());
  } finally {
    await proxy.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fetch: a flipped object on the server is refused and nothing is linked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-fetch-" });
  const fx = await makeSource(dir);
  try {
    for (const [which, obj] of [["large (streamed)", fx.bigObject], ["small (in memory)", fx.smallObject]]) {
      const served = `${dir}/served`;
      await Deno.remove(served, { recursive: true }).catch(() => {});
      const cp = await new Deno.Command("cp", { args: ["-a", fx.source, served] }).output();
      assert(cp.success, "copy of the source repository");
      const path = `${served}/objects/${obj}`;
      const data = await Deno.readFile(path);
      data[data.length >> 1] ^= 0x01;
      await Deno.chmod(path, 0o644);
      await Deno.writeFile(path, data);
      const server = await startStaticServer(served);
      try {
        const target = `${dir}/target-${obj.slice(0, 2)}`;
        await cfs(target, ["init", "--insecure"]);
        // The large case shares the objects with a helper process: its refusal must fail the fetch too.
        // The small case runs on two fetch threads: a thread's refusal must fail the fetch as well.
        const procs = obj === fx.bigObject ? ["--processes", "3"] : ["--threads", "2"];
        const r = await cfs(
          target,
          ["fetch", server.url, "refs/oci/demo", "--progress", "none", ...procs],
          1,
        );
        assertMatch(r.stderr, /fs-verity digest [0-9a-f]+, expected [0-9a-f]+/, which);
        assert(r.stderr.includes(obj.replace("/", "")), `${which}: the error names the object: ${r.stderr}`);
        // Nothing visible: no tag, no stream links, and no object with the flipped content.
        const streams = await Array.fromAsync(Deno.readDir(`${target}/streams`)).catch(() => []);
        assertEquals(streams.length, 0, `${which}: streams/ stays empty`);
        const objs = await objectFiles(target);
        assert(!objs.has(obj), `${which}: the object is not stored`);
        for (const [p, size] of objs) {
          if (size !== data.length) continue;
          const got = await Deno.readFile(`${target}/objects/${p}`);
          assert(!got.every((b, i) => b === data[i]), `${which}: the flipped content is not kept (${p})`);
        }
      } finally {
        await server.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fetch: https with the registry client's TLS options (--cert-dir, --tls-verify=false)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-fetch-" });
  try {
    const fx = await makeSource(dir);
    const pki = await makePki(`${dir}/pki`);
    const certs = `${dir}/certs`;
    await Deno.mkdir(certs);
    await Deno.copyFile(pki.caCert, `${certs}/ca.crt`);
    const server = await startStaticServer(fx.source, { tls: { cert: pki.leafCert, key: pki.leafKey } });
    try {
      assertMatch(server.url, /^https:/);
      const target = `${dir}/target`;
      await cfs(target, ["init", "--insecure"]);
      // Unknown CA: refused before anything is stored.
      const refused = await cfs(target, [
        "fetch",
        server.url,
        "refs/oci/demo",
        "--retries",
        "0",
        "--progress",
        "none",
      ], 1);
      assertMatch(refused.stderr, /certificate|UnknownIssuer|tls/i);
      assertEquals(await Array.fromAsync(Deno.readDir(`${target}/streams`)).catch(() => []), []);
      // The CA from --cert-dir.
      const ok = JSON.parse(
        (await cfs(target, [
          "fetch",
          server.url,
          "refs/oci/demo",
          "--cert-dir",
          certs,
          "--json",
          "--progress",
          "none",
        ]))
          .stdout,
      );
      assertEquals(ok.content, fx.manifestDigest);
      // --tls-verify=false: any certificate (into a fresh repository, so objects really move).
      const t2 = `${dir}/target2`;
      await cfs(t2, ["init", "--insecure"]);
      const insecure = JSON.parse(
        (await cfs(t2, [
          "fetch",
          server.url,
          "refs/oci/demo",
          "--tls-verify=false",
          "--json",
          "--progress",
          "none",
        ]))
          .stdout,
      );
      assertEquals(insecure.content, fx.manifestDigest);
      assert(insecure.stats.objects_fetched > 0);
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fetch: a name the server does not have is a clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-fetch-" });
  const source = `${dir}/source`;
  await cfs(source, ["init", "--insecure"]);
  const server = await startStaticServer(source);
  try {
    const target = `${dir}/target`;
    await cfs(target, ["init", "--insecure"]);
    const r = await cfs(target, ["fetch", server.url, "refs/oci/nosuch", "--progress", "none"], 1);
    assertMatch(
      r.stderr,
      /stream refs\/oci\/nosuch not found at http:\/\/127\.0\.0\.1:\d+\/streams\/refs\/oci\/nosuch/,
    );
    const bad = await cfs(target, ["fetch", "ftp://x/", "a", "--progress", "none"], 2);
    assertMatch(bad.stderr, /http:\/\/ or https:\/\//);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fetch: hostile named refs cannot make links outside streams/, and promised digests are checked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-fetch-" });
  try {
    const source = `${dir}/source`;
    await Repository.init(source, { insecure: true });
    {
      using repo = await Repository.open(source);
      const enc = new TextEncoder();
      const cfg = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_CONFIG);
      cfg.writeInline(enc.encode('{"hostile":true}'));
      const cfgId = await repo.writeStream("plain-config", cfg);
      const layer = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_LAYER);
      layer.writeInline(enc.encode("not the content its name promises"));
      const layerId = await repo.writeStream("plain-layer", layer);
      const evil = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_MANIFEST);
      evil.writeInline(enc.encode("{}"));
      evil.addNamedRef("config:../../../escaped", cfgId);
      await repo.writeStream("evil", evil, "evil");
      const lying = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_MANIFEST);
      lying.writeInline(enc.encode("{}"));
      lying.addNamedRef(`sha256:${"0".repeat(64)}`, layerId);
      await repo.writeStream("lying", lying);
    }
    const server = await startStaticServer(source);
    try {
      const target = `${dir}/target`;
      await cfs(target, ["init", "--insecure"]);
      const out = JSON.parse(
        (await cfs(target, ["fetch", server.url, "refs/evil", "--json", "--progress", "none"])).stdout,
      );
      // Only the asked-for name (and, for a manifest, its content id) is linked.
      const manifestId = `streams/oci-manifest-${sha256(new TextEncoder().encode("{}"))}`;
      assertEquals(out.linked, [manifestId, "streams/refs/evil"]);
      for (const p of [`${dir}/escaped`, `${target}/escaped`, `${target}/streams/oci-config-..`]) {
        assert(!(await Deno.lstat(p).then(() => true, () => false)), `${p} must not exist`);
      }
      // A layer stream whose content does not have the digest its referrer promises is refused.
      const r = await cfs(target, ["fetch", server.url, "lying", "--progress", "none"], 1);
      assertMatch(r.stderr, /has content digest sha256:[0-9a-f]{64}, expected sha256:0{64}/);
      assert(!(await Deno.lstat(`${target}/streams/lying`).then(() => true, () => false)), "not linked");
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fetch: failing right after the hashing threads were started exits cleanly (no crash at exit)", async () => {
  // fetch warms the hashing threads first; Deno.exit while one was still setting up crashed the
  // runtime in about 1 run of 12 (exit 139) until the CLI waited for them (lib/util/shutdown.ts).
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-fetch-exit-" });
  try {
    await cfs(dir, ["init", "--insecure"]);
    const codes: number[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await runCli(["--repo", dir, "fetch", "ftp://x/", "a", "--progress", "none"], {
        env: { CFSCTL_HASH_THREADS: "2" },
      });
      codes.push(r.code);
    }
    assertEquals(codes.filter((c) => c !== 2), [], "every run is a usage error (2), none a crash");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
