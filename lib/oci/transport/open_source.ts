// Turns a parsed image reference into an ImageSource.
import { InvalidArgumentError } from "../../errors.ts";
import type { ImageReference } from "../reference.ts";
import { DirSource } from "./dir_layout.ts";
import { DockerArchiveSource } from "./docker_archive.ts";
import { DirFiles, TarFiles } from "./layout_files.ts";
import { OciLayoutSource } from "./oci_layout.ts";
import type { ImageSource } from "./source.ts";

export interface SourceOptions {
  /** Extra transports (registry, skopeo proxy) plugged in by higher layers. */
  remote?: (ref: ImageReference) => Promise<ImageSource>;
}

export async function openImageSource(ref: ImageReference, opts: SourceOptions = {}): Promise<ImageSource> {
  switch (ref.transport) {
    case "oci":
      return new OciLayoutSource(
        new DirFiles(ref.path),
        ref.tag,
        `oci:${ref.path}${ref.tag ? ":" + ref.tag : ""}`,
      );
    case "oci-archive": {
      const files = await TarFiles.open(ref.path);
      return new OciLayoutSource(files, ref.tag, `oci-archive:${ref.path}${ref.tag ? ":" + ref.tag : ""}`);
    }
    case "docker-archive": {
      const files = await TarFiles.open(ref.path);
      // `docker save` of Docker ≥ 25 also writes an OCI layout; the legacy manifest.json is used
      // because it is what every version writes.
      return new DockerArchiveSource(files, ref.ref);
    }
    case "dir":
      return new DirSource(new DirFiles(ref.path));
    case "docker":
    case "skopeo":
      if (opts.remote) return await opts.remote(ref);
      throw new InvalidArgumentError(
        `transport ${
          ref.transport === "docker" ? "docker://" : ref.ref.split(":")[0] + ":"
        } is not available in this build`,
      );
  }
}
