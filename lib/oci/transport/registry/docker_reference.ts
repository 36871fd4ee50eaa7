// Docker image references (`HOST[:PORT]/NAME[:TAG|@DIGEST]`) normalised the way docker and
// containers/image do: no host part means Docker Hub, whose one-component names live under `library/`.
import { InvalidArgumentError } from "../../../errors.ts";
import { parseDigest } from "../../digest.ts";

export const DOCKER_HUB = "docker.io";
/** Docker Hub's API endpoint: `docker.io` is only the name used in references. */
export const DOCKER_HUB_API_HOST = "registry-1.docker.io";

export interface DockerReference {
  /** Registry as named in references: `docker.io`, `quay.io`, `127.0.0.1:5000`. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  repository: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const HOST =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$/;

function bad(s: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid docker reference ${JSON.stringify(s)}: ${why}`);
}

/** Parses the part after `docker://`. A reference with both a tag and a digest is refused (as skopeo does). */
export function parseDockerReference(s: string): DockerReference {
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      parseDigest(digest, "digest");
    } catch {
      throw bad(s, `${JSON.stringify(digest)} is not a digest (expected sha256:<64 hex digits>)`);
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(s, `invalid tag ${JSON.stringify(tag)}`);
  }
  if (tag !== undefined && digest !== undefined) {
    throw bad(s, "references with both a tag and a digest are not supported; use NAME@DIGEST");
  }
  if (rest === "") throw bad(s, "empty name");
  let registry = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // Only a component with a dot, a port or named localhost is a host (uppercase too: never a path).
    if (/[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase()) {
      if (!HOST.test(first)) throw bad(s, `invalid registry host ${JSON.stringify(first)}`);
      registry = first;
      path = rest.slice(slash + 1);
    }
  }
  if (registry === "index.docker.io") registry = DOCKER_HUB;
  for (const c of path.split("/")) {
    if (!COMPONENT.test(c)) {
      throw bad(
        s,
        `invalid repository name component ${
          JSON.stringify(c)
        } (lowercase letters, digits and . _ - separators)`,
      );
    }
  }
  if (registry === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;
  if (registry.length + 1 + path.length > 255) throw bad(s, "name longer than 255 characters");
  return { registry, repository: path, tag: digest === undefined ? (tag ?? "latest") : undefined, digest };
}

/** The manifest reference to ask the registry for: the digest when there is one, else the tag. */
export function manifestReference(ref: DockerReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** `registry/repository[:tag|@digest]`, the normalised form. */
export function formatDockerReference(ref: DockerReference): string {
  const base = `${ref.registry}/${ref.repository}`;
  return ref.digest ? `${base}@${ref.digest}` : `${base}:${ref.tag ?? "latest"}`;
}

/** The host:port to connect to for a registry name (Docker Hub's API lives elsewhere). */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry;
}
