// The `remote` hook of openImageSource: docker:// goes to the native registry client (or to skopeo
// with backend "skopeo"); every other transport skopeo knows (containers-storage:, docker-daemon:, …)
// goes through `skopeo experimental-image-proxy`. An explicit `skopeo:` prefix (`skopeo:docker://…`)
// sends any reference through skopeo.
import type { ImageReference } from "../../reference.ts";
import { SkopeoProxySource } from "../skopeo_proxy.ts";
import { openContainersStorage } from "../containers_storage/source.ts";
import type { ImageSource } from "../source.ts";
import { parseDockerReference } from "./docker_reference.ts";
import { loadRegistriesConf } from "./registries_conf.ts";
import { RegistrySource } from "./registry_source.ts";
import type { RemoteOptions } from "./remote_options.ts";
import { InternalError } from "../../../errors.ts";

export const SKOPEO_PREFIX = "skopeo:";

export function remoteSourceFactory(opts: RemoteOptions = {}): (ref: ImageReference) => Promise<ImageSource> {
  return async (ref) => {
    if (ref.transport === "docker") {
      if (opts.backend === "skopeo") return new SkopeoProxySource(`docker://${ref.ref}`, opts);
      const dref = parseDockerReference(ref.ref);
      const conf = await loadRegistriesConf(opts.registriesConf);
      return new RegistrySource(dref, opts, conf);
    }
    if (ref.transport === "skopeo") {
      const inner = ref.ref.startsWith(SKOPEO_PREFIX) ? ref.ref.slice(SKOPEO_PREFIX.length) : ref.ref;
      if (inner === ref.ref && inner.startsWith("containers-storage:")) {
        // Native overlay-store import unless disabled; null = not servable here, skopeo takes it.
        const native = await openContainersStorage(inner, {
          mode: opts.localFetch ?? "auto",
          storageRoot: opts.storageRoot,
          trustDiffIds: opts.trustStorageDiffIds,
          onLockWait: opts.onStorageLockWait &&
            ((path, holder) =>
              opts.onStorageLockWait!(path, holder && holder.pid > 0 ? holder.pid : undefined)),
        });
        if (native) return native;
      }
      return new SkopeoProxySource(inner, opts);
    }
    throw new InternalError(`remoteSourceFactory: transport ${ref.transport} is local`);
  };
}
