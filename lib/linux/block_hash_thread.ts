// The body of a hashing thread: reads byte ranges of open file descriptors with pread(2) and hashes
// every 4096-byte block of them on its own (the last, short block zero-padded), returning the block
// digests back to back. This is the leaf level of the fs-verity Merkle tree (docs/fsverity.md#digest),
// the only level where the data itself is hashed: disjoint ranges of one file, or many whole files,
// can be hashed on several of these threads at once and the small upper levels finished by the caller
// (lib/fsverity/leaf_pool.ts).
//
// File descriptors are process-wide, so the caller's fds are read here directly: no file data crosses
// between threads, only the digests (32 or 64 bytes per 4 KiB). Digests and the bytes of stream
// requests travel in SharedArrayBuffers that come with each request, the messages themselves stay
// tiny: Deno's node:worker_threads serialises a Uint8Array element by element (measured ~100 ms per
// MiB, transferred or not), a SharedArrayBuffer by reference (~0.1 ms per message whatever its size). The function runs from its source
// text in a fresh isolate (node:worker_threads `eval`, so it works from the single-file bundle): only
// its arguments and globals (Deno FFI, `require`) are available. libcrypto's EVP_Digest is called with
// bigint addresses (the FFI fast-call path, see libcrypto.ts); without libcrypto or FFI, node:crypto.

/** One range to hash: fd, byte offset (a multiple of 4096), length in bytes. */
export type BlockHashJob = [fd: number, offset: number, length: number];

/**
 * `count` jobs, in `buf`: first as float64 triplets (fd, offset, length), then from byte 24 × count
 * ceil(length / 4096) digests per job, jobs back to back, written by the thread. (Arrays in a
 * message cost far more than a number each; see above.)
 */
export interface BlockHashRequest {
  seq: number;
  kind: "blocks";
  alg: "sha256" | "sha512";
  count: number;
  buf: SharedArrayBuffer;
}

/**
 * One plain digest (node:crypto createHash: sha256, sha512) of a concatenation: bytes as given, and
 * whole files named by path (each opened O_NOFOLLOW and read to its end). A splitstream's content
 * digest: inline runs and the objects between them.
 */
export interface StreamHashRequest {
  seq: number;
  kind: "stream";
  alg: string;
  /** Byte ranges [start, end) of `data`, and file paths. */
  parts: ([number, number] | string)[];
  data: SharedArrayBuffer;
  /** Receives the digest. */
  out: SharedArrayBuffer;
}

export interface BlockHashReply {
  /** -1 with `ready`: the thread has finished setting up (sent once, first). */
  seq: number;
  ready?: boolean;
  /** When a job failed: its index, the errno (0 for a short file) and a message. */
  error?: { job: number; errno: number; message: string };
}

/** Source text of the thread; `useLibcrypto` false forces node:crypto. */
export function blockHashThreadSource(useLibcrypto: boolean): string {
  return `const wt = require("node:worker_threads"); (${blockHashMain.toString()})(wt, require, ${useLibcrypto}, ${fileBlockHasher.toString()});`;
}

/** Where hashJob reads a file to, instead of fileBlockHasher's own buffer (see hashJob). */
export interface ReadTarget {
  /** The buffer, and its address (it must not move: off-heap or a SharedArrayBuffer). */
  bytes: Uint8Array;
  addr: bigint;
  /** Where in it the file's first byte goes. */
  off: number;
}

/** What fileBlockHasher gives a thread. */
export interface FileBlockHasher {
  /** The read buffer: CHUNK bytes, and one block more (see hashJob's `checkEnd`). */
  buf: Uint8Array;
  CHUNK: number;
  errno: () => number;
  /** The address of a buffer that does not move (an off-heap one, or a SharedArrayBuffer's). */
  addressOf: (b: Uint8Array) => bigint;
  /**
   * Fills buf[0..want) (or `at`, an address) from fd at off; returns the bytes read (short only at
   * end of file). With `shortIsEnd`, a short read is taken as the end (true of regular files)
   * without asking again.
   */
  readFull(fd: number, off: number, want: number, shortIsEnd?: boolean, at?: bigint): number;
  /**
   * Writes the digests of the 4096-byte blocks of fd's [offset, offset + length) into dst at `at`
   * (the last block zero-padded). A file that ends early throws (errno 0). With `checkEnd`, the last
   * read asks for one byte more, so a file longer than offset + length throws too, without another
   * call. With `into`, the whole range is read into that buffer (which needs room for it rounded up
   * to 4096, and one byte more with `checkEnd`) and stays there for the caller.
   */
  hashJob(
    alg: string,
    fd: number,
    offset: number,
    length: number,
    dst: Uint8Array,
    at: number,
    checkEnd?: boolean,
    into?: ReadTarget,
  ): void;
}

