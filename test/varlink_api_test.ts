// `cfsctl varlink`: every method of org.composefs.Repository, org.composefs.Oci and
// org.varlink.service called by an independent client — a small Python 3 program speaking the wire
// protocol itself (raw AF_UNIX socket, NUL-terminated JSON; Debian 12 has neither python3-varlink
// nor varlinkctl) — over --address, and under socket activation (a connected socket and a listening
// one on fd 3). A pull streams progress frames before its result.
import { assert, assertEquals, assertMatch, isRoot } from "./helpers/assert.ts";
import { DENO, MAIN, PROJECT_ROOT, runCli } from "./helpers/cli.ts";
import { makeBootTree } from "./helpers/boot_fixtures.ts";
import { haveTools } from "./helpers/have_tools.ts";
import { addImage, tarDirectory } from "./helpers/oci_builder.ts";
import { pushImage, startRegistry } from "./helpers/registry_server.ts";
import { startThrottleProxy } from "./helpers/throttle_proxy.ts";

const RUN_FLAGS = MAIN.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"];

// The client: reads {"connect": …, "steps": [{method, parameters, more?, oneway?}]} on stdin and
// prints, as JSON, the list of replies of every step. A string parameter "$handle" is replaced by
// the handle of the last OpenRepository reply. A step with "hangup_after": N closes the socket after
// N replies and ends the run there; "shutdown_write" shuts down the sending side after the call.
const CLIENT = String.raw`
import json, os, socket, subprocess, sys, time

spec = json.load(sys.stdin)
mode = spec["connect"]["mode"]
child = None
if mode == "address":
    path = spec["connect"]["path"]
    for _ in range(300):
        if os.path.exists(path):
            break
        time.sleep(0.05)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
else:
    argv = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh"] + spec["connect"]["argv"]
    if mode == "activated-connected":
        sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        theirs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.bind(spec["connect"]["path"])
        theirs.listen(4)
    fd = theirs.fileno()
    def to_fd3():
        os.dup2(fd, 3)
        os.set_inheritable(3, True)  # dup2(3, 3) would keep close-on-exec
    child = subprocess.Popen(argv, close_fds=False, preexec_fn=to_fd3,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    theirs.close()
    if mode == "activated-listening":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(spec["connect"]["path"])

buf = b""
handle = None
out = []
def fix(v):
    if v == "$handle":
        return handle
    if isinstance(v, dict):
        return {k: fix(x) for k, x in v.items()}
    return v
for step in spec["steps"]:
    msg = {"method": step["method"], "parameters": fix(step.get("parameters", {}))}
    for flag in ("more", "oneway"):
        if step.get(flag):
            msg[flag] = True
    data = json.dumps(msg).encode() + b"\0"
    if step.get("send_dirs"):
        dirfds = [os.open(d, os.O_RDONLY | os.O_DIRECTORY) for d in step["send_dirs"]]
        socket.send_fds(sock, [data], dirfds)
        for d in dirfds:
            os.close(d)
    else:
        sock.sendall(data)
    if step.get("shutdown_write"):
        sock.shutdown(socket.SHUT_WR)
    replies = []
    got_fds = []
    hung_up = False
    while not step.get("oneway"):
        while b"\0" not in buf:
            chunk, fds, _flags, _addr = socket.recv_fds(sock, 65536, 8)
            got_fds += fds
            if not chunk:
                raise SystemExit("server closed the connection during " + step["method"])
            buf += chunk
        raw, _, buf = buf.partition(b"\0")
        reply = json.loads(raw)
        replies.append(reply)
        if step.get("hangup_after") and len(replies) >= step["hangup_after"]:
            hung_up = True
            break
        if not reply.get("continues"):
            break
    if hung_up:
        out.append(replies)
        break
    if got_fds:
        replies[-1]["_fds"] = len(got_fds)
        probe = step.get("probe")
        if probe:
            # The descriptor is a detached mount: look inside through it.
            mnt = got_fds[0]
            result = {}
            root = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=mnt)
            result["names"] = sorted(os.listdir(root))
            os.close(root)
            result["lists"] = {}
            for rel in probe.get("list", []):
                d = os.open(rel, os.O_RDONLY | os.O_DIRECTORY, dir_fd=mnt)
                result["lists"][rel] = sorted(os.listdir(d))
                os.close(d)
            result["read"] = {}
            for rel in probe.get("read", []):
                f = os.open(rel, os.O_RDONLY, dir_fd=mnt)
                result["read"][rel] = os.read(f, 1 << 20).decode()
                os.close(f)
            if probe.get("write"):
                try:
                    f = os.open(probe["write"], os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=mnt)
                    os.write(f, b"written through the mount\n")
                    os.close(f)
                    result["write"] = "ok"
                except OSError as e:
                    result["write"] = "errno %d" % e.errno
            replies[-1]["_probe"] = result
        for f in got_fds:
            os.close(f)
    if step["method"].endswith(".OpenRepository") and replies and "error" not in replies[0]:
        handle = replies[0]["parameters"]["handle"]
    out.append(replies)
sock.close()
if child is not None:
    if mode == "activated-listening":
        child.terminate()
    try:
        child.wait(timeout=20)
    except subprocess.TimeoutExpired:
        child.kill()
json.dump(out, sys.stdout)
`;

