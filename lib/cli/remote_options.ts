// Command-line options for pulling from registries and through skopeo (same names as skopeo's).
import { type Command, Option } from "commander";
import { UsageError } from "../errors.ts";
import { parseBool } from "./common_options.ts";
import { errln } from "./output.ts";
import type { RemoteOptions } from "../oci/transport/registry/remote_options.ts";

export function addRemoteOptions(cmd: Command): void {
  cmd
    .option(
      "--authfile <PATH>",
      "registry credentials file (default: $REGISTRY_AUTH_FILE, then the containers/docker files)",
    )
    .option("--creds <USER:PASS>", "registry credentials")
    .option("--cert-dir <DIR>", "TLS certificates (*.crt CAs, *.cert/*.key client pair) instead of certs.d")
    .option(
      "--tls-verify [BOOL]",
      "require HTTPS with verified certificates (false: allow plain HTTP and unverified certificates)",
    )
    .option(
      "--registries-conf <PATH>",
      "registries.conf to use (default: $CONTAINERS_REGISTRIES_CONF or the system one)",
    )
    .option("--retries <N>", "retries for failed registry requests and interrupted downloads (default 4)")
    .option(
      "--timeout <SECONDS>",
      "stall timeout for every registry read: no response, or no bytes of a manifest, token, error or " +
        "blob body, for this long counts as a dropped connection (default 60; env CFSCTL_TIMEOUT)",
    )
    .addOption(
      new Option("--transport-backend <BACKEND>", "what serves docker:// references: native or skopeo")
        .choices(["native", "skopeo"]),
    )
    .addOption(
      new Option(
        "--local-fetch <MODE>",
        "containers-storage: read the overlay store directly (auto: reflink, else hard link, else copy; " +
          "zerocopy: fail rather than copy; disabled: through skopeo)",
      ).choices(["disabled", "auto", "zerocopy"]),
    )
    .option(
      "--storage-root <DIR>",
      "containers-storage graphroot (default as podman: storage.conf's, else /var/lib/containers/storage, " +
        "rootless ~/.local/share/containers/storage; additionalimagestores are searched too)",
    )
    .option(
      "--storage-trust-diff-ids",
      "containers-storage: do not re-hash layers against their diff_id (faster; a changed diff/ file goes unnoticed)",
    );
}

export function remoteOptionsFrom(opts: Record<string, unknown>): RemoteOptions {
  let retries: number | undefined;
  if (opts.retries !== undefined) {
    retries = Number(opts.retries);
    if (!Number.isInteger(retries) || retries < 0 || retries > 100) {
      throw new UsageError(
        `--retries takes a whole number from 0 to 100, not ${JSON.stringify(opts.retries)}`,
      );
    }
  }
  let timeoutMs: number | undefined;
  const timeout = opts.timeout ?? Deno.env.get("CFSCTL_TIMEOUT");
  if (timeout !== undefined && timeout !== "") {
    const s = Number(timeout);
    if (!Number.isFinite(s) || s <= 0 || s > 86_400) {
      const from = opts.timeout !== undefined ? "--timeout" : "CFSCTL_TIMEOUT";
      throw new UsageError(`${from} takes seconds (above 0, at most 86400), not ${JSON.stringify(timeout)}`);
    }
    timeoutMs = Math.round(s * 1000);
  }
  return {
    timeoutMs,
    authfile: opts.authfile as string | undefined,
    creds: opts.creds as string | undefined,
    certDir: opts.certDir as string | undefined,
    tlsVerify: parseBool(opts.tlsVerify as string | boolean | undefined, "--tls-verify"),
    registriesConf: opts.registriesConf as string | undefined,
    retries,
    backend: opts.transportBackend as "native" | "skopeo" | undefined,
    localFetch: opts.localFetch as RemoteOptions["localFetch"],
    storageRoot: opts.storageRoot as string | undefined,
    trustStorageDiffIds: opts.storageTrustDiffIds === true ? true : undefined,
    onStorageLockWait: (path, pid) =>
      errln(`waiting for containers-storage lock ${path}, held for writing${pid ? ` by pid ${pid}` : ""}…`),
  };
}
