// The varlink interface descriptions served by org.varlink.service.GetInterfaceDescription. The
// composefs ones are the files next to this one (lib/varlink/*.varlink, kept identical by
// test/varlink_api_test.ts), inlined so the single-file binary carries them.

/** The interface names. */
export const IFACE = {
  service: "org.varlink.service",
  repository: "org.composefs.Repository",
  oci: "org.composefs.Oci",
} as const;

// The fields of a repository check (the FsckReply and RepoFsck types, and the reply of Fsck, which
// as a method's reply cannot name a type).
const FSCK_FIELDS = `  ok: bool,
  has_metadata: bool,
  objects_checked: int,
  objects_corrupted: int,
  streams_checked: int,
  streams_corrupted: int,
  images_checked: int,
  images_corrupted: int,
  broken_links: int,
  missing_objects: int,
  errors: []string`;

export const SERVICE_INTERFACE = `# The varlink service interface (https://varlink.org/Service).
interface org.varlink.service

method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

method GetInterfaceDescription(interface: string) -> (description: string)

error InterfaceNotFound (interface: string)
error MethodNotFound (method: string)
error MethodNotImplemented (method: string)
error InvalidParameter (parameter: string)
error PermissionDenied ()
error ExpectedMore ()
`;

export const REPOSITORY_INTERFACE =
  `# composefs repositories, served by \`cfsctl varlink\` (docs/varlink.md). Repositories are addressed
# by handles from OpenRepository: integers from 1, never reused within one server process.
interface org.composefs.Repository

# The result of a consistency check (the fields of \`cfsctl fsck --json\`).
type FsckReply (
${FSCK_FIELDS}
)

# What a garbage collection removed (or would remove, in a dry run).
type GcResult (
  objects_removed: int,
  objects_bytes: int,
  images_pruned: int,
  streams_pruned: int
)

# Creates a repository at path, or accepts an identical one that exists (created: false).
# algorithm: fsverity-sha512-12 (default) or fsverity-sha256-12.
method InitRepository(path: string, algorithm: ?string, insecure: ?bool) -> (created: bool)

# Opens a repository; exactly one of path, user ($HOME/.var/lib/composefs), system (/sysroot/composefs).
method OpenRepository(path: ?string, user: ?bool, system: ?bool) -> (handle: int)

# Releases a handle.
method CloseRepository(handle: int) -> ()

# Checks the repository; metadata_only skips re-hashing the objects.
method Fsck(handle: int, metadata_only: ?bool) -> (
${FSCK_FIELDS}
)

# Removes what no image, stream or root refers to (roots: names under images/ or streams/).
method Gc(handle: int, dry_run: bool, roots: []string) -> (result: GcResult, dry_run: bool)

# The objects an image refers to, sorted (sha512:<hex> / sha256:<hex>).
method ImageObjects(handle: int, name: string) -> (object_ids: []string)

# How to mount: overlay = a writable layer whose upper and work directories come as two descriptors
# with the call (in that order); read_write needs overlay.
type MountOptions (overlay: ?bool, read_write: ?bool)

# Mounts an image (hex id or refs/NAME) as a detached mount: its descriptor comes with the reply,
# at index fd_index of the passed descriptors (attach it with move_mount(2)). Needs CAP_SYS_ADMIN.
method Mount(handle: int, name: string, options: ?MountOptions) -> (fd_index: int)

error RepoNotFound (message: string)
error InvalidHandle (handle: int)
error InvalidSpec (message: string)
error NoSuchRef (reference: string)
error InternalError (message: string)
`;

export const OCI_INTERFACE =
  `# OCI images in a composefs repository, served by \`cfsctl varlink\` (docs/varlink.md). Handles come
# from org.composefs.Repository.OpenRepository.
interface org.composefs.Oci

type ImageEntry (
  name: string,
  manifest_digest: string,
  is_container: bool,
  architecture: string,
  os: string,
  created: ?string,
  layer_count: int,
  referrer_count: int
)

type RepoFsck (
${FSCK_FIELDS}
)

type ProgressUnit (Bytes, Items)

type Started (id: string, total: ?int, unit: ProgressUnit)

type Progress (id: string, fetched: int, total: ?int)

type Skipped (id: string)

type Done (id: string, transferred: int)

type Completed (
  manifest_digest: string,
  config_digest: string,
  manifest_verity: string,
  config_verity: string,
  stats: string,
  boot_image: ?string
)

# Tagged images; filter keeps names containing that substring.
method ListImages(handle: int, filter: ?string) -> (images: []ImageEntry)

# The repository check plus the OCI checks of every tagged image (or of image).
method Check(handle: int, image: ?string) -> (
  ok: bool,
  images_checked: int,
  images_corrupted: int,
  errors: []string,
  repo: RepoFsck
)

# An image's stored manifest and config (raw JSON text) and its composefs image ids.
method Inspect(handle: int, image: string) -> (
  manifest: string,
  config: string,
  referrers: []string,
  composefs_erofs: ?string,
  composefs_boot_erofs: ?string
)

method Tag(handle: int, manifest_digest: string, name: string) -> ()

method Untag(handle: int, name: string) -> ()

# The composefs image id of a tag (or @sha256:<config digest> with the config stream's verity);
# bootable: of the tree after the boot transform (/boot and /sysroot emptied, SELinux labels).
method ComputeId(handle: int, image: string, verity: ?string, bootable: bool) -> (image_id: string)

# Pulls an image (any transport \`cfsctl oci pull\` takes). With "more", progress frames (one field
# set each) precede the final frame, which has \`completed\`. local_fetch: how containers-storage:
# is read (disabled: through skopeo, auto: in place by reflink, hard link or copy, zerocopy: in
# place or fail); storage_root: its graphroot, an absolute path (default: storage.conf's).
# bootable: also build and link the boot image (its id in boot_image). A client that hangs up
# while the pull fetches cancels it: no image, stream or tag of it is written.
method Pull(
  handle: int,
  image: string,
  name: ?string,
  local_fetch: string,
  storage_root: ?string,
  bootable: bool
) -> (
  started: ?Started,
  progress: ?Progress,
  skipped: ?Skipped,
  done: ?Done,
  message: ?string,
  completed: ?Completed
)

# As org.composefs.Repository.MountOptions.
type MountOptions (overlay: ?bool, read_write: ?bool)

# Mounts the composefs image of a tag (or sha256:<manifest digest>) as a detached mount, passed back
# like org.composefs.Repository.Mount. bootable: the boot image (linked by a bootable Pull).
method OciMount(handle: int, image: string, bootable: bool, options: ?MountOptions) -> (fd_index: int)

error RepoNotFound (message: string)
error InvalidHandle (handle: int)
error NoSuchImage (image: string)
error InternalError (message: string)
`;

export const INTERFACES: Record<string, string> = {
  [IFACE.service]: SERVICE_INTERFACE,
  [IFACE.repository]: REPOSITORY_INTERFACE,
  [IFACE.oci]: OCI_INTERFACE,
};
