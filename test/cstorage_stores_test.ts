// containers-storage: the store's lock files, additional image stores and rootless stores (issue 16).
// Locks: our read locks must keep another process's write lock out (python's fcntl.lockf, the call
// containers/storage's F_SETLKW corresponds to) and make a real `podman rmi` wait (host podman 4.3; podman
// 5.4 in the peer chroot when it is there); a writer's lock makes the CLI wait and say so. Additional image
// stores: an image only a second store (storage.conf additionalimagestores) has is imported from it with the
// same ids as the oci: pull. Rootless: a real rootless podman store of a user made here; outside the user
// namespace the pull says to use `podman unshare`, inside it the pull works. Which store is used for whom
// (root, rootless, podman unshare, storage.conf keys, $STORAGE_OPTS) is checked without root.
import { assert, assertEquals, assertMatch, isRoot } from "./helpers/assert.ts";
import { DENO, initInsecureRepo, MAIN, ociPullJson, tempDir } from "./helpers/cli.ts";
import { addImage, tarDirectory } from "./helpers/oci_builder.ts";
import { runTool } from "./helpers/process.ts";
import { locateStorage } from "../lib/oci/transport/containers_storage/store_config.ts";
import { StoreReadLocks } from "../lib/oci/transport/containers_storage/store_lock.ts";
import { openContainersStorage } from "../lib/oci/transport/containers_storage/source.ts";

async function sh(cmd: string, args: string[]): Promise<string> {
  return new TextDecoder().decode(await runTool(cmd, args));
}

