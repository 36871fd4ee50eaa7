// The system libzstd's streaming API through FFI, as an independent reference encoder: it is
// driven the way the Rust `zstd` crate's write::Encoder drives it (ZSTD_e_continue for every
// write, then ZSTD_e_end with no input), which is how composefs-rs compresses splitstreams.
const CANDIDATES = ["/usr/lib/x86_64-linux-gnu/libzstd.so.1", "/usr/lib64/libzstd.so.1", "libzstd.so.1"];

type Lib = Deno.DynamicLibrary<{
  ZSTD_createCCtx: { parameters: []; result: "pointer" };
  ZSTD_freeCCtx: { parameters: ["pointer"]; result: "usize" };
  ZSTD_CCtx_setParameter: { parameters: ["pointer", "i32", "i32"]; result: "usize" };
  ZSTD_compressStream2: { parameters: ["pointer", "buffer", "buffer", "i32"]; result: "usize" };
  ZSTD_isError: { parameters: ["usize"]; result: "u32" };
  ZSTD_versionNumber: { parameters: []; result: "u32" };
}>;

let lib: Lib | null | undefined;

function load(): Lib | null {
  if (lib !== undefined) return lib;
  lib = null;
  for (const path of CANDIDATES) {
    try {
      lib = Deno.dlopen(path, {
        ZSTD_createCCtx: { parameters: [], result: "pointer" },
        ZSTD_freeCCtx: { parameters: ["pointer"], result: "usize" },
        ZSTD_CCtx_setParameter: { parameters: ["pointer", "i32", "i32"], result: "usize" },
        ZSTD_compressStream2: { parameters: ["pointer", "buffer", "buffer", "i32"], result: "usize" },
        ZSTD_isError: { parameters: ["usize"], result: "u32" },
        ZSTD_versionNumber: { parameters: [], result: "u32" },
      }) as Lib;
      break;
    } catch {
      // try the next one
    }
  }
  return lib;
}

export const hasLibzstd: boolean = (() => {
  try {
    return load() !== null;
  } catch {
    return false;
  }
})();

/** e.g. 10504 for 1.5.4 */
export function libzstdVersion(): number {
  return load()!.symbols.ZSTD_versionNumber();
}

const ZSTD_c_compressionLevel = 100;
const ZSTD_e_continue = 0;
const ZSTD_e_end = 2;

/** Compresses `writes` in order with the streaming API at `level`; returns the frame. */
export function libzstdStreamCompress(writes: Uint8Array[], level = 3): Uint8Array {
  const l = load();
  if (!l) throw new Error("libzstd not available");
  const s = l.symbols;
  const cctx = s.ZSTD_createCCtx();
  const check = (r: number | bigint) => {
    if (s.ZSTD_isError(BigInt(r))) throw new Error(`libzstd error ${r}`);
    return Number(r);
  };
  const outBuf = new Uint8Array(1 << 20);
  const outPtr = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(outBuf)));
  const outs: Uint8Array[] = [];
  const spare = new Uint8Array(1);
  try {
    check(s.ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level));
    const run = (chunk: Uint8Array, mode: number) => {
      const src = chunk.length > 0 ? chunk : spare;
      const inB = new BigUint64Array([
        BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(src))),
        BigInt(chunk.length),
        0n,
      ]);
      for (;;) {
        const outB = new BigUint64Array([outPtr, BigInt(outBuf.length), 0n]);
        const left = check(
          s.ZSTD_compressStream2(cctx, new Uint8Array(outB.buffer), new Uint8Array(inB.buffer), mode),
        );
        outs.push(outBuf.slice(0, Number(outB[2])));
        if (mode === ZSTD_e_end ? left === 0 : inB[2] === inB[1]) break;
      }
    };
    for (const w of writes) if (w.length > 0) run(w, ZSTD_e_continue);
    run(new Uint8Array(0), ZSTD_e_end);
  } finally {
    s.ZSTD_freeCCtx(cctx);
  }
  const n = outs.reduce((a, b) => a + b.length, 0);
  const out = new Uint8Array(n);
  let p = 0;
  for (const o of outs) {
    out.set(o, p);
    p += o.length;
  }
  return out;
}
