// org.composefs.Oci.Pull (docs/varlink.md#pull): pulls as `cfsctl oci pull` does — any transport,
// containers-storage read in place per `local_fetch`/`storage_root`, boot images linked when
// `bootable` — streaming the library's progress events as reply frames. The call's signal (the
// client hung up) aborts the pull: downloads stop, and no image, stream or tag of it is written.
import { linkBootImages } from "../boot/oci_boot.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { formatStats, pullImage, type PullResult } from "../oci/pull.ts";
import { parseImageReference } from "../oci/reference.ts";
import { openImageSource } from "../oci/transport/open_source.ts";
import { remoteSourceFactory } from "../oci/transport/registry/open_remote.ts";
import type { RemoteOptions } from "../oci/transport/registry/remote_options.ts";
import type { ProgressEvent } from "../progress/events.ts";
import type { Repository } from "../repository/repository.ts";
import { IFACE } from "./interfaces.ts";
import { type CallContext, failure, repoOf } from "./method.ts";
import { bool, invalid, oneOf, type Params, str } from "./params.ts";
import type { ReplySink } from "./server.ts";

const LOCAL_FETCH = ["disabled", "auto", "zerocopy"] as const;

/** A library progress event as a Pull frame (exactly one field set), or null for events not sent. */
export function pullFrame(e: ProgressEvent): Params | null {
  switch (e.type) {
    case "started":
      return { started: { id: e.id, total: e.total, unit: e.unit === "bytes" ? "Bytes" : "Items" } };
    case "progress":
      return { progress: { id: e.id, fetched: e.done, total: e.total } };
    case "skipped":
      return { skipped: { id: e.id } };
    case "done":
      return { done: { id: e.id, transferred: e.transferred } };
    case "message":
      return { message: e.text };
    default:
      return null;
  }
}

interface PullRequest {
  image: string;
  tag?: string;
  remote: RemoteOptions;
  bootable: boolean;
}

function pullRequest(p: Params): PullRequest {
  const image = str(p, "image");
  const tag = str(p, "name", true);
  const localFetch = oneOf(p, "local_fetch", LOCAL_FETCH);
  const storageRoot = str(p, "storage_root", true);
  // The server's working directory is nobody's business: a graphroot is named absolutely.
  if (storageRoot !== undefined && !storageRoot.startsWith("/")) invalid("storage_root");
  return { image, tag, remote: { localFetch, storageRoot }, bootable: bool(p, "bootable") };
}

interface Pulled {
  result: PullResult;
  /** The boot image's id (bootable pulls), and the streams rewritten to link it. */
  boot?: { image: ObjectId; manifestVerity: ObjectId; configVerity: ObjectId };
}

async function pullAndLink(
  repo: Repository,
  req: PullRequest,
  sink: ReplySink,
  signal: AbortSignal,
): Promise<Pulled> {
  const source = await openImageSource(parseImageReference(req.image), {
    remote: remoteSourceFactory(req.remote),
  });
  try {
    const result = await pullImage(repo, source, {
      name: req.tag ?? req.image,
      signal,
      reporter: {
        report(e) {
          const f = pullFrame(e);
          if (f) sink.progress(f);
        },
      },
    });
    if (!req.bootable) return { result };
    const linked = await linkBootImages(repo, result.manifestDigest);
    return {
      result,
      boot: {
        image: [...linked.images.values()][0],
        manifestVerity: linked.manifestVerity,
        configVerity: linked.configVerity,
      },
    };
  } finally {
    await source.close();
  }
}

export async function pull(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, IFACE.oci);
  const req = pullRequest(cx.p);
  const { result, boot } = await pullAndLink(repo, req, cx.sink, cx.call.signal).catch(failure(IFACE.oci));
  return {
    completed: {
      manifest_digest: result.manifestDigest,
      config_digest: result.configDigest,
      manifest_verity: (boot?.manifestVerity ?? result.manifestVerity).hex(),
      config_verity: (boot?.configVerity ?? result.configVerity).hex(),
      stats: formatStats(result.stats),
      boot_image: boot?.image.hex() ?? null,
    },
  };
}
