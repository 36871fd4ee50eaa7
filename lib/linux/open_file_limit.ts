// The process's limit on open descriptors (RLIMIT_NOFILE, soft). Code that holds descriptors open
// ahead of need (lib/tree/walk_ahead.ts) asks first, so that a low limit (`ulimit -n 64` in a small
// container or initramfs) leaves the descriptors to the rest of the process instead.
import { openLibc } from "./libc.ts";

const RLIMIT_NOFILE = 7;

const symbols = {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

let cached: number | undefined;

/** The soft RLIMIT_NOFILE (Infinity when unlimited; 0 when it cannot be read, the cautious answer). */
export function openFileLimit(): number {
  if (cached !== undefined) return cached;
  const buf = new BigUint64Array(2); // struct rlimit { rlim_cur, rlim_max }
  if (openLibc(symbols).getrlimit(RLIMIT_NOFILE, new Uint8Array(buf.buffer)) !== 0) return (cached = 0);
  // RLIM_INFINITY is all ones.
  cached = buf[0] === 0xffffffffffffffffn ? Infinity : Number(buf[0]);
  return cached;
}