interface Reply {
  parameters?: Record<string, any>;
  continues?: boolean;
  error?: string;
  _fds?: number;
  _probe?: { names: string[]; lists: Record<string, string[]>; read: Record<string, string>; write?: string };
}
interface Step {
  method: string;
  parameters?: Record<string, unknown>;
  more?: boolean;
  oneway?: boolean;
  /** Directories the client opens and passes with the call (SCM_RIGHTS). */
  send_dirs?: string[];
  /** Look into the mount descriptor of the reply: list the root (and directories), read files, try a write. */
  probe?: { list?: string[]; read?: string[]; write?: string };
  /** Close the connection after this many replies (and run no further steps). */
  hangup_after?: number;
  /** Shut down the client's sending side once the call is sent (it still reads the replies). */
  shutdown_write?: boolean;
}

async function runClient(dir: string, connect: Record<string, unknown>, steps: Step[]): Promise<Reply[][]> {
  const script = `${dir}/client.py`;
  await Deno.writeTextFile(script, CLIENT);
  const child = new Deno.Command("python3", {
    args: [script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify({ connect, steps })));
  await w.close();
  const o = await child.output();
  const err = new TextDecoder().decode(o.stderr);
  if (o.code !== 0) throw new Error(`varlink client failed (${o.code}): ${err}`);
  return JSON.parse(new TextDecoder().decode(o.stdout));
}

const R = "org.composefs.Repository";
const O = "org.composefs.Oci";
const S = "org.varlink.service";

async function fixture(dir: string) {
  const src = `${dir}/l1`;
  await Deno.mkdir(`${src}/usr/bin`, { recursive: true });
  await Deno.writeTextFile(
    `${src}/usr/bin/tool`,
    "#!/bin/sh\necho a tool with some content to be an object\n",
  );
  await Deno.writeFile(`${src}/usr/data`, crypto.getRandomValues(new Uint8Array(60000)));
  const src2 = `${dir}/l2`;
  await Deno.mkdir(`${src2}/etc`, { recursive: true });
  await Deno.writeTextFile(
    `${src2}/etc/motd`,
    "hello from the second layer, long enough to be an object file\n",
  );
  return await addImage(`${dir}/layout`, {
    tag: "t",
    layers: [{ tar: await tarDirectory(src), compression: "gzip" }, { tar: await tarDirectory(src2) }],
  });
}

Deno.test("varlink: every method through an independent Python client, progress streamed during a pull", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-varlink-" });
  const sock = `${dir}/cfsctl.sock`;
  const server = new Deno.Command(DENO, {
    args: [...RUN_FLAGS, MAIN, "varlink", "--address", `unix:${sock}`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const built = await fixture(dir);
    const repo = `${dir}/repo`;
    const steps: Step[] = [
      { method: `${S}.GetInfo` }, // 0
      { method: `${S}.GetInterfaceDescription`, parameters: { interface: R } }, // 1
      { method: `${S}.GetInterfaceDescription`, parameters: { interface: O } }, // 2
      { method: `${S}.GetInterfaceDescription`, parameters: { interface: "org.example.Nope" } }, // 3
      { method: `${R}.InitRepository`, parameters: { path: repo, insecure: true } }, // 4
      { method: `${R}.InitRepository`, parameters: { path: repo, insecure: true } }, // 5
      { method: `${R}.InitRepository`, parameters: { path: `${dir}/r2`, algorithm: "md5" } }, // 6
      { method: `${R}.OpenRepository`, parameters: {} }, // 7
      { method: `${R}.OpenRepository`, parameters: { path: `${dir}/nonexistent` } }, // 8
      { method: `${R}.OpenRepository`, parameters: { path: repo } }, // 9
      {
        method: `${O}.Pull`,
        more: true,
        parameters: {
          handle: "$handle",
          image: `oci:${dir}/layout:t`,
          name: "demo",
          local_fetch: "disabled",
          bootable: false,
        },
      }, // 10
      { method: `${O}.ListImages`, parameters: { handle: "$handle" } }, // 11
      { method: `${O}.ListImages`, parameters: { handle: "$handle", filter: "zzz" } }, // 12
      { method: `${O}.Inspect`, parameters: { handle: "$handle", image: "demo" } }, // 13
      { method: `${O}.Inspect`, parameters: { handle: "$handle", image: "nosuch" } }, // 14
      { method: `${O}.ComputeId`, parameters: { handle: "$handle", image: "demo", bootable: false } }, // 15
      {
        method: `${O}.Tag`,
        parameters: { handle: "$handle", manifest_digest: built.manifestDigest, name: "second" },
      }, // 16
      { method: `${O}.ListImages`, parameters: { handle: "$handle" } }, // 17
      { method: `${O}.Untag`, parameters: { handle: "$handle", name: "second" } }, // 18
      { method: `${O}.Untag`, parameters: { handle: "$handle", name: "second" } }, // 19
      { method: `${O}.Check`, parameters: { handle: "$handle" } }, // 20
      { method: `${R}.Fsck`, parameters: { handle: "$handle" } }, // 21
      { method: `${R}.Fsck`, parameters: { handle: "$handle", metadata_only: true } }, // 22
      { method: `${R}.Gc`, parameters: { handle: "$handle", dry_run: true, roots: [] } }, // 23
      { method: `${R}.Fsck`, parameters: {} }, // 24 missing handle
      { method: `${R}.Nope`, parameters: {} }, // 25
      { method: `${S}.GetInfo`, oneway: true }, // 26 (no reply)
      {
        method: `${O}.Pull`,
        parameters: {
          handle: "$handle",
          image: `oci:${dir}/layout:t`,
          name: "again",
          local_fetch: "disabled",
          bootable: false,
        },
      }, // 27 without more: one reply
      { method: `${R}.CloseRepository`, parameters: { handle: "$handle" } }, // 28
      { method: `${R}.Fsck`, parameters: { handle: "$handle" } }, // 29
      { method: `${O}.ListImages`, parameters: { handle: "$handle" } }, // 30
    ];
    const r = await runClient(dir, { mode: "address", path: sock }, steps);
    const one = (i: number) => {
      assertEquals(r[i].length, 1, `step ${i} (${steps[i].method}) has one reply: ${JSON.stringify(r[i])}`);
      return r[i][0];
    };
    const ok = (i: number) => {
      const x = one(i);
      assert(x.error === undefined, `step ${i} (${steps[i].method}) failed: ${JSON.stringify(x)}`);
      return x.parameters ?? {};
    };
    const err = (i: number, name: string, params?: Record<string, unknown>) => {
      const x = one(i);
      assertEquals(x.error, name, `step ${i}: ${JSON.stringify(x)}`);
      if (params) assertEquals(x.parameters, params);
    };

    const info = ok(0);
    assertEquals(info.vendor, "org.composefs");
    assertEquals(info.product, "cfsctl");
    assertEquals([...info.interfaces].sort(), [O, R, S].sort());
    const files = `${PROJECT_ROOT}lib/varlink`;
    assertEquals(ok(1).description, await Deno.readTextFile(`${files}/org.composefs.Repository.varlink`));
    assertEquals(ok(2).description, await Deno.readTextFile(`${files}/org.composefs.Oci.varlink`));
    err(3, `${S}.InterfaceNotFound`, { interface: "org.example.Nope" });
    assertEquals(ok(4), { created: true });
    assertEquals(ok(5), { created: false });
    assertEquals(one(6).error, `${R}.InvalidSpec`);
    assertMatch(one(6).parameters!.message, /md5/);
    err(7, `${R}.InvalidSpec`, { message: "exactly one of `path`, `user`, `system` must be set" });
    assertEquals(one(8).error, `${R}.RepoNotFound`);
    assertMatch(one(8).parameters!.message, /nonexistent/);
    assertEquals(ok(9), { handle: 1 });

    // The pull: progress frames (continues: true, exactly one field each), then the result.
    const pull = r[10];
    assert(pull.length >= 3, `pull frames: ${JSON.stringify(pull)}`);
    const frames = pull.slice(0, -1);
    for (const f of frames) {
      assertEquals(f.continues, true);
      assertEquals(Object.keys(f.parameters!).length, 1, JSON.stringify(f));
    }
    const started = frames.filter((f) => f.parameters!.started).map((f) => f.parameters!.started);
    const done = frames.filter((f) => f.parameters!.done).map((f) => f.parameters!.done);
    assertEquals(started.map((s) => s.id).sort(), [...built.diffIds].sort(), "one started frame per layer");
    assert(started.every((s) => s.unit === "Bytes" && typeof s.total === "number"), JSON.stringify(started));
    assertEquals(done.map((d) => d.id).sort(), [...built.diffIds].sort(), "one done frame per layer");
    assert(frames.some((f) => f.parameters!.progress?.fetched > 0), "byte progress frames");
    const last = pull[pull.length - 1];
    assert(!last.continues, "the last frame ends the call");
    const completed = last.parameters!.completed;
    assertEquals(completed.manifest_digest, built.manifestDigest);
    assertEquals(completed.config_digest, built.configDigest);
    assertMatch(completed.manifest_verity, /^[0-9a-f]{128}$/);
    assertMatch(completed.stats, /new \+ \d+ already present objects/);

    const list = ok(11).images;
    assertEquals(list.length, 1);
    assertEquals(list[0].name, "demo");
    assertEquals(list[0].manifest_digest, built.manifestDigest);
    assertEquals(list[0].layer_count, 2);
    assertEquals(list[0].is_container, true);
    assertEquals(ok(12).images, []);
    const insp = ok(13);
    assertEquals(insp.manifest, new TextDecoder().decode(built.manifest));
    assertEquals(insp.config, new TextDecoder().decode(built.config));
    assertMatch(insp.composefs_erofs, /^[0-9a-f]{128}$/);
    err(14, `${O}.NoSuchImage`, { image: "nosuch" });
    assertEquals(ok(15).image_id, insp.composefs_erofs, "ComputeId rebuilds the pulled image's id");
    assertEquals(ok(16), {});
    assertEquals(ok(17).images.map((i: { name: string }) => i.name), ["demo", "second"]);
    assertEquals(ok(18), {});
    err(19, `${O}.NoSuchImage`, { image: "second" });
    const check = ok(20);
    assertEquals(check.ok, true, JSON.stringify(check));
    assertEquals(check.images_checked, 1);
    assertEquals(check.repo.ok, true);
    const fsck = ok(21);
    assertEquals(fsck.ok, true, JSON.stringify(fsck.errors));
    assert(fsck.objects_checked > 0, "objects were re-hashed");
    assertEquals(ok(22).objects_checked, 0, "metadata_only skips the objects");
    assertEquals(ok(23), {
      result: { objects_removed: 0, objects_bytes: 0, images_pruned: 0, streams_pruned: 0 },
      dry_run: true,
    });
    err(24, `${S}.InvalidParameter`, { parameter: "handle" });
    err(25, `${S}.MethodNotFound`, { method: `${R}.Nope` });
    assertEquals(r[26], [], "a oneway call gets no reply");
    const again = one(27);
    assertEquals(again.continues, undefined);
    assertEquals(again.parameters!.completed.manifest_digest, built.manifestDigest);
    assertEquals(ok(28), {});
    err(29, `${R}.InvalidHandle`, { handle: 1 });
    err(30, `${O}.InvalidHandle`, { handle: 1 });

    // ImageObjects on a fresh connection (handles are per server, numbered on): the image's
    // objects, sorted, as the CLI's image-objects lists them; a missing image is NoSuchRef.
    const r2 = await runClient(dir, { mode: "address", path: sock }, [
      { method: `${R}.OpenRepository`, parameters: { path: repo } },
      { method: `${R}.ImageObjects`, parameters: { handle: "$handle", name: insp.composefs_erofs } },
      { method: `${R}.ImageObjects`, parameters: { handle: "$handle", name: "refs/nosuch" } },
    ]);
    assertEquals(r2[0][0].parameters, { handle: 2 });
    const ids = r2[1][0].parameters!.object_ids as string[];
    const cli = await runCli(["--repo", repo, "image-objects", insp.composefs_erofs]);
    assertEquals(ids, [...new Set(cli.stdout.trim().split("\n"))].sort());
    assert(ids.length >= 1 && ids.every((i) => /^sha512:[0-9a-f]{128}$/.test(i)), JSON.stringify(ids));
    assertEquals(r2[2][0].error, `${R}.NoSuchRef`);
    assertEquals(r2[2][0].parameters, { reference: "refs/nosuch" });
  } finally {
    server.kill("SIGTERM");
    const st = await server.output();
    await Deno.remove(dir, { recursive: true });
    assert(st.code === 0 || st.signal === "SIGTERM", `server exit: ${new TextDecoder().decode(st.stderr)}`);
  }
});

Deno.test("varlink: socket activation on fd 3 (a connected socket, and a listening one), bare cfsctl, oci varlink", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-varlink-" });
  try {
    const repo = `${dir}/repo`;
    // No arguments at all: LISTEN_FDS makes cfsctl serve varlink (docs/varlink.md).
    const argv = [DENO, ...RUN_FLAGS, MAIN];
    const connected = await runClient(dir, { mode: "activated-connected", argv }, [
      { method: `${R}.InitRepository`, parameters: { path: repo, insecure: true } },
      { method: `${R}.OpenRepository`, parameters: { path: repo } },
      { method: `${R}.Fsck`, parameters: { handle: "$handle" } },
      { method: `${S}.GetInfo` },
    ]);
    assertEquals(connected[0][0].parameters, { created: true });
    assertEquals(connected[1][0].parameters, { handle: 1 });
    assertEquals(connected[2][0].parameters!.ok, true);
    assertEquals(connected[3][0].parameters!.product, "cfsctl");

    const listening = await runClient(dir, {
      mode: "activated-listening",
      path: `${dir}/listen.sock`,
      argv: [DENO, ...RUN_FLAGS, MAIN, "oci", "varlink"], // the same service under `oci`
    }, [
      { method: `${R}.InitRepository`, parameters: { path: repo, insecure: true } },
      { method: `${R}.OpenRepository`, parameters: { path: repo } },
      { method: `${O}.ListImages`, parameters: { handle: "$handle" } },
    ]);
    assertEquals(listening[0][0].parameters, { created: false });
    assertEquals(listening[1][0].parameters, { handle: 1 });
    assertEquals(listening[2][0].parameters, { images: [] });

    // systemd's own activator (Accept=no style: the listening socket as fd 3).
    const haveActivator = (await new Deno.Command("sh", {
      args: ["-c", "command -v systemd-socket-activate"],
      stdout: "null",
    }).output()).success;
    if (!haveActivator) {
      console.log("SKIPPED: systemd-socket-activate not installed (package systemd)");
      return;
    }
    const act = `${dir}/systemd.sock`;
    const sa = new Deno.Command("systemd-socket-activate", {
      args: ["-l", act, "-E", "PATH", "-E", "HOME", DENO, ...RUN_FLAGS, MAIN, "varlink"],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      const viaSystemd = await runClient(dir, { mode: "address", path: act }, [
        { method: `${R}.OpenRepository`, parameters: { path: repo } },
        { method: `${R}.Fsck`, parameters: { handle: "$handle", metadata_only: true } },
      ]);
      assertEquals(viaSystemd[0][0].parameters, { handle: 1 });
      assertEquals(viaSystemd[1][0].parameters!.ok, true, JSON.stringify(viaSystemd));
    } finally {
      sa.kill("SIGTERM");
      await sa.output();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "varlink: Mount and OciMount pass back a detached mount descriptor (root: erofs + overlay)",
  ignore: !isRoot,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "cfsctl-varlink-" });
    const sock = `${dir}/cfsctl.sock`;
    const server = new Deno.Command(DENO, {
      args: [...RUN_FLAGS, MAIN, "varlink", "--address", sock],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      await fixture(dir);
      const repo = `${dir}/repo`;
      for (const args of [["init", "--insecure"], ["oci", "pull", `oci:${dir}/layout:t`, "demo"]]) {
        const c = await runCli(["--repo", repo, ...args]);
        assertEquals(c.code, 0, c.stderr);
      }
      const image =
        JSON.parse((await runCli(["--repo", repo, "oci", "inspect", "demo"])).stdout).composefs_erofs;
      await Deno.mkdir(`${dir}/upper`);
      await Deno.mkdir(`${dir}/work`);
      const motd = "hello from the second layer, long enough to be an object file\n";
      const r = await runClient(dir, { mode: "address", path: sock }, [
        { method: `${R}.OpenRepository`, parameters: { path: repo } },
        {
          method: `${R}.Mount`,
          parameters: { handle: "$handle", name: image, options: {} },
          probe: { read: ["etc/motd"], write: "x" },
        },
        {
          method: `${R}.Mount`,
          parameters: { handle: "$handle", name: image, options: { overlay: true, read_write: true } },
          send_dirs: [`${dir}/upper`, `${dir}/work`],
          probe: { read: ["etc/motd"], write: "new.txt" },
        },
        {
          method: `${O}.OciMount`,
          parameters: { handle: "$handle", image: "demo", bootable: false, options: {} },
          probe: { read: ["usr/bin/tool"] },
        },
        { method: `${R}.Mount`, parameters: { handle: "$handle", name: "refs/nosuch", options: {} } },
        { method: `${R}.Mount`, parameters: { handle: "$handle", name: image, options: { overlay: true } } },
        { method: `${O}.OciMount`, parameters: { handle: "$handle", image: "nosuch", bootable: false } },
      ]);
      const ro = r[1][0];
      assertEquals(ro.parameters, { fd_index: 0 }, JSON.stringify(ro));
      assertEquals(ro._fds, 1, "one descriptor comes with the reply");
      assertEquals(ro._probe!.names, ["etc", "usr"]);
      assertEquals(ro._probe!.read["etc/motd"], motd);
      assertEquals(ro._probe!.write, "errno 30", "read-only (EROFS)");
      const rw = r[2][0];
      assertEquals(rw.parameters, { fd_index: 0 }, JSON.stringify(rw));
      assertEquals(rw._probe!.read["etc/motd"], motd);
      assertEquals(rw._probe!.write, "ok");
      assertEquals(await Deno.readTextFile(`${dir}/upper/new.txt`), "written through the mount\n");
      const oci = r[3][0];
      assertEquals(oci.parameters, { fd_index: 0 }, JSON.stringify(oci));
      assertMatch(oci._probe!.read["usr/bin/tool"], /^#!\/bin\/sh\n/);
      assertEquals(r[4][0].error, `${R}.NoSuchRef`);
      assertEquals(r[5][0].error, `${S}.InvalidParameter`);
      assertEquals(r[5][0].parameters, { parameter: "fds" });
      assertEquals(r[6][0].error, `${O}.NoSuchImage`);
      // Nothing stays mounted in this namespace: the temporary mount points are gone.
      const mounts = await Deno.readTextFile("/proc/self/mountinfo");
      assert(!mounts.includes("cfsctl-varlink-mount-"), "no temporary mount left behind");
    } finally {
      server.kill("SIGTERM");
      await server.output();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** `cfsctl varlink --address SOCK` as a child process; `stop()` ends it and checks how it ended. */
function startServer(sock: string, env?: Record<string, string>) {
  const child = new Deno.Command(DENO, {
    args: [...RUN_FLAGS, MAIN, "varlink", "--address", sock],
    stdout: "null",
    stderr: "piped",
    env,
  }).spawn();
  return {
    async stop() {
      child.kill("SIGTERM");
      const st = await child.output();
      const err = new TextDecoder().decode(st.stderr);
      assert(st.code === 0 || st.signal === "SIGTERM", `server exit ${st.code}: ${err}`);
    },
  };
}

async function cliOk(args: string[]): Promise<string> {
  const r = await runCli(args);
  assertEquals(r.code, 0, `cfsctl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function okParams(replies: Reply[], what: string): Record<string, any> {
  assertEquals(replies.length, 1, `${what}: ${JSON.stringify(replies)}`);
  assert(replies[0].error === undefined, `${what} failed: ${JSON.stringify(replies[0])}`);
  return replies[0].parameters ?? {};
}

Deno.test("varlink: bootable Pull, ComputeId and OciMount give the CLI's --bootable ids; bad Pull parameters", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfsctl-varlink-" });
  const sock = `${dir}/cfsctl.sock`;
  const server = startServer(sock);
  try {
    // A bootable image (BLS entry, UKIs, kernels in /boot and /usr/lib/modules, junk in /sysroot)
    // and a plain one.
    await makeBootTree(`${dir}/tree`);
    const layout = `${dir}/layout`;
    await addImage(layout, {
      tag: "os",
      layers: [{ tar: await tarDirectory(`${dir}/tree`), compression: "gzip" }],
    });
    await fixture(dir); // tag "t" in the same layout
    // The CLI's answers, in a repository of their own.
    const cliRepo = `${dir}/cli-repo`;
    await cliOk(["--repo", cliRepo, "init", "--insecure"]);
    const cliPull = JSON.parse(
      await cliOk(["--repo", cliRepo, "oci", "pull", "--bootable", "--json", `oci:${layout}:os`, "os"]),
    );
    const bootHex = (await cliOk(["--repo", cliRepo, "oci", "compute-id", "--bootable", "os"])).trim();
    assertMatch(bootHex, /^[0-9a-f]{128}$/);

    const repo = `${dir}/repo`;
    const pullOs = (name: string, bootable: boolean, extra: Record<string, unknown> = {}): Step => ({
      method: `${O}.Pull`,
      parameters: {
        handle: "$handle",
        image: `oci:${layout}:${name}`,
        name,
        local_fetch: "auto",
        bootable,
        ...extra,
      },
    });
    const steps: Step[] = [
      { method: `${R}.InitRepository`, parameters: { path: repo, insecure: true } }, // 0
      { method: `${R}.OpenRepository`, parameters: { path: repo } }, // 1
      pullOs("os", true), // 2
      { method: `${O}.ComputeId`, parameters: { handle: "$handle", image: "os", bootable: true } }, // 3
      { method: `${O}.ComputeId`, parameters: { handle: "$handle", image: "os", bootable: false } }, // 4
      { method: `${O}.Inspect`, parameters: { handle: "$handle", image: "os" } }, // 5
      pullOs("t", false), // 6
      pullOs("t", false, { local_fetch: "sometimes" }), // 7
      pullOs("t", false, { storage_root: "relative/storage" }), // 8
      pullOs("t", false, { local_fetch: undefined }), // 9
    ];
    if (isRoot) {
      steps.push(
        {
          method: `${O}.OciMount`,
          parameters: { handle: "$handle", image: "os", bootable: true, options: {} },
          probe: { list: ["boot", "sysroot", "usr/lib/modules/6.1.0"] },
        }, // 10
        {
          method: `${O}.OciMount`,
          parameters: { handle: "$handle", image: "os", bootable: false, options: {} },
          probe: { list: ["boot", "sysroot"] },
        }, // 11
        { method: `${O}.OciMount`, parameters: { handle: "$handle", image: "t", bootable: true } }, // 12
      );
    }
    const r = await runClient(dir, { mode: "address", path: sock }, steps);
    const completed = okParams(r[2], "bootable pull").completed;
    assertEquals(completed.boot_image, bootHex, "the boot image is the CLI's compute-id --bootable");
    assertEquals(completed.manifest_verity, cliPull.manifest_verity, "the manifest stream that links it");
    assertEquals(completed.config_verity, cliPull.config_verity);
    assertEquals(okParams(r[3], "ComputeId bootable").image_id, bootHex);
    const plain = okParams(r[4], "ComputeId").image_id;
    assert(plain !== bootHex, "the boot transform changes the image");
    const insp = okParams(r[5], "Inspect");
    assertEquals(insp.composefs_boot_erofs, bootHex);
    assertEquals(insp.composefs_erofs, plain);
    assertEquals(okParams(r[6], "plain pull").completed.boot_image, null);
    assertEquals(r[7][0].error, `${S}.InvalidParameter`);
    assertEquals(r[7][0].parameters, { parameter: "local_fetch" });
    assertEquals(r[8][0].error, `${S}.InvalidParameter`);
    assertEquals(r[8][0].parameters, { parameter: "storage_root" });
    assertEquals(r[9][0].parameters, { parameter: "local_fetch" });
    if (!isRoot) {
      console.log("SKIPPED: OciMount bootable (needs root)");
      return;
    }
    const boot = r[10][0];
    assertEquals(boot.parameters, { fd_index: 0 }, JSON.stringify(boot));
    assertEquals(boot._probe!.lists.boot, [], "the boot image has an empty /boot");
    assertEquals(boot._probe!.lists.sysroot, []);
    assert(boot._probe!.lists["usr/lib/modules/6.1.0"].includes("vmlinuz"), JSON.stringify(boot._probe));
    const full = r[11][0];
    assertEquals(full._probe!.lists.boot, ["EFI", "initramfs-6.1.img", "loader", "vmlinuz-6.1"]);
    assertEquals(full._probe!.lists.sysroot, ["ostree"]);
    assertEquals(r[12][0].error, `${O}.InternalError`);
    assertMatch(r[12][0].parameters!.message, /No boot EROFS image linked/);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

const haveRegistry = haveTools("docker-registry", "skopeo");

Deno.test({
  name: "varlink: a Pull whose client hangs up is cancelled; half-closed and oneway clients get theirs done",
  ignore: !haveRegistry,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "cfsctl-varlink-" });
    await using reg = await startRegistry(`${dir}/reg`);
    // One layer of 8 MiB that does not compress, behind a 16 Mbit/s link: a pull takes about 4 s.
    const src = `${dir}/big`;
    await Deno.mkdir(src);
    const LAYER = 8 << 20;
    const data = new Uint8Array(LAYER);
    for (let o = 0; o < LAYER; o += 65536) crypto.getRandomValues(data.subarray(o, o + 65536));
    await Deno.writeFile(`${src}/random`, data);
    const built = await addImage(`${dir}/layout`, {
      tag: "slow",
      layers: [{ tar: await tarDirectory(src) }],
    });
    await pushImage(`oci:${dir}/layout:slow`, `docker://${reg.host}/test/slow:v1`);
    await using proxy = startThrottleProxy(reg.port, { bitsPerSecond: 16e6, delayMs: 2 });
    // A faster link (about 1 s a pull) for the pulls that run to the end.
    await using fast = startThrottleProxy(reg.port, { bitsPerSecond: 64e6, delayMs: 2 });
    const conf = `${dir}/registries.conf`;
    await Deno.writeTextFile(
      conf,
      [proxy, fast].map((p) => `[[registry]]\nlocation = "${p.host}"\ninsecure = true\n`).join("\n"),
    );
    const repo = `${dir}/repo`;
    await cliOk(["--repo", repo, "init", "--insecure"]);
    const sock = `${dir}/cfsctl.sock`;
    const server = startServer(sock, { CONTAINERS_REGISTRIES_CONF: conf });
    try {
      const pull = (extra: Partial<Step>, host = proxy.host, name = "slow"): Step => ({
        method: `${O}.Pull`,
        parameters: {
          handle: "$handle",
          image: `docker://${host}/test/slow:v1`,
          name,
          local_fetch: "disabled",
          bootable: false,
        },
        ...extra,
      });
      // The client goes away once the layer's download has begun.
      const gone = await runClient(dir, { mode: "address", path: sock }, [
        { method: `${R}.OpenRepository`, parameters: { path: repo } },
        pull({ more: true, hangup_after: 2 }),
      ]);
      assertEquals(gone[1].length, 2, JSON.stringify(gone));
      assertEquals(gone[1][0].parameters!.started?.id, built.diffIds[0], JSON.stringify(gone[1]));
      // The download stops: no byte crosses the link for a second, and the blob never arrived.
      let last = -1;
      let still = 0;
      for (let i = 0; i < 40 && still < 4; i++) {
        await new Promise((r) => setTimeout(r, 250));
        still = proxy.bytesDown === last ? still + 1 : 0;
        last = proxy.bytesDown;
      }
      assertEquals(still, 4, `the download went on: ${proxy.bytesDown} bytes`);
      assert(proxy.bytesDown < LAYER * 0.75, `downloaded ${proxy.bytesDown} of ${LAYER} bytes`);
      // Nothing of the pull is visible: no tag, no manifest, config or layer stream, no image.
      const names = async (d: string) => {
        const out: string[] = [];
        try {
          for await (const e of Deno.readDir(d)) out.push(e.name);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
        return out.sort();
      };
      assertEquals((await names(`${repo}/streams`)).filter((n) => n !== "refs"), []);
      assertEquals(await names(`${repo}/streams/refs`), []);
      assertEquals(await names(`${repo}/images`), []);
      assertEquals((await runCli(["--repo", repo, "fsck"])).code, 0);

      // The server still serves: a listing on a new connection, and a client that shut down its
      // sending side after a (non-more) Pull still gets the completed pull. At the same time, a
      // oneway Pull whose client leaves at once runs to the end (it asked for no reply).
      const [next, oneway] = await Promise.all([
        runClient(dir, { mode: "address", path: sock }, [
          { method: `${R}.OpenRepository`, parameters: { path: repo } },
          { method: `${O}.ListImages`, parameters: { handle: "$handle" } },
          pull({ shutdown_write: true }, fast.host),
        ]),
        runClient(dir, { mode: "address", path: sock }, [
          { method: `${R}.OpenRepository`, parameters: { path: repo } },
          pull({ oneway: true }, fast.host, "oneway"),
        ]),
      ]);
      assertEquals(okParams(next[1], "ListImages"), { images: [] });
      const done = okParams(next[2], "half-closed pull").completed;
      assertEquals(done.manifest_digest, built.manifestDigest);
      assertEquals(oneway[1], [], "a oneway call gets no reply");
      const tags = async () =>
        JSON.parse(await cliOk(["--repo", repo, "oci", "images", "--json"])).images.map((
          i: { name: string },
        ) => i.name);
      for (let i = 0; i < 50 && (await tags()).length < 2; i++) await new Promise((r) => setTimeout(r, 200));
      assertEquals(await tags(), ["oneway", "slow"]);
      assert(fast.bytesDown >= LAYER, "the layer came over the fast link");
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const havePodman = isRoot && haveTools("podman");

Deno.test({
  name:
    "varlink: Pull from containers-storage reads the store named by storage_root, as local_fetch says (root, podman)",
  ignore: !havePodman,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "cfsctl-varlink-" });
    const sock = `${dir}/cfsctl.sock`;
    const server = startServer(sock);
    try {
      const built = await fixture(dir);
      // podman's overlay store in a fresh graphroot, as test/cstorage_test.ts makes one.
      const storage = `${dir}/storage`;
      const podman = ["--root", storage, "--runroot", `${dir}/run`, "--storage-driver", "overlay"];
      const p = await new Deno.Command("podman", { args: [...podman, "pull", "-q", `oci:${dir}/layout:t`] })
        .output();
      assertEquals(p.code, 0, new TextDecoder().decode(p.stderr));
      const imageId = built.configDigest.slice("sha256:".length);
      // The same image pulled from the layout, for its composefs id.
      const cliRepo = `${dir}/cli-repo`;
      await cliOk(["--repo", cliRepo, "init", "--insecure"]);
      await cliOk(["--repo", cliRepo, "oci", "pull", `oci:${dir}/layout:t`, "t"]);
      const want = JSON.parse(await cliOk(["--repo", cliRepo, "oci", "inspect", "t"])).composefs_erofs;

      const repo = `${dir}/repo`;
      const pull = (localFetch: string, storageRoot?: string): Step => ({
        method: `${O}.Pull`,
        more: true,
        parameters: {
          handle: "$handle",
          image: `containers-storage:${imageId}`,
          name: "cs",
          local_fetch: localFetch,
          storage_root: storageRoot,
          bootable: false,
        },
      });
      const r = await runClient(dir, { mode: "address", path: sock }, [
        { method: `${R}.InitRepository`, parameters: { path: repo, insecure: true } },
        { method: `${R}.OpenRepository`, parameters: { path: repo } },
        pull("zerocopy", `${dir}/no-store`), // 2
        pull("auto", storage), // 3
        { method: `${O}.Inspect`, parameters: { handle: "$handle", image: "cs" } }, // 4
      ]);
      // zerocopy insists on the store it was given, which does not exist.
      const refused = r[2][r[2].length - 1];
      assertEquals(refused.error, `${O}.InternalError`, JSON.stringify(r[2]));
      assert(refused.parameters!.message.includes(`${dir}/no-store`), refused.parameters!.message);
      // auto from the given graphroot: read in place (layers imported by the store's own files,
      // so no layer has a blob size to report), the same image as the layout's.
      const frames = r[3].slice(0, -1).map((f) => f.parameters!);
      const completed = r[3][r[3].length - 1].parameters!.completed;
      assert(completed, JSON.stringify(r[3]));
      assertEquals(completed.manifest_digest, built.manifestDigest);
      const started = frames.filter((f) => f.started).map((f) => f.started);
      assertEquals(started.map((s) => s.id).sort(), [...built.diffIds].sort());
      assert(started.every((s) => s.total === undefined || s.total === null), JSON.stringify(started));
      assertEquals(okParams(r[4], "Inspect").composefs_erofs, want);
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
