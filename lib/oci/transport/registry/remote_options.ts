// Options shared by the remote transports (native registry client and the skopeo proxy); they mirror
// skopeo's flags of the same names.

export interface RemoteOptions {
  /** `--authfile`: the only auth file consulted (else $REGISTRY_AUTH_FILE, else the default chain). */
  authfile?: string;
  /** `--creds USER:PASS`. */
  creds?: string;
  /** `--cert-dir`: TLS material for every registry instead of certs.d. */
  certDir?: string;
  /** `--tls-verify`: false allows plain HTTP and unverified certificates; undefined lets registries.conf decide. */
  tlsVerify?: boolean;
  /** registries.conf path (else $CONTAINERS_REGISTRIES_CONF, else the system file and its drop-ins). */
  registriesConf?: string;
  /** Retries after the first attempt for each request and each blob resume. */
  retries?: number;
  /** `--timeout`: stall timeout for every registry read (headers and bodies); default 60 s. */
  timeoutMs?: number;
  /** Base of the exponential backoff (tests shorten it). */
  retryDelayMs?: number;
  /** certs.d roots (else $CFSCTL_CERTS_D, else /etc/containers/certs.d and /etc/docker/certs.d). */
  certsDRoots?: string[];
  /** `native` (default) or `skopeo`: which backend serves docker:// references. */
  backend?: "native" | "skopeo";
  /** The skopeo binary (default: `skopeo` from PATH). */
  skopeoPath?: string;
  /** `--local-fetch`: how containers-storage: is read (default auto; see docs/containers-storage.md). */
  localFetch?: "disabled" | "auto" | "zerocopy";
  /** `--storage-root`: containers-storage graphroot (default: storage.conf, then /var/lib/containers/storage). */
  storageRoot?: string;
  /** `--storage-trust-diff-ids`: containers-storage layers are not re-hashed against their diff_id. */
  trustStorageDiffIds?: boolean;
  /** Told when a containers-storage lock is held for writing and the pull waits for it (path, holder pid). */
  onStorageLockWait?: (path: string, holderPid?: number) => void;
}
