// What users see when things go wrong: the exact `error: WHAT: WHY` line with its context chain, the
// exit code (1 failure, 2 usage), a `--help` hint after usage errors, no stack trace unless asked for.
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { addImage, tarDirectory } from "./helpers/oci_builder.ts";

async function insecureRepo(dir: string): Promise<string> {
  const repo = `${dir}/repo`;
  const r = await runCli(["--repo", repo, "init", "--insecure"]);
  assertEquals(r.code, 0, r.stderr);
  return repo;
}

/** A one-layer gzip image whose layer tar is reproducible (fixed owner and mtime, sorted names). */
async function gzipLayerImage(dir: string, mutateBlob?: (b: Uint8Array) => Uint8Array) {
  await Deno.mkdir(`${dir}/src/etc`, { recursive: true });
  await Deno.writeTextFile(`${dir}/src/etc/hello`, "hello ".repeat(2000));
  const tar = await tarDirectory(`${dir}/src`, { rootOwner: true });
  return await addImage(`${dir}/layout`, { tag: "t", layers: [{ tar, compression: "gzip", mutateBlob }] });
}

Deno.test("errors: a missing image names it (exit 1, no stack trace)", async () => {
  await using d = await tempDir();
  const repo = await insecureRepo(d.path);
  const r = await runCli(["--repo", repo, "oci", "inspect", "nosuch"]);
  assertEquals([r.code, r.stdout, r.stderr], [1, "", 'error: no image named "nosuch"\n']);
});

Deno.test("errors: --debug and CFSCTL_LOG=debug add the stack trace", async () => {
  await using d = await tempDir();
  const repo = await insecureRepo(d.path);
  for (
    const [args, env] of [
      [["--debug", "--repo", repo, "oci", "inspect", "nosuch"], {}],
      [["--repo", repo, "oci", "inspect", "nosuch"], { CFSCTL_LOG: "debug" }],
    ] as [string[], Record<string, string>][]
  ) {
    const r = await runCli(args, { env });
    assertEquals(r.code, 1);
    const lines = r.stderr.trimEnd().split("\n");
    assertEquals(lines[0], 'error: no image named "nosuch"');
    assertMatch(lines[1], /^NotFoundError: no image named "nosuch"$/);
    assert(lines.slice(2).some((l) => /^ {4}at .*\.(ts|js):\d+:\d+\)?$/.test(l)), r.stderr);
  }
});

Deno.test("errors: a gzip layer with a flipped CRC byte: image, layer digest and decoder's reason", async () => {
  await using d = await tempDir();
  const repo = await insecureRepo(d.path);
  // Flip the last byte of the gzip trailer's CRC-32: the deflate data decodes, the check fails.
  const img = await gzipLayerImage(d.path, (b) => b.map((x, i) => (i === b.length - 5 ? x ^ 1 : x)));
  const ref = `oci:${d.path}/layout:t`;
  const r = await runCli(["--repo", repo, "oci", "pull", "--progress", "none", ref]);
  assertEquals([r.code, r.stdout], [1, ""]);
  assertEquals(
    r.stderr,
    `error: pulling ${ref}: layer ${img.layerDigests[0]}: corrupt gzip layer data: incorrect data check\n`,
  );
  // With the default (plain, not a terminal) progress output the error is still the last line, alone.
  const again = await runCli(["--repo", repo, "oci", "pull", ref]);
  assertEquals(again.code, 1);
  assertEquals(again.stderr.trimEnd().split("\n").filter((l) => l.startsWith("error:")), [
    `error: pulling ${ref}: layer ${img.layerDigests[0]}: corrupt gzip layer data: incorrect data check`,
  ]);
  assert(!/^\s+at /m.test(again.stderr), again.stderr);
});

Deno.test("errors: a layer blob whose bytes no longer match its digest", async () => {
  await using d = await tempDir();
  const repo = await insecureRepo(d.path);
  const img = await gzipLayerImage(d.path);
  const layer = img.layerDigests[0];
  const path = `${d.path}/layout/blobs/sha256/${layer.slice(7)}`;
  const blob = await Deno.readFile(path);
  // The gzip header's MTIME: decoders ignore it, so the digest check is the only thing that can fail.
  blob[4] ^= 1;
  await Deno.writeFile(path, blob);
  const got = "sha256:" + Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", blob)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const ref = `oci:${d.path}/layout:t`;
  const r = await runCli(["--repo", repo, "oci", "pull", "--progress", "none", ref]);
  assertEquals([r.code, r.stdout], [1, ""]);
  assertEquals(
    r.stderr,
    `error: pulling ${ref}: layer ${layer}: digest mismatch: expected ${layer}, got ${got}\n`,
  );
});