/**
 * The file-hashing core every hashing thread of this room shares: pread(2) into an off-heap
 * buffer, one digest per 4096-byte block with libcrypto's EVP_Digest (bigint addresses: the FFI
 * fast-call path, see libcrypto.ts), node:crypto when libcrypto or FFI is missing. Passed to a thread
 * as source text beside its main function, so it too may use only its arguments and globals.
 */
// long: one closure over the buffers and bindings it sets up: the binding, the two hashChunk
// variants, readFull and hashJob.
// deno-lint-ignore no-explicit-any
export function fileBlockHasher(D: any, req: any, useLibcrypto: boolean): FileBlockHasher {
  const BLOCK = 4096;
  const CHUNK = 1 << 20;
  const EINTR = 4;
  const DS: Record<string, number> = { sha256: 32, sha512: 64 };
  const libc = D.dlopen("libc.so.6", {
    pread64: { parameters: ["i32", "usize", "usize", "i64"], result: "isize" },
    __errno_location: { parameters: [], result: "pointer" },
  }).symbols;
  const errno = () => new D.UnsafePointerView(libc.__errno_location()).getInt32(0);
  const addressOf = (b: Uint8Array) => BigInt(D.UnsafePointer.value(D.UnsafePointer.of(b)));
  const buf = new Uint8Array(CHUNK + BLOCK); // off-heap (large): its address is stable
  const bufAddr = addressOf(buf);
  // Digest output for one chunk (256 blocks × 64 bytes), off-heap as well.
  const out = new Uint8Array((CHUNK / BLOCK) * 64);
  const outAddr = addressOf(out);

  /** Hashes `blocks` 4096-byte blocks from address `src` into `out`; `data` is the same bytes. */
  let hashChunk: (alg: string, blocks: number, src: bigint, data: Uint8Array) => void;
  let crypto: { evp: (...a: bigint[]) => number; md: Record<string, bigint> } | null = null;
  if (useLibcrypto) {
    try {
      const lib = D.dlopen("libcrypto.so.3", {
        EVP_MD_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
        EVP_Digest: { parameters: ["usize", "usize", "usize", "usize", "usize", "usize"], result: "i32" },
      }).symbols;
      const fetch = (n: string) =>
        BigInt(D.UnsafePointer.value(lib.EVP_MD_fetch(null, new TextEncoder().encode(n + "\0"), null)));
      crypto = { evp: lib.EVP_Digest, md: { sha256: fetch("SHA256"), sha512: fetch("SHA512") } };
    } catch {
      crypto = null;
    }
  }
  if (crypto) {
    const { evp, md } = crypto;
    hashChunk = (alg, blocks, src) => {
      const type = md[alg];
      const ds = BigInt(DS[alg]);
      const bs = BigInt(BLOCK);
      for (let i = 0n, n = BigInt(blocks); i < n; i++) {
        if (evp(src + i * bs, bs, outAddr + i * ds, 0n, type, 0n) !== 1) {
          throw new Error("EVP_Digest failed");
        }
      }
    };
  } else {
    const nodeCrypto = req("node:crypto");
    hashChunk = (alg, blocks, _src, data) => {
      const ds = DS[alg];
      for (let i = 0; i < blocks; i++) {
        out.set(
          nodeCrypto.createHash(alg).update(data.subarray(i * BLOCK, (i + 1) * BLOCK)).digest(),
          i * ds,
        );
      }
    };
  }

  function readFull(fd: number, off: number, want: number, shortIsEnd = false, at = bufAddr): number {
    let got = 0;
    while (got < want) {
      const n = Number(libc.pread64(fd, at + BigInt(got), BigInt(want - got), BigInt(off + got)));
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        throw Object.assign(new Error(`pread fd ${fd}`), { errno: e });
      }
      got += n;
      if (n === 0 || (shortIsEnd && got < want)) break;
    }
    return got;
  }

  function hashJob(
    alg: string,
    fd: number,
    offset: number,
    length: number,
    dst: Uint8Array,
    at: number,
    checkEnd = false,
    into?: ReadTarget,
  ): void {
    const ds = DS[alg];
    for (let done = 0; done < length || (checkEnd && length === 0);) {
      const want = Math.min(CHUNK, length - done);
      const last = done + want === length;
      const extra = checkEnd && last ? 1 : 0;
      const where = into ? into.off + done : 0;
      const bytes = into ? into.bytes : buf;
      const addr = into ? into.addr + BigInt(where) : bufAddr;
      const got = readFull(fd, offset + done, want + extra, extra === 1, addr);
      if (got < want) {
        throw Object.assign(
          new Error(`fd ${fd}: file ended at ${offset + done + got}, expected ${offset + length}`),
          { errno: 0 },
        );
      }
      if (got > want) {
        throw Object.assign(new Error(`fd ${fd}: file grew beyond ${offset + length} bytes`), { errno: 0 });
      }
      if (want === 0) return;
      const blocks = Math.ceil(want / BLOCK);
      if (want % BLOCK !== 0) bytes.fill(0, where + want, where + blocks * BLOCK);
      hashChunk(alg, blocks, addr, bytes.subarray(where, where + blocks * BLOCK));
      dst.set(out.subarray(0, blocks * ds), at);
      at += blocks * ds;
      done += want;
    }
  }

  return { buf, CHUNK, errno, addressOf, readFull, hashJob };
}

