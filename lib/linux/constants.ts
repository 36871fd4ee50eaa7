// Every kernel constant the project passes to or reads from a system call, in one place: open
// flags, *at() flags, errno values, file-type bits, ioctl numbers and the mount/loop/socket API
// values. x86_64 values (asm-generic agrees on all of them except the system call numbers, which
// are x86_64 only). The FFI files in this room import from here; nothing else defines them.

// ---- open(2) flags -----------------------------------------------------------------------------------
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;
/** O_TMPFILE includes O_DIRECTORY (so old kernels fail instead of creating a file). */
export const O_TMPFILE = 0o20000000 | O_DIRECTORY;

// ---- *at() and friends -----------------------------------------------------------------------------
export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_SYMLINK_FOLLOW = 0x400;
export const AT_EMPTY_PATH = 0x1000;
export const AT_REMOVEDIR = 0x200;
export const AT_RECURSIVE = 0x8000;
export const RENAME_NOREPLACE = 1;
export const W_OK = 2;
/** statvfs f_flag: mounted read-only. */
export const ST_RDONLY = 1;
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
export const STATX_BASIC_STATS = 0x7ff;
/** openat2(2): the same system call number on x86_64 and aarch64 (unified table). */
export const SYS_OPENAT2 = 437;
/** struct open_how: u64 flags, u64 mode, u64 resolve. */
export const OPEN_HOW_SIZE = 24;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const POSIX_FADV_WILLNEED = 3;
// getdents64 d_type values (the kernel's DT_*; DT_UNKNOWN: the filesystem does not say, ask statx).
export const DT_UNKNOWN = 0;
export const DT_DIR = 4;
export const DT_REG = 8;
export const DT_LNK = 10;

// ---- file type bits of st_mode (also the type bits of tar, dumpfile and EROFS modes) ---------------
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

// ---- errno -----------------------------------------------------------------------------------------------
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  ENOTBLK: 15,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  EDQUOT: 122,
  EKEYREJECTED: 129,
} as const;

// ---- ioctls ----------------------------------------------------------------------------------------------
export const FICLONE = 0x40049409n;
export const FS_IOC_ENABLE_VERITY = 0x40806685;
export const FS_IOC_MEASURE_VERITY = 0xc0046686;
/** FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap) */
export const FS_IOC_FIEMAP = 0xC020660Bn;
export const FIEMAP_FLAG_SYNC = 1;
export const FIEMAP_EXTENT_LAST = 0x1;
export const FIEMAP_EXTENT_SHARED = 0x2000;
export const LOOP_CTL_GET_FREE = 0x4c82;
export const LOOP_CONFIGURE = 0x4c0a;
export const LOOP_CLR_FD = 0x4c01;
export const LO_FLAGS_READ_ONLY = 1;
export const LO_FLAGS_AUTOCLEAR = 4;
export const LO_FLAGS_PARTSCAN = 8;
export const LO_FLAGS_DIRECT_IO = 16;

// ---- the mount API -----------------------------------------------------------------------------------
/** x86_64 system call numbers (glibc before 2.36 has no wrappers). */
export const SYS_OPEN_TREE = 428;
export const SYS_MOVE_MOUNT = 429;
export const SYS_FSOPEN = 430;
export const SYS_FSCONFIG = 431;
export const SYS_FSMOUNT = 432;
export const SYS_MOUNT_SETATTR = 442;
export const FSOPEN_CLOEXEC = 0x1;
export const FSMOUNT_CLOEXEC = 0x1;
export const FSCONFIG_SET_FLAG = 0;
export const FSCONFIG_SET_STRING = 1;
export const FSCONFIG_SET_FD = 5;
export const FSCONFIG_CMD_CREATE = 6;
export const MOUNT_ATTR_RDONLY = 0x1;
export const MOUNT_ATTR_NOSUID = 0x2;
export const MOUNT_ATTR_NODEV = 0x4;
export const MOUNT_ATTR_NOEXEC = 0x8;
export const MOUNT_ATTR_IDMAP = 0x100000;
export const MOVE_MOUNT_F_EMPTY_PATH = 0x4;
export const OPEN_TREE_CLONE = 0x1;
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;

// ---- sockets and fcntl -----------------------------------------------------------------------------
export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_SEQPACKET = 5;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_TYPE = 3;
export const SO_ACCEPTCONN = 30;
export const SCM_RIGHTS = 1;
export const SHUT_RDWR = 2;
export const F_GETFD = 1;
export const F_SETFD = 2;
export const FD_CLOEXEC = 1;
export const F_SETPIPE_SZ = 1031;
/** Open-file-description record locks (Linux 3.15): owned by the open file, not the process. */
export const F_OFD_GETLK = 36;
export const F_OFD_SETLK = 37;
export const F_OFD_SETLKW = 38;
/** struct flock l_type values. */
export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;
export const SEEK_SET = 0;
/** struct flock (x86_64): short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid. */
export const FLOCK_SIZE = 32;
export const FLOCK_TYPE_OFFSET = 0;
export const FLOCK_WHENCE_OFFSET = 2;
export const FLOCK_START_OFFSET = 8;
export const FLOCK_LEN_OFFSET = 16;
export const FLOCK_PID_OFFSET = 24;
export const MSG_CTRUNC = 0x08;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CMSG_CLOEXEC = 0x40000000;

// ---- poll(2) -----------------------------------------------------------------------------------------
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
