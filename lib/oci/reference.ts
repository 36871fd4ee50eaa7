// skopeo-style image references: `transport:details`.
import { InvalidArgumentError } from "../errors.ts";

export type ImageReference =
  | { transport: "oci"; path: string; tag?: string }
  | { transport: "oci-archive"; path: string; tag?: string }
  | { transport: "docker-archive"; path: string; ref?: string }
  | { transport: "dir"; path: string }
  | { transport: "docker"; ref: string }
  | { transport: "skopeo"; ref: string };

/** Splits `PATH[:TAG]`: the last `:` is a tag separator only when no `/` follows it. */
function splitPathTag(s: string): { path: string; tag?: string } {
  const i = s.lastIndexOf(":");
  if (i > 0 && !s.slice(i + 1).includes("/")) {
    return { path: s.slice(0, i), tag: s.slice(i + 1) || undefined };
  }
  return { path: s };
}

export function parseImageReference(s: string): ImageReference {
  const i = s.indexOf(":");
  if (i <= 0) {
    throw new InvalidArgumentError(
      `invalid image reference ${
        JSON.stringify(s)
      }: expected TRANSPORT:NAME (oci:, oci-archive:, docker-archive:, dir:, docker://, containers-storage:…)`,
    );
  }
  const transport = s.slice(0, i);
  const rest = s.slice(i + 1);
  switch (transport) {
    case "oci": {
      const { path, tag } = splitPathTag(rest);
      return { transport: "oci", path, tag };
    }
    case "oci-archive": {
      const { path, tag } = splitPathTag(rest);
      return { transport: "oci-archive", path, tag };
    }
    case "docker-archive": {
      // containers/image splits at the first ':' here, since a docker reference contains ':' itself
      const j = rest.indexOf(":");
      return j < 0
        ? { transport: "docker-archive", path: rest }
        : { transport: "docker-archive", path: rest.slice(0, j), ref: rest.slice(j + 1) || undefined };
    }
    case "dir":
      return { transport: "dir", path: rest };
    case "docker":
      if (!rest.startsWith("//")) {
        throw new InvalidArgumentError(
          `invalid docker reference ${JSON.stringify(s)}: expected docker://NAME`,
        );
      }
      return { transport: "docker", ref: rest.slice(2) };
    default:
      return { transport: "skopeo", ref: s };
  }
}