Deno.test("errors: an unreachable registry names the registry and the URL", async () => {
  await using d = await tempDir();
  const repo = await insecureRepo(d.path);
  // Port 1: Deno's fetch refuses it outright (a "bad port"); it is retried like any connection failure.
  const r = await runCli(["--repo", repo, "oci", "pull", "docker://127.0.0.1:1/x:y"]);
  assertEquals([r.code, r.stdout], [1, ""]);
  assertEquals(
    r.stderr,
    "error: pulling docker://127.0.0.1:1/x:y: cannot reach registry 127.0.0.1:1 (https://127.0.0.1:1/v2/): " +
      "Fetch failed: Requests to port 1 are blocked (gave up after 5 tries)\n",
  );

  // A port nobody listens on: the kernel refuses the connection.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const ref = `docker://127.0.0.1:${port}/x:y`;
  const c = await runCli(["--repo", repo, "oci", "pull", "--retries", "0", ref]);
  assertEquals([c.code, c.stdout], [1, ""]);
  const url = `https://127.0.0.1:${port}/v2/`;
  assertEquals(
    c.stderr,
    `error: pulling ${ref}: cannot reach registry 127.0.0.1:${port} (${url}): fetch failed: ` +
      `error sending request for url (${url}): client error (Connect): tcp connect error: ` +
      "Connection refused (os error 111) (gave up after 1 tries)\n",
  );
});

Deno.test("errors: usage errors exit 2 with one error line and a --help hint", async () => {
  await using d = await tempDir();
  const repo = `${d.path}/repo`;
  const cases: [string[], string, { invokedAs?: string }?][] = [
    [
      ["oci", "tag"],
      "error: missing required argument 'MANIFEST_DIGEST'\nTry 'cfsctl oci tag --help' for more information.\n",
    ],
    [
      ["--repo", repo, "oci", "tag", "a", "b", "c"],
      "error: too many arguments for 'tag'. Expected 2 arguments but got 3.\n" +
      "Try 'cfsctl oci tag --help' for more information.\n",
    ],
    [
      ["frobnicate"],
      "error: unknown command 'frobnicate'\nTry 'cfsctl --help' for more information.\n",
    ],
    [
      ["oci", "pul"],
      "error: unknown command 'pul'\n(Did you mean pull?)\nTry 'cfsctl oci --help' for more information.\n",
    ],
    [
      ["--repo", repo, "gc", "--bogus"],
      "error: unknown option '--bogus'\nTry 'cfsctl gc --help' for more information.\n",
    ],
    [
      ["--hash", "md5", "oci", "images"],
      "error: option '--hash <ALG>' argument 'md5' is invalid. Allowed choices are sha256, sha512.\n" +
      "Try 'cfsctl oci images --help' for more information.\n",
    ],
    [
      ["--erofs-version", "7", "oci", "images"],
      'error: invalid EROFS format version "7" (expected 0, 1 or 2)\n' +
      "Try 'cfsctl oci images --help' for more information.\n",
    ],
    [
      ["--repo", repo, "--user", "gc"],
      "error: option '--repo <PATH>' cannot be used with option '--user'\n" +
      "Try 'cfsctl gc --help' for more information.\n",
    ],
    [
      ["--repo", repo, "oci", "inspect", "--manifest", "--config", "x"],
      "error: option '--manifest' cannot be used with option '--config'\n" +
      "Try 'cfsctl oci inspect --help' for more information.\n",
    ],
    [
      ["--repo", repo, "oci", "layer", "sha256:abc"],
      'error: invalid diff_id: "sha256:abc" (expected e.g. sha256:<64 hex digits>)\n' +
      "Try 'cfsctl oci layer --help' for more information.\n",
    ],
    [
      ["--repo", repo, "mount", "img", "/mnt", "--read-write"],
      "error: --read-write requires --upperdir\nTry 'cfsctl mount --help' for more information.\n",
    ],
    [
      ["--repo", repo, "oci", "pull", "--progress", "loud", "oci:/x"],
      "error: option '--progress <MODE>' argument 'loud' is invalid. Allowed choices are auto, plain, json, none.\n" +
      "Try 'cfsctl oci pull --help' for more information.\n",
    ],
    [
      ["mkcomposefs", "--min-version", "x", "src", "img"],
      "error: invalid min version \"x\"\nTry 'mkcomposefs --help' for more information.\n",
    ],
    [
      ["ls"],
      "error: missing required argument 'IMAGE'\nTry 'composefs-info ls --help' for more information.\n",
      { invokedAs: "composefs-info" },
    ],
    [
      ["img"],
      "error: expected IMAGE and MOUNTPOINT, got 1 argument(s)\n" +
      "Try 'mount.composefs --help' for more information.\n",
      { invokedAs: "mount.composefs" },
    ],
  ];
  for (const [args, want, opts] of cases) {
    const r = await runCli(args, opts);
    assertEquals([r.code, r.stdout, r.stderr], [2, "", want], args.join(" "));
  }
});

Deno.test("errors: a command group without its subcommand shows the group's help on stderr (exit 2)", async () => {
  for (const args of [[], ["oci"]]) {
    const r = await runCli(args);
    assertEquals([r.code, r.stdout], [2, ""]);
    assertMatch(
      r.stderr,
      new RegExp(`^Usage: cfsctl${args.length ? " oci" : ""} \\[options\\] \\[command\\]`),
    );
  }
});
