// `docker://` images straight from a registry (OCI distribution API v2): manifests (OCI manifest and
// index, Docker schema 2 manifest and list; schema 1 refused), platform selection, digest checks, and
// blobs streamed with transparent resume. Mirrors from registries.conf are tried first.
import { CfsError, FormatError, IntegrityError, InternalError, TransportError } from "../../../errors.ts";
import { parseDigest } from "../../digest.ts";
import { MT } from "../../media_types.ts";
import type { Platform } from "../../platform.ts";
import { resolveToManifest } from "../blob_dir.ts";
import {
  type Descriptor,
  type ImageSource,
  MAX_JSON_BLOB,
  readAllLimited,
  type ResolvedManifest,
} from "../source.ts";
import { lookupCredentials } from "./auth_file.ts";
import { type DockerReference, formatDockerReference, manifestReference } from "./docker_reference.ts";
import { type PullEndpoint, pullEndpoints, type RegistriesConf } from "./registries_conf.ts";
import { RegistryClient } from "./registry_client.ts";
import type { RemoteOptions } from "./remote_options.ts";
import { resumableBody } from "./resumable_body.ts";
import { backoffDelay, retryPolicy, sleep } from "./retry_policy.ts";
import { DEFAULT_TIMEOUT_MS } from "./bounded_read.ts";
import { safeUrl } from "./auth.ts";
import { tlsMaterialFor } from "./tls_config.ts";
import { createHash } from "node:crypto";

/** What we accept, best first; schema 1 is listed so that it comes back recognisably and is refused clearly. */
export const MANIFEST_ACCEPT = [
  MT.OCI_MANIFEST,
  MT.OCI_INDEX,
  MT.DOCKER_MANIFEST,
  MT.DOCKER_LIST,
  `${MT.DOCKER_SCHEMA1_SIGNED};q=0.5`,
  `${MT.DOCKER_SCHEMA1};q=0.5`,
].join(", ");

const KNOWN_MANIFEST_TYPES = new Set<string>([
  MT.OCI_MANIFEST,
  MT.OCI_INDEX,
  MT.DOCKER_MANIFEST,
  MT.DOCKER_LIST,
  MT.DOCKER_SCHEMA1,
  MT.DOCKER_SCHEMA1_SIGNED,
]);

/**
 * Compressed bytes of one blob read ahead of the decoder (docs/performance.md#shaped-pull): the
 * socket is drained at link speed while the import catches up after a slow stretch (many small
 * files), so the TCP window never closes for want of a reader. Per blob being downloaded, so the
 * most held is this times the layer concurrency.
 */
export const BLOB_READ_AHEAD = 8 << 20;

/** `body` read ahead by up to `bytes` (a queue that fills while the consumer is busy). */
export function readAhead(body: ReadableStream<Uint8Array>, bytes: number): ReadableStream<Uint8Array> {
  // The writable side's queue is the buffer: pipeThrough keeps reading while it has room; errors and
  // cancels go through in both directions.
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({}, new ByteLengthQueuingStrategy({ highWaterMark: bytes })),
  );
}

function digestOf(bytes: Uint8Array, alg: string): string {
  return `${alg}:${createHash(alg).update(bytes).digest("hex")}`;
}

export class RegistrySource implements ImageSource {
  readonly description: string;
  #client?: RegistryClient;
  #clients: RegistryClient[] = [];

  constructor(
    readonly ref: DockerReference,
    private opts: RemoteOptions,
    private conf: RegistriesConf,
  ) {
    this.description = `docker://${formatDockerReference(ref)}`;
  }