// The thread runs this function from its source text, so everything it uses must be inside it (or in
// fileBlockHasher, passed beside it).
// deno-lint-ignore no-explicit-any
function blockHashMain(wt: any, req: any, useLibcrypto: boolean, hasher: typeof fileBlockHasher): void {
  // deno-lint-ignore no-explicit-any
  const D = (globalThis as any).Deno;
  const BLOCK = 4096;
  const DS: Record<string, number> = { sha256: 32, sha512: 64 };
  const libc = D.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  }).symbols;
  const { buf, CHUNK, errno, readFull, hashJob } = hasher(D, req, useLibcrypto);

  const enc = new TextEncoder();
  const O_RDONLY_NOFOLLOW_CLOEXEC = 0o400000 | 0o2000000;

  function hashStream(m: StreamHashRequest): void {
    const h = req("node:crypto").createHash(m.alg);
    const data = new Uint8Array(m.data);
    for (let k = 0; k < m.parts.length; k++) {
      const part = m.parts[k];
      if (typeof part !== "string") {
        h.update(data.subarray(part[0], part[1]));
        continue;
      }
      const fd = libc.open(enc.encode(part + "\0"), O_RDONLY_NOFOLLOW_CLOEXEC, 0);
      if (fd < 0) {
        const e = errno();
        wt.parentPort.postMessage({ seq: m.seq, error: { job: k, errno: e, message: `open ${part}` } });
        return;
      }
      try {
        for (let off = 0;;) {
          const got = readFull(fd, off, CHUNK);
          if (got > 0) h.update(buf.subarray(0, got));
          if (got < CHUNK) break;
          off += got;
        }
      } catch (e) {
        // deno-lint-ignore no-explicit-any
        const err = e as any;
        wt.parentPort.postMessage({
          seq: m.seq,
          error: { job: k, errno: err.errno ?? 0, message: `${part}: ${err.message}` },
        });
        return;
      } finally {
        libc.close(fd);
      }
    }
    new Uint8Array(m.out).set(h.digest());
    wt.parentPort.postMessage({ seq: m.seq });
  }

  wt.parentPort.on("message", (m: BlockHashRequest | StreamHashRequest) => {
    if (m.kind === "stream") return hashStream(m);
    const ds = DS[m.alg];
    const jobs = new Float64Array(m.buf, 0, 3 * m.count);
    const digests = new Uint8Array(m.buf, 24 * m.count);
    let at = 0;
    for (let k = 0; k < m.count; k++) {
      const fd = jobs[3 * k], offset = jobs[3 * k + 1], length = jobs[3 * k + 2];
      try {
        hashJob(m.alg, fd, offset, length, digests, at);
      } catch (e) {
        // deno-lint-ignore no-explicit-any
        const err = e as any;
        wt.parentPort.postMessage({
          seq: m.seq,
          error: { job: k, errno: err.errno ?? 0, message: String(err.message) },
        });
        return;
      }
      at += Math.ceil(length / BLOCK) * ds;
    }
    wt.parentPort.postMessage({ seq: m.seq });
  });
  // Set up (libraries loaded): the owner may now stop the process safely (lib/util/shutdown.ts).
  wt.parentPort.postMessage({ seq: -1, ready: true });
}
