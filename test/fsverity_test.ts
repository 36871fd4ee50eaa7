// fs-verity digests: spec vectors, agreement with Debian's C `fsverity digest` for both hash
// backends, incremental feeding in odd chunk sizes.
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { hashBackendName, libcryptoAvailable, setHashBackend } from "../lib/fsverity/backend.ts";
import { fsverityDigest, FsVerityHasher, verityDescriptor } from "../lib/fsverity/hasher.ts";
import { fsverityDigestFile, fsverityDigestReader } from "../lib/fsverity/digest_file.ts";
import type { HashAlgorithm } from "../lib/fsverity/object_id.ts";

const enc = new TextEncoder();
const BACKENDS = ["libcrypto", "node:crypto"] as const;
const ALGS: HashAlgorithm[] = ["sha256", "sha512"];

function haveTool(name: string): boolean {
  try {
    return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}
const haveFsverity = haveTool("fsverity");

/** Runs body with the backend forced, restoring "auto" afterwards. */
function withBackend<T>(b: (typeof BACKENDS)[number], body: () => T): T {
  setHashBackend(b);
  try {
    return body();
  } finally {
    setHashBackend("auto");
  }
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  return out;
}

/** Digest by the independent C tool: "sha256:<hex> <path>". */
async function cDigest(path: string, alg: HashAlgorithm): Promise<string> {
  const out = await new Deno.Command("fsverity", { args: ["digest", `--hash-alg=${alg}`, path] }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  const m = /^(sha256|sha512):([0-9a-f]+) /.exec(new TextDecoder().decode(out.stdout));
  assert(m, "unexpected fsverity output");
  return m[2];
}

const PINNED: [string, Uint8Array, HashAlgorithm, string][] = [
  [
    "hello world",
    enc.encode("hello world"),
    "sha256",
    "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
  ],
  [
    "hello world",
    enc.encode("hello world"),
    "sha512",
    "18430270729d162d4e469daca123ae61893db4b0583d8f7081e3bf4f92b88ba5" +
    "14e7982f10733fb6aa895195c5ae8fd2eb2c47a8be05513ce5a0c51a6f570409",
  ],
  ["empty", new Uint8Array(0), "sha256", "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"],
  [
    "4096 zero bytes",
    new Uint8Array(4096),
    "sha256",
    "babc284ee4ffe7f449377fbf6692715b43aec7bc39c094a95878904d34bac97e",
  ],
];

for (const backend of BACKENDS) {
  const ignore = backend === "libcrypto" && !libcryptoAvailable();
  Deno.test({
    name: `fsverity: pinned spec vectors (${backend})`,
    ignore,
    fn() {
      withBackend(backend, () => {
        assertEquals(hashBackendName(), backend);
        for (const [what, data, alg, hex] of PINNED) {
          const id = fsverityDigest(data, alg);
          assertEquals(id.hex(), hex, `${what} ${alg}`);
          assertEquals(id.alg, alg);
        }
      });
    },
  });

  Deno.test({
    name: `fsverity: matches C fsverity digest on random files (${backend})`,
    ignore: ignore || !haveFsverity,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "fsverity-test-" });
      try {
        const sizes = [0, 1, 4095, 4096, 4097, 1048577, 64 << 20, (64 << 20) + 4097];
        for (const size of sizes) {
          const path = `${dir}/f${size}`;
          await Deno.writeFile(path, randomBytes(size));
          for (const alg of ALGS) {
            const expected = await cDigest(path, alg);
            setHashBackend(backend);
            try {
              assertEquals((await fsverityDigestFile(path, alg)).hex(), expected, `file ${size} ${alg}`);
              if (size <= 1048577) {
                assertEquals(fsverityDigest(await Deno.readFile(path), alg).hex(), expected, `mem ${size}`);
              }
            } finally {
              setHashBackend("auto");
            }
          }
          await Deno.remove(path);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });

  Deno.test({
    name: `fsverity: incremental feeding in odd chunk sizes (${backend})`,
    ignore: ignore || !haveFsverity,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "fsverity-test-" });
      try {
        // > 64 hashes per level for SHA-512 and > 128 for SHA-256: at least two tree levels, and a
        // partial last block.
        const data = randomBytes(3 * 1048576 + 12345);
        const path = `${dir}/data`;
        await Deno.writeFile(path, data);
        for (const alg of ALGS) {
          const expected = await cDigest(path, alg);
          withBackend(backend, () => {
            for (const chunk of [1, 7, 4095, 4096, 4097, 65537]) {
              const h = new FsVerityHasher(alg);
              // One-byte feeding on the whole 3 MiB is slow; feed 1-byte chunks over a prefix only.
              let o = 0;
              for (; o < data.length; o += chunk) {
                h.update(data.subarray(o, Math.min(data.length, o + chunk)));
                if (chunk === 1 && o > 20000) {
                  h.update(data.subarray(o + 1));
                  break;
                }
              }
              assertEquals(h.size, data.length);
              assertEquals(h.digest().hex(), expected, `chunk ${chunk} ${alg}`);
            }
          });
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });

  Deno.test({
    name: `fsverity: digest() mid-stream leaves the state intact (${backend})`,
    ignore,
    fn() {
      withBackend(backend, () => {
        const data = randomBytes(600 * 4096 + 100);
        for (const alg of ALGS) {
          const whole = fsverityDigest(data, alg);
          const h = new FsVerityHasher(alg);
          for (const cut of [0, 5000, 4096 * 130, 4096 * 300 + 1, data.length]) {
            h.update(data.subarray(h.size, cut));
            assertEquals(h.digest().hex(), fsverityDigest(data.subarray(0, cut), alg).hex(), `prefix ${cut}`);
          }
          assertEquals(h.digest().hex(), whole.hex());
        }
      });
    },
  });
}

Deno.test("fsverity: both backends agree on a 5 MiB buffer", { ignore: !libcryptoAvailable() }, () => {
  const data = randomBytes(5 << 20);
  for (const alg of ALGS) {
    const a = withBackend("libcrypto", () => fsverityDigest(data, alg).hex());
    const b = withBackend("node:crypto", () => fsverityDigest(data, alg).hex());
    assertEquals(a, b);
  }
});

Deno.test("fsverity: descriptor layout", () => {
  const root = new Uint8Array(32).fill(0xab);
  const d = verityDescriptor("sha256", 0x0102030405, root);
  assertEquals(d.length, 256);
  assertEquals([...d.subarray(0, 16)], [1, 1, 12, 0, 0, 0, 0, 0, 5, 4, 3, 2, 1, 0, 0, 0]);
  assertEquals([...d.subarray(16, 48)], new Array(32).fill(0xab));
  assert(d.subarray(48).every((b) => b === 0));
  assertEquals(verityDescriptor("sha512", 1, new Uint8Array(64))[1], 2);
});

Deno.test("fsverity: digest of a reader with short reads", async () => {
  const data = randomBytes(200000);
  // A reader that returns odd-sized pieces, like a pipe would.
  let pos = 0;
  const reader = {
    read(buf: Uint8Array): Promise<number | null> {
      if (pos >= data.length) return Promise.resolve(null);
      const n = Math.min(buf.length, 3001, data.length - pos);
      buf.set(data.subarray(pos, pos + n));
      pos += n;
      return Promise.resolve(n);
    },
  };
  assertEquals((await fsverityDigestReader(reader, "sha512")).hex(), fsverityDigest(data, "sha512").hex());
});

Deno.test("fsverity: forcing an unknown state is rejected", () => {
  assertThrows(() => setHashBackend("bogus" as unknown as "auto"));
});

Deno.test("fsverity: without FFI permission the node:crypto backend is chosen, without prompting", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsverity-test-" });
  try {
    const script = `${dir}/probe.ts`;
    const hasherUrl = new URL("../lib/fsverity/hasher.ts", import.meta.url).href;
    const backendUrl = new URL("../lib/fsverity/backend.ts", import.meta.url).href;
    Deno.writeTextFileSync(
      script,
      `import { fsverityDigest } from ${JSON.stringify(hasherUrl)};
       import { hashBackendName } from ${JSON.stringify(backendUrl)};
       const id = fsverityDigest(new TextEncoder().encode("hello world"), "sha256");
       console.log(hashBackendName(), id.hex());`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-check", `--allow-read=${dir}`, script],
      stdin: "null",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    assertEquals(
      new TextDecoder().decode(out.stdout).trim(),
      "node:crypto 1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
