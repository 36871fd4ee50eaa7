// What the containers-storage import and the directory walk (lib/tree/walk_ahead.ts) need from the
// kernel beyond lib/linux/fs.ts, fs_at.ts and openat2.ts: read-ahead hints (POSIX_FADV_WILLNEED) and
// FIEMAP (which physical extents a file occupies: tests and docs/containers-storage.md use it to show
// that a reflinked object shares its blocks with the source). FICLONE itself lives in lib/linux/fs.ts
// (ficlone), opening below diff/ in openat2.ts (openBeneath), statx of an fd in fs_at.ts (statFd).
import { check, openLibc } from "./libc.ts";
import { FIEMAP_EXTENT_LAST, FIEMAP_FLAG_SYNC, FS_IOC_FIEMAP, POSIX_FADV_WILLNEED } from "./constants.ts";
export { FIEMAP_EXTENT_SHARED } from "./constants.ts";
export { pathSize } from "./fs_at.ts";

const symbols = {
  ioctl_buf: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
} as const;

function lib() {
  return openLibc(symbols);
}

/**
 * Asks the kernel to start reading the file's first `length` bytes (0: all of it) into the page cache
 * now (POSIX_FADV_WILLNEED): reads of many files then overlap. Only a hint: failures are ignored.
 */
export function willNeed(fd: number, length = 0): void {
  lib().posix_fadvise(fd, 0n, BigInt(length), POSIX_FADV_WILLNEED);
}

export interface Extent {
  logical: number;
  physical: number;
  length: number;
  flags: number;
}

/** The file's extents (FS_IOC_FIEMAP with FIEMAP_FLAG_SYNC), in logical order. */
export function fileExtents(fd: number): Extent[] {
  const out: Extent[] = [];
  const PER_CALL = 256;
  const buf = new Uint8Array(32 + 56 * PER_CALL);
  const v = new DataView(buf.buffer);
  let start = 0n;
  for (;;) {
    buf.fill(0);
    v.setBigUint64(0, start, true);
    v.setBigUint64(8, 0xffffffffffffffffn, true);
    v.setUint32(16, FIEMAP_FLAG_SYNC, true);
    v.setUint32(24, PER_CALL, true);
    check("ioctl(FS_IOC_FIEMAP)", lib().ioctl_buf(fd, FS_IOC_FIEMAP, buf), `fd ${fd}`);
    const n = v.getUint32(20, true);
    if (n === 0) return out;
    let last = false;
    for (let i = 0; i < n; i++) {
      const o = 32 + 56 * i;
      const e = {
        logical: Number(v.getBigUint64(o, true)),
        physical: Number(v.getBigUint64(o + 8, true)),
        length: Number(v.getBigUint64(o + 16, true)),
        flags: v.getUint32(o + 40, true),
      };
      out.push(e);
      if (e.flags & FIEMAP_EXTENT_LAST) last = true;
    }
    if (last) return out;
    const end = out[out.length - 1];
    start = BigInt(end.logical + end.length);
  }
}
