// Images from every transport skopeo reaches (containers-storage:, docker-daemon:, …, and docker://
// on request) through `skopeo experimental-image-proxy`: JSON requests over a SOCK_SEQPACKET socket
// pair, payloads over pipes whose read ends arrive by SCM_RIGHTS. Written against protocol 0.2.3
// (skopeo 1.9): Initialize, OpenImage, GetManifest, GetFullConfig, GetBlob, FinishPipe, CloseImage.
//
// Protocol facts that shape this file: the proxy serves one request at a time, in order (so calls are
// queued here and replies match requests FIFO); a pipe's write end is closed only by FinishPipe, and
// FinishPipe blocks the proxy until the pipe's data has been written (so the pipe is read while
// FinishPipe runs, and for blobs FinishPipe is sent once the expected size has arrived, which keeps
// several blobs flowing at once); GetManifest converts Docker manifests to OCI (returning the
// original digest) and then the config must come from GetFullConfig.
import { createHash } from "node:crypto";
import {
  FormatError,
  IntegrityError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  TransportError,
} from "../../errors.ts";
import {
  closeFd,
  receiveMessage,
  sendMessage,
  setInheritable,
  setPipeSize,
  shutdownSocket,
  socketPair,
} from "../../linux/socket.ts";
import {
  closeFd as closeFile,
  O_CREAT,
  O_EXCL,
  O_RDWR,
  openPath,
  openTmpfile,
  writeAll,
} from "../../linux/fs.ts";
import type { Platform } from "../platform.ts";
import { type SplitSink, splitTarInto } from "../layer_split.ts";
import type { ObjectStore } from "../../objects/store.ts";
import { parseJson } from "../../util/json.ts";
import { parseCredsOption } from "./registry/auth_file.ts";
import { parseDockerReference } from "./registry/docker_reference.ts";
import type { RemoteOptions } from "./registry/remote_options.ts";
import { DEFAULT_TIMEOUT_MS, seconds } from "./registry/bounded_read.ts";
import { type Descriptor, type ImageSource, MAX_JSON_BLOB, type ResolvedManifest } from "./source.ts";
import { concatBytes } from "../../util/bytes.ts";

/** Protocol versions this client speaks (0.2.x from 0.2.3 on: GetFullConfig is needed). */
const MIN_MINOR_PATCH = [2, 3];
const MAX_REPLY = 32 * 1024;
/** A blob pipe that stays silent this long gets its FinishPipe early (it may end short of its size). */
const STALL_MS = 2000;

interface Reply {
  value: unknown;
  pipe?: { fd: number; id: number };
}