  async #openEndpoint(ep: PullEndpoint): Promise<RegistryClient> {
    const tls = await tlsMaterialFor(ep.registry, {
      certDir: this.opts.certDir,
      roots: this.opts.certsDRoots,
    });
    const insecure = this.opts.tlsVerify === undefined ? ep.insecure : !this.opts.tlsVerify;
    const client = new RegistryClient({
      registry: ep.registry,
      repository: ep.repository,
      insecure,
      tls,
      credentials: () =>
        lookupCredentials(ep.registry, ep.repository, {
          authfile: this.opts.authfile,
          creds: this.opts.creds,
        }),
      retry: retryPolicy(this.opts.retries, this.opts.retryDelayMs),
      timeoutMs: this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    this.#clients.push(client);
    return client;
  }

  /** Fetches one manifest by tag or digest, checking what can be checked. */
  async #fetchManifest(
    client: RegistryClient,
    reference: string,
  ): Promise<Descriptor & { bytes: Uint8Array }> {
    const path = `manifests/${reference}`;
    const what = `manifest ${reference}`;
    const policy = client.opts.retry;
    let res;
    let bytes: Uint8Array;
    for (let attempt = 1;; attempt++) {
      res = await client.get(path, new Headers({ accept: MANIFEST_ACCEPT }));
      if (res.status !== 200) await client.fail(res, path, what);
      const declared = Number(res.headers.get("content-length") ?? "0");
      if (declared > MAX_JSON_BLOB) {
        await res.body?.cancel().catch(() => {});
        throw new FormatError(`${what}: manifest is too large (${declared} bytes)`);
      }
      try {
        bytes = await readAllLimited(res.body ?? new Blob([]).stream(), MAX_JSON_BLOB, what);
        break;
      } catch (e) {
        if (e instanceof CfsError) throw e;
        // A body that stalls or breaks is a dropped connection: asked for again, like a 503.
        const why = `${what}: reading ${safeUrl(client.url(path))} failed: ${
          e instanceof Error ? e.message : String(e)
        }`;
        if (attempt >= policy.tries) throw new TransportError(`${why} (gave up after ${attempt} tries)`);
        await sleep(backoffDelay(policy, attempt));
      }
    }
    const byDigest = reference.includes(":");
    let digest: string;
    if (byDigest) {
      const { alg } = parseDigest(reference, "manifest digest");
      digest = digestOf(bytes, alg);
      if (digest !== reference) {
        throw new IntegrityError(`${what}: the registry sent a manifest whose digest is ${digest}`);
      }
    } else {
      digest = digestOf(bytes, "sha256");
    }
    const dcd = res.headers.get("docker-content-digest");
    if (dcd) {
      let alg: string;
      try {
        alg = parseDigest(dcd, "Docker-Content-Digest").alg;
      } catch {
        throw new FormatError(`${what}: invalid Docker-Content-Digest header ${JSON.stringify(dcd)}`);
      }
      const got = alg === "sha256" ? digestOf(bytes, "sha256") : digestOf(bytes, alg);
      if (got !== dcd) {
        throw new IntegrityError(
          `${what}: Docker-Content-Digest says ${dcd} but the manifest hashes to ${got}`,
        );
      }
    }
    const ct = (res.headers.get("content-type") ?? "").split(";")[0].trim();
    return {
      mediaType: KNOWN_MANIFEST_TYPES.has(ct) ? ct : (undefined as unknown as string),
      digest,
      size: bytes.length,
      bytes,
    };
  }

  async #resolve(client: RegistryClient, platform: Platform): Promise<ResolvedManifest> {
    const top = await this.#fetchManifest(client, manifestReference(this.ref));
    return await resolveToManifest(
      { mediaType: top.mediaType, digest: top.digest, size: top.size },
      platform,
      async (d) => d.digest === top.digest ? top.bytes : (await this.#fetchManifest(client, d.digest)).bytes,
      this.description,
    );
  }

  async getManifest(platform: Platform): Promise<ResolvedManifest> {
    const endpoints = pullEndpoints(this.conf, this.ref);
    const mirrorErrors: string[] = [];
    for (const ep of endpoints) {
      const client = await this.#openEndpoint(ep);
      try {
        const m = await this.#resolve(client, platform);
        this.#client = client;
        return m;
      } catch (e) {
        // A mirror that fails (unreachable, lacks the image, serves a bad manifest) falls through.
        if (ep.mirror && e instanceof CfsError) {
          mirrorErrors.push(`${ep.registry}/${ep.repository}: ${e.message}`);
          continue;
        }
        if (mirrorErrors.length > 0 && e instanceof CfsError) {
          e.within(`mirrors failed too (${mirrorErrors.join("; ")})`);
        }
        throw e;
      }
    }
    throw new FormatError(`${this.description}: no endpoint to pull from`);
  }

  getBlob(desc: Descriptor): Promise<ReadableStream<Uint8Array>> {
    const client = this.#client;
    if (!client) throw new InternalError("RegistrySource.getBlob() before getManifest()");
    parseDigest(desc.digest, "blob digest");
    const path = `blobs/${desc.digest}`;
    const what = `blob ${desc.digest}`;
    const open = async (offset: number) => {
      // identity: the bytes must be the blob itself (hashed, resumed by offset), never re-encoded.
      const headers = new Headers({ "accept-encoding": "identity" });
      if (offset > 0) headers.set("range", `bytes=${offset}-`);
      const res = await client.get(path, headers);
      if (res.status === 206 && offset > 0) {
        const m = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
        return { body: res.body ?? new Blob([]).stream(), offset: m ? Number(m[1]) : offset };
      }
      if (res.status === 200) {
        const url = safeUrl(client.url(path));
        const type = res.headers.get("content-type") ?? "";
        if (/^\s*(text\/html|application\/xhtml)/i.test(type)) {
          // A captive portal, a login page or a proxy's error page answering 200.
          await res.body?.cancel().catch(() => {});
          throw new TransportError(
            `${what}: ${url} sent an HTML page (Content-Type: ${type}) instead of the blob ` +
              `(a login portal or a proxy's error page?)`,
          );
        }
        const length = res.headers.get("content-length");
        if (length !== null && /^\d+$/.test(length) && Number(length) < desc.size) {
          await res.body?.cancel().catch(() => {});
          throw new TransportError(
            `${what}: ${url} announces ${length} bytes, but the blob has ${desc.size} (its descriptor's size)`,
          );
        }
        return { body: res.body ?? new Blob([]).stream(), offset: 0 };
      }
      return await client.fail(res, path, what);
    };
    const retry = retryPolicy(this.opts.retries, this.opts.retryDelayMs);
    const body = resumableBody(open, desc.size, retry, what);
    return Promise.resolve(desc.size > BLOB_READ_AHEAD ? readAhead(body, BLOB_READ_AHEAD) : body);
  }

  close(): Promise<void> {
    for (const c of this.#clients) c.close();
    this.#clients = [];
    return Promise.resolve();
  }
}