async function hasTool(name: string, arg = "--version"): Promise<boolean> {
  try {
    await new Deno.Command(name, { args: [arg], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

// ---- another process's fcntl locks (python's fcntl.lockf = fcntl F_SETLK/F_SETLKW, as containers/storage) ---

const PY_LOCK = `
import fcntl, sys
path, kind, wait = sys.argv[1], sys.argv[2], sys.argv[3] == "wait"
f = open(path, "r+" if kind == "ex" else "r")
op = fcntl.LOCK_EX if kind == "ex" else fcntl.LOCK_SH
try:
    fcntl.lockf(f, op if wait else op | fcntl.LOCK_NB)
except OSError:
    print("busy", flush=True)
    sys.exit(0)
print("locked", flush=True)
sys.stdin.read()
`;

interface PyLock {
  state: "locked" | "busy";
  pid: number;
  release(): Promise<void>;
}

/** Another process tries (nb) or waits for (wait) a lock on `path`; it holds it until release(). */
async function pyLock(path: string, kind: "ex" | "sh", mode: "nb" | "wait"): Promise<PyLock> {
  const child = new Deno.Command("python3", {
    args: ["-c", PY_LOCK, path, kind, mode],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    line += value;
  }
  reader.releaseLock();
  const state = line.trim() as "locked" | "busy";
  return {
    state,
    pid: child.pid,
    async release() {
      await child.stdin.close().catch(() => {});
      await child.stdout.cancel().catch(() => {});
      await child.status;
    },
  };
}

async function canWriteLock(path: string): Promise<boolean> {
  const l = await pyLock(path, "ex", "nb");
  await l.release();
  return l.state === "locked";
}

/** /proc/locks lines about the file at `path` (by inode). */
async function procLocks(path: string): Promise<string[]> {
  const ino = (await Deno.stat(path)).ino;
  return (await Deno.readTextFile("/proc/locks")).split("\n").filter((l) => new RegExp(`:${ino} `).test(l));
}

const hasPython = await hasTool("python3");

Deno.test({
  name: "containers-storage locks: read locks keep writers out until released, and wait for a writer",
  ignore: !hasPython,
  fn: async () => {
    await using tmp = await tempDir("cfsctl-cslock-");
    const s1 = `${tmp.path}/s1`;
    const s2 = `${tmp.path}/s2`;
    for (const d of [`${s1}/overlay-layers`, `${s1}/overlay-images`, `${s2}/overlay-layers`]) {
      await Deno.mkdir(d, { recursive: true });
    }
    for (const f of [`${s1}/overlay-layers/layers.lock`, `${s1}/overlay-images/images.lock`]) {
      await Deno.writeFile(f, new Uint8Array(64));
    }
    await Deno.writeFile(`${s2}/overlay-layers/layers.lock`, new Uint8Array(64));

    const locks = await StoreReadLocks.acquire([s1, s2], "overlay");
    // containers/storage's order: every layer store, then every image store.
    assertEquals(locks.held, [
      `${s1}/overlay-layers/layers.lock`,
      `${s2}/overlay-layers/layers.lock`,
      `${s1}/overlay-images/images.lock`,
    ]);
    assertEquals(locks.missing, [`${s2}/overlay-images/images.lock`]);
    for (const p of locks.held) assert(!(await canWriteLock(p)), `a writer is kept out of ${p}`);
    const reader = await pyLock(`${s1}/overlay-layers/layers.lock`, "sh", "nb");
    assertEquals(reader.state, "locked", "another reader gets in");
    await reader.release();
    const seen = await procLocks(`${s1}/overlay-layers/layers.lock`);
    assert(seen.some((l) => /OFDLCK\s+ADVISORY\s+READ/.test(l)), seen.join("\n"));
    locks.release();
    locks.release(); // twice is harmless
    for (const p of [`${s1}/overlay-layers/layers.lock`, `${s1}/overlay-images/images.lock`]) {
      assert(await canWriteLock(p), `free after release: ${p}`);
    }

    // A writer holds images.lock: acquire() says so, waits, and gets it once the writer lets go.
    const writer = await pyLock(`${s1}/overlay-images/images.lock`, "ex", "wait");
    assertEquals(writer.state, "locked");
    const waits: [string, number | undefined][] = [];
    const pending = StoreReadLocks.acquire([s1], "overlay", {
      onWait: (p, h) => waits.push([p, h?.pid]),
    });
    const early = await Promise.race([pending.then(() => "acquired"), delay(400).then(() => "waiting")]);
    assertEquals(early, "waiting");
    assertEquals(waits, [[`${s1}/overlay-images/images.lock`, writer.pid]]);
    await writer.release();
    const got = await pending;
    assertEquals(got.held.length, 2);
    got.release();
  },
});

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- which store, for whom ---------------------------------------------------------------------------

const ENV_KEYS = [
  "CONTAINERS_STORAGE_CONF",
  "_CONTAINERS_ROOTLESS_UID",
  "_CONTAINERS_USERNS_CONFIGURED",
  "CONTAINERS_GRAPHROOT",
  "HOME",
  "XDG_DATA_HOME",
  "XDG_CONFIG_HOME",
  "STORAGE_OPTS",
  "STORAGE_DRIVER",
];

async function withEnv<T>(env: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, Deno.env.get(k)]));
  try {
    for (const k of ENV_KEYS) {
      const v = k in env ? env[k] : undefined;
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
}

Deno.test("containers-storage location: root, rootless, podman unshare, storage.conf and $STORAGE_OPTS", async () => {
  await using tmp = await tempDir("cfsctl-csconf-");
  const conf = `${tmp.path}/storage.conf`;
  await Deno.writeTextFile(
    conf,
    `# as podman writes it
[storage]
driver = "overlay"
graphroot = "/srv/$UID/graph"
runroot = "/run/containers/storage"

[storage.options]
additionalimagestores = [
  "/ro/one",
  "/ro/two",
]
[storage.options.overlay]
mountopt = "nodev"
`,
  );
  const empty = `${tmp.path}/empty.conf`;
  await Deno.writeTextFile(empty, "[storage]\n");
  const rootless = `${tmp.path}/rootless.conf`;
  await Deno.writeTextFile(rootless, '[storage]\nrootless_storage_path = "$HOME/rl-$UID"\n');
  const asRoot = { _CONTAINERS_ROOTLESS_UID: "0", HOME: "/root" };
  const user = { _CONTAINERS_ROOTLESS_UID: "1234", HOME: "/home/u" };

  await withEnv({ ...asRoot, CONTAINERS_STORAGE_CONF: conf }, async () => {
    const l = await locateStorage();
    assertEquals([l.root, l.driver, l.perUser], ["/srv/0/graph", "overlay", false]);
    assertEquals(l.additionalImageStores, ["/ro/one", "/ro/two"]);
    assertMatch(l.from, /storage\.conf graphroot/);
    // An explicit root wins; the additional stores stay (they are options of the driver, not of the root).
    const e = await locateStorage("/elsewhere");
    assertEquals([e.root, e.from, e.additionalImageStores.length], ["/elsewhere", "--storage-root", 2]);
  });
  await withEnv({
    ...asRoot,
    CONTAINERS_STORAGE_CONF: conf,
    STORAGE_OPTS: "overlay.imagestore=/x,overlay.size=1G,additionalimagestore=/y",
    STORAGE_DRIVER: "overlay2",
  }, async () => {
    const l = await locateStorage();
    assertEquals(l.additionalImageStores, ["/x", "/y"], "$STORAGE_OPTS replaces the file's options");
    assertEquals(l.driver, "overlay", "overlay2 is overlay");
  });
  await withEnv({ ...asRoot, CONTAINERS_STORAGE_CONF: empty }, async () => {
    const l = await locateStorage(undefined, "vfs");
    assertEquals([l.root, l.from, l.driver], ["/var/lib/containers/storage", "default", "vfs"]);
  });
  // Rootless: the user's data home, or rootless_storage_path; a conf's graphroot wins even then.
  await withEnv({ ...user, CONTAINERS_STORAGE_CONF: empty }, async () => {
    const l = await locateStorage();
    assertEquals([l.root, l.perUser, l.from], [
      "/home/u/.local/share/containers/storage",
      true,
      "default (rootless)",
    ]);
  });
  await withEnv({ ...user, CONTAINERS_STORAGE_CONF: empty, XDG_DATA_HOME: "/xdg" }, async () => {
    assertEquals((await locateStorage()).root, "/xdg/containers/storage");
  });
  await withEnv({ ...user, CONTAINERS_STORAGE_CONF: rootless }, async () => {
    assertEquals((await locateStorage()).root, "/home/u/rl-1234");
  });
  await withEnv({ ...user, CONTAINERS_STORAGE_CONF: conf }, async () => {
    assertEquals((await locateStorage()).root, "/srv/1234/graph");
  });
  // Without $CONTAINERS_STORAGE_CONF a rootless caller reads ~/.config/containers/storage.conf.
  const cfg = `${tmp.path}/cfg`;
  await Deno.mkdir(`${cfg}/containers`, { recursive: true });
  await Deno.writeTextFile(
    `${cfg}/containers/storage.conf`,
    '[storage]\ndriver = "vfs"\nrootless_storage_path = "/r/$UID"\n',
  );
  await withEnv({ ...user, XDG_CONFIG_HOME: cfg }, async () => {
    const l = await locateStorage();
    assertEquals([l.root, l.driver], ["/r/1234", "vfs"]);
    assertEquals(l.from, `${cfg}/containers/storage.conf rootless_storage_path`);
  });
  // Inside `podman unshare` we are uid 0, but the store is the user's, which podman names.
  await withEnv({
    ...user,
    CONTAINERS_STORAGE_CONF: empty,
    _CONTAINERS_USERNS_CONFIGURED: "done",
    CONTAINERS_GRAPHROOT: "/home/u/store",
  }, async () => {
    const l = await locateStorage();
    assertEquals([l.root, l.perUser], ["/home/u/store", true]);
    assertMatch(l.from, /podman unshare/);
    assertEquals((await locateStorage("/given")).root, "/given");
  });
});

// ---- with podman -------------------------------------------------------------------------------------

const canPodman = isRoot && hasPython && await hasTool("podman");
const PEER = "/var/tmp/perf-trixie";
const PEER_TOOL = "/work/shared/tools/peer-chroot.sh";
const hasPeer = canPodman && await Deno.stat(`${PEER}/usr/bin/podman`).then(() => true, () => false) &&
  await Deno.stat(PEER_TOOL).then(() => true, () => false);

/** A layout with one two-file image; `owner` chowns its files (a rootless store maps them to sub-uids). */
async function makeLayout(dir: string, label: string, owner?: number) {
  const l1 = `${dir}/${label}-root`;
  await Deno.mkdir(`${l1}/etc`, { recursive: true });
  await Deno.mkdir(`${l1}/home/u`, { recursive: true });
  await Deno.writeTextFile(`${l1}/etc/${label}`, `${label} `.repeat(40));
  await Deno.writeFile(
    `${l1}/home/u/data`,
    new Uint8Array(20000).map((_, i) => (i * 31 + label.length) & 0xff),
  );
  await Deno.writeTextFile(`${l1}/etc/shadow`, "root:*:19000:0:99999:7:::\n".repeat(4));
  await Deno.chmod(`${l1}/etc/shadow`, 0o600);
  if (owner !== undefined) {
    await sh("chown", ["-R", `${owner}:${owner}`, `${l1}/home/u`]);
    await Deno.chmod(`${l1}/home/u`, 0o700);
  }
  const layout = `${dir}/${label}-layout`;
  const built = await addImage(layout, {
    tag: "v1",
    layers: [{ tar: await tarDirectory(l1), compression: "gzip" }],
  });
  return { layout, built, imageId: built.configDigest.slice(7) };
}

/** Runs `podman rmi` (argv) while we hold the store's read locks: it must wait, then finish after release. */
async function rmiWaitsForUs(store: string, argv: string[], imageId: string): Promise<number> {
  const locks = await StoreReadLocks.acquire([store], "overlay");
  const t0 = performance.now();
  const child = new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped", stderr: "piped" }).spawn();
  const out = child.output();
  const early = await Promise.race([out.then(() => "finished"), delay(2500).then(() => "waiting")]);
  const queued = [
    ...await procLocks(`${store}/overlay-layers/layers.lock`),
    ...await procLocks(`${store}/overlay-images/images.lock`),
  ];
  locks.release();
  const o = await out;
  const ms = performance.now() - t0;
  assertEquals(early, "waiting", `rmi must wait for our read locks: ${new TextDecoder().decode(o.stderr)}`);
  // The blocked request shows in /proc/locks as "-> POSIX ADVISORY WRITE" on one of the lock files.
  assert(queued.some((l) => /->\s*POSIX\s+ADVISORY\s+WRITE/.test(l)), queued.join("\n"));
  assert(o.success, new TextDecoder().decode(o.stderr));
  const images = JSON.parse(await Deno.readTextFile(`${store}/overlay-images/images.json`));
  assert(!images.some((i: { id: string }) => i.id === imageId), "the image is gone after the wait");
  return ms;
}

Deno.test({
  name: "containers-storage locks: podman rmi waits for the import's read locks; the CLI waits for a writer",
  ignore: !canPodman,
  sanitizeResources: false,
  fn: async (t) => {
    await using tmp = await tempDir("cfsctl-cslockpod-");
    const { layout, built, imageId } = await makeLayout(tmp.path, "lock");
    const store = `${tmp.path}/store`;
    const podman = ["--root", store, "--runroot", `${tmp.path}/run`, "--storage-driver", "overlay"];
    try {
      await sh("podman", [...podman, "pull", "-q", `oci:${layout}:v1`]);
      const ociRepo = await initInsecureRepo(`${tmp.path}/repo-oci`);
      const ref = await ociPullJson(ociRepo, `oci:${layout}:v1`);
      assertEquals(ref.code, 0, ref.stderr);

      await t.step("an open source holds both locks until close()", async () => {
        const src = await openContainersStorage(`containers-storage:${imageId}`, {
          mode: "auto",
          storageRoot: store,
        });
        assert(src, "native source");
        assertEquals(src.locks?.held, [
          `${store}/overlay-layers/layers.lock`,
          `${store}/overlay-images/images.lock`,
        ]);
        for (const p of src.locks!.held) assert(!(await canWriteLock(p)), `writer kept out of ${p}`);
        await src.close();
        assert(await canWriteLock(`${store}/overlay-layers/layers.lock`), "free after close");
        assert(await canWriteLock(`${store}/overlay-images/images.lock`), "free after close");
      });

      await t.step("the CLI waits while a writer holds images.lock, says so, then imports", async () => {
        const writer = await pyLock(`${store}/overlay-images/images.lock`, "ex", "wait");
        const repo = await initInsecureRepo(`${tmp.path}/repo-wait`);
        const pull = ociPullJson(repo, `containers-storage:${imageId}`, ["--storage-root", store]);
        const early = await Promise.race([pull.then(() => "finished"), delay(2000).then(() => "waiting")]);
        await writer.release();
        const r = await pull;
        assertEquals(early, "waiting");
        assertEquals(r.code, 0, r.stderr);
        assertMatch(
          r.stderr,
          new RegExp(
            `waiting for containers-storage lock .*images\\.lock, held for writing by pid ${writer.pid}`,
          ),
        );
        assertEquals(r.json.images, ref.json.images);
        assertEquals(r.json.config, built.configDigest);
        assert(r.json.stats.local_fetch, "read natively");
      });

      await t.step("podman rmi (host podman) waits until our read locks are released", async () => {
        const ms = await rmiWaitsForUs(store, ["podman", ...podman, "rmi", "-f", imageId], imageId);
        assert(ms >= 2500, `${ms} ms`);
      });

      await t.step({
        name: "podman 5.4 (peer chroot) rmi waits too",
        ignore: !hasPeer,
        fn: async () => {
          const peerDir = await Deno.makeTempDir({ dir: `${PEER}/tmp`, prefix: "cfsctl-cslock-" });
          await using peer = {
            path: peerDir,
            [Symbol.asyncDispose]: () => Deno.remove(peerDir, { recursive: true }).catch(() => {}),
          };
          const inside = peer.path.slice(PEER.length);
          await Deno.chmod(peer.path, 0o755);
          await sh("cp", ["-r", layout, `${peer.path}/layout`]);
          const p5 = [
            "--root",
            `${inside}/store`,
            "--runroot",
            `${inside}/run`,
            "--storage-driver",
            "overlay",
          ];
          const run = ["bash", PEER_TOOL, "run", PEER, "--", "podman", ...p5];
          await sh(run[0], [...run.slice(1), "pull", "-q", `oci:${inside}/layout:v1`]);
          await rmiWaitsForUs(`${peer.path}/store`, [...run, "rmi", "-f", imageId], imageId);
        },
      });
    } finally {
      await sh("umount", [`${store}/overlay`]).catch(() => {});
    }
  },
});

Deno.test({
  name: "containers-storage: an image only an additional image store has is imported from there",
  ignore: !canPodman,
  sanitizeResources: false,
  fn: async () => {
    await using tmp = await tempDir("cfsctl-csextra-");
    const a = await makeLayout(tmp.path, "main");
    const b = await makeLayout(tmp.path, "extra");
    const main = `${tmp.path}/main`;
    const extra = `${tmp.path}/extra`;
    const conf = `${tmp.path}/storage.conf`;
    await Deno.writeTextFile(
      conf,
      `[storage]
driver = "overlay"
graphroot = "${main}"
runroot = "${tmp.path}/run"

[storage.options]
additionalimagestores = [ "${extra}" ]
`,
    );
    const env = { CONTAINERS_STORAGE_CONF: conf };
    try {
      await sh("podman", [
        "--root",
        main,
        "--runroot",
        `${tmp.path}/run`,
        "--storage-driver",
        "overlay",
        "pull",
        "-q",
        `oci:${a.layout}:v1`,
      ]);
      await sh("podman", [
        "--root",
        extra,
        "--runroot",
        `${tmp.path}/run2`,
        "--storage-driver",
        "overlay",
        "pull",
        "-q",
        `oci:${b.layout}:v1`,
      ]);
      // podman itself, with this storage.conf, sees both images (the second read-only).
      const seen = await new Deno.Command("podman", { args: ["images", "-q", "--no-trunc"], env }).output();
      const ids = new TextDecoder().decode(seen.stdout);
      assert(ids.includes(a.imageId) && ids.includes(b.imageId), ids);

      const ociRepo = await initInsecureRepo(`${tmp.path}/repo-oci`);
      const ref = await ociPullJson(ociRepo, `oci:${b.layout}:v1`);
      assertEquals(ref.code, 0, ref.stderr);
      const repo = await initInsecureRepo(`${tmp.path}/repo-cs`);
      const r = await ociPullJson(
        repo,
        `containers-storage:${b.imageId}`,
        ["--local-fetch", "zerocopy"],
        env,
      );
      // zerocopy: the store is on the repository's filesystem here (hard links) or it refuses: either way
      // the image was found natively in the additional store.
      const r2 = r.code === 0 ? r : await ociPullJson(repo, `containers-storage:${b.imageId}`, [], env);
      assertEquals(r2.code, 0, r2.stderr);
      assertEquals(r2.json.config, b.built.configDigest);
      assertEquals(r2.json.manifest, b.built.manifestDigest);
      assertEquals(r2.json.images, ref.json.images, "same composefs image id as the oci: pull");
      assert(r2.json.stats.local_fetch, "read natively, not through skopeo");
      const mainRepo = await initInsecureRepo(`${tmp.path}/repo-main`);
      const m = await ociPullJson(mainRepo, `containers-storage:${a.imageId}`, [], env);
      assertEquals(m.code, 0, m.stderr);
      assert(m.json.stats.local_fetch);

      // A main store that does not exist (never used on this machine) does not hide the additional one.
      const conf2 = `${tmp.path}/storage2.conf`;
      await Deno.writeTextFile(
        conf2,
        `[storage]\ngraphroot = "${tmp.path}/never-made"\n[storage.options]\nadditionalimagestores = ["${extra}"]\n`,
      );
      const repo2 = await initInsecureRepo(`${tmp.path}/repo-cs2`);
      const r3 = await ociPullJson(repo2, `containers-storage:${b.imageId}`, [], {
        CONTAINERS_STORAGE_CONF: conf2,
      });
      assertEquals(r3.code, 0, r3.stderr);
      assertEquals(r3.json.images, ref.json.images);
      assert(r3.json.stats.local_fetch, "read natively");

      // The source found it in the additional store, whose lock files it holds (after the main store's).
      Deno.env.set("CONTAINERS_STORAGE_CONF", conf);
      try {
        const src = await openContainersStorage(`containers-storage:${b.imageId}`, { mode: "zerocopy" });
        assert(src);
        assertEquals(src.store.root, extra);
        assertEquals(src.locks?.held, [
          `${main}/overlay-layers/layers.lock`,
          `${extra}/overlay-layers/layers.lock`,
          `${main}/overlay-images/images.lock`,
          `${extra}/overlay-images/images.lock`,
        ]);
        await src.close();
        const none = await ociPullJson(
          repo,
          "containers-storage:no-such",
          ["--local-fetch", "zerocopy"],
          env,
        );
        assertEquals(none.code, 1);
        assertMatch(none.stderr, new RegExp(`not in containers-storage at ${main}, ${extra}`));
      } finally {
        Deno.env.delete("CONTAINERS_STORAGE_CONF");
      }
    } finally {
      for (const s of [main, extra]) await sh("umount", [`${s}/overlay`]).catch(() => {});
    }
  },
});

// ---- rootless ----------------------------------------------------------------------------------------

const canRootless = canPodman && await hasTool("newuidmap", "--help") && await hasTool("runuser", "--help") &&
  await hasTool("useradd", "--help");
const USER = "cfsctl-rootless";

async function asUser(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const o = await new Deno.Command("runuser", {
    args: ["-l", USER, "-c", script],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const dec = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: o.code, stdout: dec(o.stdout), stderr: dec(o.stderr) };
}

async function removeUser(): Promise<void> {
  const uid = await new Deno.Command("id", { args: ["-u", USER], stdout: "piped", stderr: "null" }).output();
  if (!uid.success) return;
  const n = new TextDecoder().decode(uid.stdout).trim();
  // Rootless podman leaves its pause process (the holder of the user namespace): end it by its pid file.
  for (const f of [`/run/user/${n}/libpod/tmp/pause.pid`, `/tmp/podman-run-${n}/libpod/tmp/pause.pid`]) {
    const pid = Number(await Deno.readTextFile(f).catch(() => ""));
    if (pid > 1) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
  await delay(200);
  await new Deno.Command("userdel", { args: ["-r", "-f", USER], stdout: "null", stderr: "null" }).output();
  for (const d of [`/tmp/podman-run-${n}`, `/tmp/containers-user-${n}`, `/tmp/storage-run-${n}`]) {
    await Deno.remove(d, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name:
    "containers-storage rootless: a user's store, refused outside its user namespace, imported under podman unshare",
  ignore: !canRootless,
  sanitizeResources: false,
  fn: async () => {
    await removeUser();
    await sh("useradd", ["-m", "-s", "/bin/sh", USER]);
    await using tmp = await tempDir("cfsctl-csrootless-");
    try {
      const subuid = await Deno.readTextFile("/etc/subuid").catch(() => "");
      if (!subuid.split("\n").some((l) => l.startsWith(`${USER}:`))) {
        await sh("usermod", ["--add-subuids", "400000-465535", "--add-subgids", "400000-465535", USER]);
      }
      await Deno.chmod(tmp.path, 0o755);
      // /home/u belongs to uid 1000 with mode 0700: in the store it belongs to a sub-uid.
      const { layout, built, imageId } = await makeLayout(tmp.path, "rl", 1000);
      await sh("chmod", ["-R", "a+rX", layout]);
      const ociRepo = await initInsecureRepo(`${tmp.path}/repo-oci`);
      const ref = await ociPullJson(ociRepo, `oci:${layout}:v1`);
      assertEquals(ref.code, 0, ref.stderr);

      const cfsctl = [DENO, "run", "-A", MAIN.endsWith(".js") ? "--no-config" : "--no-check", MAIN].join(" ");
      // The user's own storage.conf picks the overlay driver (podman 4.3 would choose vfs by itself).
      const setup = await asUser(
        `mkdir -p ~/.config/containers && printf '[storage]\\ndriver = "overlay"\\n' > ~/.config/containers/storage.conf && ` +
          `podman pull -q oci:${layout}:v1 && ${cfsctl} --repo ~/repo init --insecure >/dev/null && ` +
          `stat -c '%u %a' ~/.local/share/containers/storage/overlay/*/diff/home/u`,
      );
      assertEquals(setup.code, 0, setup.stderr);
      const [owner, mode] = setup.stdout.trim().split("\n").pop()!.split(" ");
      assert(Number(owner) >= 100000, `home/u belongs to a sub-uid: ${setup.stdout}`);
      assertEquals(mode, "700");

      // Outside the user namespace: the default store is found (~/.local/share/containers/storage), and the
      // sub-uid's directory cannot be read: the error says what to do.
      const t0 = performance.now();
      const outside = await asUser(
        `${cfsctl} --repo ~/repo oci pull --progress none containers-storage:${imageId} img`,
      );
      const outsideMs = performance.now() - t0;
      assertEquals(outside.code, 1, outside.stdout + outside.stderr);
      assertMatch(
        outside.stderr,
        /cannot read containers-storage at \/home\/cfsctl-rootless\/\.local\/share\/containers\/storage as uid \d+/,
      );
      assertMatch(outside.stderr, /podman unshare cfsctl/);

      const t1 = performance.now();
      const inside = await asUser(
        `podman unshare ${cfsctl} --repo ~/repo oci pull --progress none --json containers-storage:${imageId} img`,
      );
      const insideMs = performance.now() - t1;
      assertEquals(inside.code, 0, inside.stderr);
      const j = JSON.parse(inside.stdout);
      assertEquals(j.config, built.configDigest);
      assertEquals(j.images, ref.json.images, "same composefs image id as the oci: pull");
      assert(j.stats.local_fetch, "read natively");
      const fsck = await asUser(`${cfsctl} --repo ~/repo fsck`);
      assertEquals(fsck.code, 0, fsck.stdout + fsck.stderr);
      console.log(
        `rootless: refused in ${outsideMs.toFixed(0)} ms, podman unshare pull ${insideMs.toFixed(0)} ms`,
      );
    } finally {
      await removeUser();
    }
  },
});