function sha256(bytes: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

/**
 * A file holding `data` that has no name anywhere: O_TMPFILE in a memory-backed directory when there
 * is one ($XDG_RUNTIME_DIR, /dev/shm), else in the temporary directory; without O_TMPFILE, a file
 * created exclusively and unlinked at once. Returned close-on-exec, offset past the data (skopeo
 * opens it anew through /proc/self/fd/N and reads from the start).
 */
function unnamedFile(data: Uint8Array): number {
  const dirs = [Deno.env.get("XDG_RUNTIME_DIR"), "/dev/shm", Deno.env.get("TMPDIR"), "/tmp"]
    .filter((d): d is string => !!d);
  let fd = -1;
  let lastError: unknown;
  for (const dir of dirs) {
    try {
      const t = openTmpfile(dir, 0o600);
      if (t !== null) {
        fd = t;
        break;
      }
      const path = `${dir}/.cfsctl-auth-${crypto.randomUUID()}`;
      fd = openPath(path, O_RDWR | O_CREAT | O_EXCL, 0o600);
      Deno.removeSync(path);
      break;
    } catch (e) {
      if (fd >= 0) closeFile(fd);
      fd = -1;
      lastError = e;
    }
  }
  if (fd < 0) {
    throw new TransportError(
      `cannot create a private file for skopeo's credentials: ${(lastError as Error)?.message}`,
    );
  }
  try {
    writeAll(fd, data);
  } catch (e) {
    closeFile(fd);
    throw e;
  }
  return fd;
}

export class SkopeoProxySource implements ImageSource {
  readonly description: string;
  #child?: Deno.ChildProcess;
  #sock = -1;
  #queue: Promise<unknown> = Promise.resolve();
  #imageId?: number;
  #dead?: string;
  /** Why we killed skopeo (it went silent for longer than the timeout). */
  #gaveUp?: string;
  #stderr: string[] = [];
  /** When the proxy converted the manifest, its config exists only as GetFullConfig's output. */
  #convertedConfig?: { digest: string; bytes: Uint8Array };

  /**
   * containers-storage: through skopeo 1.9, which lacks GetLayerInfo: the store serves layers only
   * under their uncompressed digests, so layers are asked for by diff_id and split here.
   */
  splitLayer?: ImageSource["splitLayer"];

  constructor(readonly ref: string, private opts: RemoteOptions = {}) {
    this.description = `skopeo:${ref}`;
    if (ref.startsWith("containers-storage:")) {
      this.splitLayer = (_desc, diffId, repo, sink, onProgress) =>
        this.#splitByDiffId(diffId, repo, sink, onProgress);
    }
  }

  async #splitByDiffId(
    diffId: string,
    repo: ObjectStore,
    sink: SplitSink,
    onProgress: (done: number, total?: number) => void,
  ): Promise<{ size: number; externalSize: number; inlineSize: number }> {
    if (this.#imageId === undefined) {
      throw new InternalError("SkopeoProxySource.splitLayer() before getManifest()");
    }
    // The proxy insists on the blob's exact size, which only its reply tells: a first request (its
    // pipe closed at once, its FinishPipe error ignored) learns it, the second one reads the layer.
    const probe = await this.#call("GetBlob", [this.#imageId, diffId, 0]);
    if (probe.pipe) {
      closeFd(probe.pipe.fd);
      await this.#call("FinishPipe", [probe.pipe.id]).catch(() => {});
    }
    const size = Number(probe.value);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new FormatError(`skopeo GetBlob ${diffId}: unknown size ${JSON.stringify(probe.value)}`);
    }
    const r = await this.#call("GetBlob", [this.#imageId, diffId, size]);
    if (!r.pipe) throw new FormatError(`skopeo GetBlob ${diffId} returned no data`);
    const stream = await this.#pipeStream(r.pipe, size);
    return await splitTarInto(stream, repo, sink, {
      expectedDiffId: diffId,
      onProgress: (n) => onProgress(n, size),
    });
  }

  /** skopeo's arguments, and the descriptor of the private auth file it is to inherit (or -1). */
  #args(platform: Platform, sockFd: number): { args: string[]; authFd: number } {
    const a: string[] = [];
    let authFd = -1;
    if (this.opts.registriesConf) a.push("--registries-conf", this.opts.registriesConf);
    a.push("--override-os", platform.os, "--override-arch", platform.architecture);
    if (platform.variant) a.push("--override-variant", platform.variant);
    a.push("experimental-image-proxy", "--sockfd", String(sockFd));
    if (this.opts.tlsVerify !== undefined) a.push(`--tls-verify=${this.opts.tlsVerify}`);
    if (this.opts.certDir) a.push("--cert-dir", this.opts.certDir);
    if (this.opts.creds) {
      // Credentials go neither into argv (other users read /proc/PID/cmdline) nor into a named file
      // (a kill would leave it behind): an unnamed file skopeo inherits and opens as /proc/self/fd/N.
      const c = parseCredsOption(this.opts.creds);
      let key = "";
      if (this.ref.startsWith("docker://")) {
        const d = parseDockerReference(this.ref.slice("docker://".length));
        key = `${d.registry}/${d.repository}`;
      }
      if (key) {
        const auth = btoa(String.fromCharCode(...new TextEncoder().encode(`${c.username}:${c.password}`)));
        authFd = unnamedFile(new TextEncoder().encode(JSON.stringify({ auths: { [key]: { auth } } })));
        a.push("--authfile", `/proc/self/fd/${authFd}`);
      }
    } else if (this.opts.authfile) a.push("--authfile", this.opts.authfile);
    return { args: a, authFd };
  }

  #start(platform: Platform): void {
    const [mine, theirs] = socketPair();
    this.#sock = mine;
    let args: string[];
    let authFd: number;
    try {
      ({ args, authFd } = this.#args(platform, theirs));
    } catch (e) {
      closeFd(mine);
      closeFd(theirs);
      this.#sock = -1;
      throw e;
    }
    // The child gets `theirs` (and the auth file) by inheritance; inheritable only for the spawn.
    setInheritable(theirs, true);
    if (authFd >= 0) setInheritable(authFd, true);
    let spawnError: unknown;
    try {
      this.#child = new Deno.Command(this.opts.skopeoPath ?? "skopeo", {
        args,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      spawnError = e;
    }
    closeFd(theirs);
    // skopeo holds its own copy; the file is gone once skopeo exits, however it ends.
    if (authFd >= 0) closeFile(authFd);
    if (spawnError !== undefined || !this.#child) {
      closeFd(mine);
      this.#sock = -1;
      if (spawnError instanceof Deno.errors.NotFound) {
        throw new InvalidArgumentError(
          "skopeo is not installed (needed for this transport; install the skopeo package)",
        );
      }
      throw new TransportError(`cannot start skopeo: ${(spawnError as Error)?.message}`);
    }
    this.#collectStderr(this.#child.stderr);
    this.#child.status.then((s) => {
      this.#dead = this.#gaveUp ??
        `skopeo exited with ${s.signal ? `signal ${s.signal}` : `code ${s.code}`}`;
      // Wakes a receive still waiting for a reply.
      if (this.#sock >= 0) shutdownSocket(this.#sock);
    });
  }

  async #collectStderr(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const c of stream) {
        this.#stderr.push(dec.decode(c, { stream: true }));
        if (this.#stderr.length > 50) this.#stderr.shift();
      }
    } catch { /* process gone */ }
  }

  #stderrTail(): string {
    const t = this.#stderr.join("").trim().split("\n").slice(-3).join(" | ");
    return t ? ` (skopeo: ${t})` : "";
  }

  /** `--timeout` for skopeo too: silence for this long (no reply, no pipe data) ends the pull. */
  get #timeoutMs(): number {
    return this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Kills a skopeo that went silent; the socket shutdown that follows wakes any waiting receive. */
  #giveUp(reason: string): void {
    this.#gaveUp ??= `${reason}; skopeo stopped`;
    try {
      this.#child?.kill("SIGKILL");
    } catch { /* exited */ }
  }

  /** One request/reply, queued behind earlier ones (the proxy answers strictly in order). */
  #call(method: string, args: unknown[]): Promise<Reply> {
    const run = async (): Promise<Reply> => {
      if (this.#sock < 0) throw new TransportError(`skopeo proxy is not running`);
      sendMessage(this.#sock, new TextEncoder().encode(JSON.stringify({ method, args })));
      const timer = setTimeout(
        () => this.#giveUp(`no reply to ${method} within ${seconds(this.#timeoutMs)}`),
        this.#timeoutMs,
      );
      const msg = await receiveMessage(this.#sock, MAX_REPLY, 4).finally(() => clearTimeout(timer));
      if (msg.data.length === 0) {
        msg.fds.forEach(closeFd);
        await this.#child?.status.catch(() => {});
        throw new TransportError(
          `skopeo proxy closed the connection during ${method}${
            this.#dead ? ` (${this.#dead})` : ""
          }${this.#stderrTail()}`,
        );
      }
      let reply: any;
      try {
        reply = JSON.parse(new TextDecoder().decode(msg.data));
      } catch {
        msg.fds.forEach(closeFd);
        throw new FormatError(`skopeo proxy sent an invalid reply to ${method}`);
      }
      if (!reply.success) {
        msg.fds.forEach(closeFd);
        const text = String(reply.error ?? "unknown error");
        const E = /manifest unknown|not found|no such|does not exist/i.test(text)
          ? NotFoundError
          : TransportError;
        throw new E(`skopeo ${method}: ${text}`);
      }
      if (msg.fds.length > 1) msg.fds.slice(1).forEach(closeFd);
      return {
        value: reply.value,
        pipe: msg.fds.length > 0 ? { fd: msg.fds[0], id: Number(reply.pipeid) } : undefined,
      };
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }

  /**
   * The pipe's data as a stream. FinishPipe is sent when `expectedSize` bytes have arrived, when the
   * pipe stalls, or at once without a size; its error (digest mismatch, short blob…) fails the stream.
   */
  async #pipeStream(
    pipe: { fd: number; id: number },
    expectedSize?: number,
  ): Promise<ReadableStream<Uint8Array>> {
    setPipeSize(pipe.fd, 1 << 20);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(`/proc/self/fd/${pipe.fd}`, { read: true });
    } finally {
      closeFd(pipe.fd);
    }
    let finish: Promise<Reply> | undefined;
    const startFinish = () => {
      if (!finish) {
        finish = this.#call("FinishPipe", [pipe.id]);
        finish.catch(() => {}); // observed when the stream ends
      }
      return finish;
    };
    if (expectedSize === undefined) startFinish();
    let received = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      if (timer !== undefined) clearTimeout(timer);
      if (!finish) timer = setTimeout(startFinish, STALL_MS);
    };
    const done = () => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      try {
        file.close();
      } catch { /* already closed */ }
    };
    const buf = new Uint8Array(1 << 20);
    const timeoutMs = this.#timeoutMs;
    const giveUp = (why: string) => this.#giveUp(why);
    return new ReadableStream<Uint8Array>({
      async pull(ctl) {
        arm();
        let n: number | null;
        let stallTimer: ReturnType<typeof setTimeout> | undefined;
        try {
          const reading = file.read(buf);
          const stalled = new Promise<"stalled">((resolve) => {
            stallTimer = setTimeout(() => resolve("stalled"), timeoutMs);
          });
          const r = await Promise.race([reading, stalled]);
          if (r === "stalled") {
            reading.catch(() => {}); // fails once the file is closed
            const why = `skopeo sent no data for ${seconds(timeoutMs)} (after ${received} bytes)`;
            giveUp(why);
            throw new TransportError(why);
          }
          n = r;
        } catch (e) {
          done();
          throw e;
        } finally {
          clearTimeout(stallTimer);
        }
        if (n === null) {
          done();
          await startFinish(); // throws the proxy's verdict on the blob
          ctl.close();
          return;
        }
        received += n;
        if (expectedSize !== undefined && received >= expectedSize) startFinish();
        ctl.enqueue(buf.slice(0, n));
      },
      async cancel() {
        done();
        // The proxy keeps writing until it sees FinishPipe; a cancelled reader must still send it.
        await startFinish().catch(() => {});
      },
    }, { highWaterMark: 0 });
  }

  async #readPipe(pipe: { fd: number; id: number }, what: string): Promise<Uint8Array> {
    const stream = await this.#pipeStream(pipe);
    const parts: Uint8Array[] = [];
    let n = 0;
    for await (const c of stream) {
      n += c.length;
      if (n > MAX_JSON_BLOB) {
        throw new FormatError(`${what} is larger than ${MAX_JSON_BLOB} bytes`);
      }
      parts.push(c);
    }
    return concatBytes(parts);
  }

  async getManifest(platform: Platform): Promise<ResolvedManifest> {
    if (this.#child) throw new InternalError("SkopeoProxySource.getManifest() called twice");
    this.#start(platform);
    const version = String((await this.#call("Initialize", [])).value);
    const m = /^0\.(\d+)\.(\d+)/.exec(version);
    if (!m || Number(m[1]) !== MIN_MINOR_PATCH[0] || Number(m[2]) < MIN_MINOR_PATCH[1]) {
      throw new TransportError(
        `unsupported skopeo proxy protocol ${version} (need 0.2.3 or later 0.2.x)`,
      );
    }
    this.#imageId = Number((await this.#call("OpenImage", [this.ref])).value);
    const r = await this.#call("GetManifest", [this.#imageId]);
    if (!r.pipe) throw new FormatError(`skopeo GetManifest returned no data`);
    const bytes = await this.#readPipe(r.pipe, "manifest");
    const original = String(r.value);
    const doc = parseJson(bytes, "manifest");
    const mediaType = typeof doc?.mediaType === "string"
      ? doc.mediaType
      : "application/vnd.oci.image.manifest.v1+json";
    let digest = original;
    if (sha256(bytes) !== original) {
      // Converted to OCI by the proxy: keep the bytes we were given under their own digest; the
      // config descriptor then names GetFullConfig's serialisation.
      digest = sha256(bytes);
      const c = await this.#call("GetFullConfig", [this.#imageId]);
      if (!c.pipe) throw new FormatError(`skopeo GetFullConfig returned no data`);
      const cfg = await this.#readPipe(c.pipe, "config");
      const want = doc?.config?.digest;
      if (sha256(cfg) !== want) {
        throw new IntegrityError(
          `converted manifest names config ${want} but GetFullConfig hashes to ${sha256(cfg)}`,
        );
      }
      this.#convertedConfig = { digest: want, bytes: cfg };
    }
    return { bytes, digest, mediaType };
  }

  async getBlob(desc: Descriptor): Promise<ReadableStream<Uint8Array>> {
    if (this.#imageId === undefined) {
      throw new InternalError("SkopeoProxySource.getBlob() before getManifest()");
    }
    if (this.#convertedConfig && desc.digest === this.#convertedConfig.digest) {
      return new Blob([this.#convertedConfig.bytes as Uint8Array<ArrayBuffer>]).stream();
    }
    const r = await this.#call("GetBlob", [this.#imageId, desc.digest, desc.size]);
    if (!r.pipe) throw new FormatError(`skopeo GetBlob ${desc.digest} returned no data`);
    return await this.#pipeStream(r.pipe, desc.size);
  }

  async close(): Promise<void> {
    try {
      if (this.#imageId !== undefined && !this.#dead) {
        await this.#call("CloseImage", [this.#imageId]).catch(() => {});
      }
    } finally {
      if (this.#sock >= 0) {
        // EOF on its socket makes the proxy exit.
        shutdownSocket(this.#sock);
        closeFd(this.#sock);
        this.#sock = -1;
      }
      if (this.#child) {
        const t = setTimeout(() => {
          try {
            this.#child?.kill("SIGKILL");
          } catch { /* exited */ }
        }, 5000);
        await this.#child.status.catch(() => {});
        clearTimeout(t);
      }
    }
  }
}
