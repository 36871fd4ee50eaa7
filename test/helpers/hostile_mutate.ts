// Seeded, bounded mutation of valid tar archives and JSON documents for the hostile-input
// generators (test/hostile_*_fuzz_test.ts). Every mutant is a pure function of (seed, index), so a
// failure names the seed and index that reproduce it; sizes stay small so thousands run per minute.
import { concatBytes } from "../../lib/util/bytes.ts";
import { END, paxMember, tarMember } from "./tar_fixtures.ts";
import { DENO } from "./cli.ts";
import { Rng } from "./random_tree.ts";

// The seeded generator the mutations draw from (mulberry32; same sequence as before it moved).
export { Rng };

/** The seed of this run: HOSTILE_SEED when set (to reproduce a failure), else fixed per file. */
export function runSeed(fallback: number): number {
  const s = Deno.env.get("HOSTILE_SEED");
  return s ? Number(s) >>> 0 : fallback;
}

const enc = new TextEncoder();
const dir = (name: string) => tarMember({ name, type: "5", mode: 0o755 });

/** Valid layers (each has /usr, so an image can be built from it) covering the reader's paths. */
export function baseTars(): Uint8Array[] {
  const body = (n: number, c: number) => new Uint8Array(n).fill(c);
  return [
    concatBytes([
      dir("usr/"),
      dir("usr/bin/"),
      tarMember({ name: "usr/bin/tool", mode: 0o755 }, body(3000, 0x41)),
      tarMember({ name: "usr/small" }, enc.encode("tiny")),
      tarMember({ name: "usr/exact64" }, body(64, 0x42)),
      tarMember({ name: "usr/65" }, body(65, 0x43)),
      tarMember({ name: "usr/link", type: "2", linkname: "bin/tool" }),
      tarMember({ name: "usr/hard", type: "1", linkname: "usr/bin/tool" }),
      END,
    ]),
    concatBytes([
      dir("usr/"),
      paxMember([["path", "usr/" + "p".repeat(150)], ["mtime", "1700000000.25"], ["uid", "1000"]]),
      tarMember({ name: "placeholder" }, body(700, 0x44)),
      paxMember([["SCHILY.xattr.user.k", "value"], [
        "SCHILY.xattr.security.selinux",
        "system_u:object_r:bin_t:s0",
      ]]),
      tarMember({ name: "usr/x" }, enc.encode("xattrs")),
      paxMember([["linkpath", "/" + "t".repeat(200)]]),
      tarMember({ name: "usr/longlink", type: "2" }),
      paxMember([["comment", "global"], ["gid", "7"]], "g"),
      tarMember({ name: "usr/.wh.gone" }),
      tarMember({ name: "usr/fifo", type: "6" }),
      tarMember({ name: "usr/null", type: "3" }),
      END,
      new Uint8Array(10240 - 512 * 11 % 10240), // record padding after the end
    ]),
    concatBytes([
      dir("./usr/"),
      tarMember({ name: "././@LongLink", type: "L" }, enc.encode("usr/" + "g".repeat(120) + "\0")),
      tarMember({ name: "short" }, body(100_000, 0x45)),
      tarMember({ name: "././@LongLink", type: "K" }, enc.encode("usr/" + "g".repeat(120) + "\0")),
      tarMember({ name: "usr/hardlong", type: "1" }),
      dir("usr/d/"),
      tarMember({ name: "usr/d/.wh..wh..opq" }),
      END,
    ]),
  ];
}

function putOctal(b: Uint8Array, off: number, len: number, v: number): void {
  const s = v.toString(8).padStart(len - 1, "0").slice(-(len - 1));
  for (let i = 0; i < len - 1; i++) b[off + i] = s.charCodeAt(i);
  b[off + len - 1] = 0;
}

function fixChecksum(b: Uint8Array, off: number): void {
  for (let i = 148; i < 156; i++) b[off + i] = 0x20;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[off + i];
  const s = sum.toString(8).padStart(6, "0");
  for (let i = 0; i < 6; i++) b[off + 148 + i] = s.charCodeAt(i);
  b[off + 154] = 0;
  b[off + 155] = 0x20;
}

/** Offsets of blocks that look like headers (valid checksum), found by walking the archive. */
function headerOffsets(tar: Uint8Array): number[] {
  const out: number[] = [];
  for (let o = 0; o + 512 <= tar.length; o += 512) {
    let sum = 0;
    let zero = true;
    for (let i = 0; i < 512; i++) {
      const c = i >= 148 && i < 156 ? 0x20 : tar[o + i];
      if (tar[o + i] !== 0) zero = false;
      sum += c;
    }
    if (zero) continue;
    const stored = parseInt(new TextDecoder().decode(tar.subarray(o + 148, o + 154)), 8);
    if (stored === sum) out.push(o);
  }
  return out;
}

const HOSTILE_VALUES = [
  "0",
  "-1",
  "4294967295",
  "4294967296",
  "1099511627776",
  "9007199254740993",
  "99999999999999999999",
  "1.5",
  "",
  "\0",
  "a\0b",
  "/etc\0/shadow",
  "../../../../etc/passwd",
  "/",
  ".",
  "..",
  "x".repeat(5000),
  "\u00e9",
  "\xff\xfe",
  "1e9",
  " 12",
];
const PAX_KEYS = [
  "path",
  "linkpath",
  "size",
  "uid",
  "gid",
  "mtime",
  "atime",
  "SCHILY.xattr.user.a",
  "SCHILY.xattr.",
  "SCHILY.xattr.trusted.overlay.opaque",
  "SCHILY.xattr.user.\0x",
  "LIBARCHIVE.xattr.user.b",
  "GNU.sparse.size",
  "comment",
];

/** One bounded mutation of a valid tar (a few edits; the result is at most about 2x larger). */
export function mutateTar(rng: Rng, tar: Uint8Array): Uint8Array {
  let b: Uint8Array = tar.slice();
  const edits = rng.int(1, 3);
  for (let e = 0; e < edits; e++) {
    const heads = headerOffsets(b);
    const h = heads.length ? rng.pick(heads) : 0;
    const fix = rng.chance(0.85); // most mutants keep a valid checksum, so they reach the parser
    switch (rng.int(0, 13)) {
      case 0: { // random bytes somewhere in a header
        for (let i = rng.int(1, 8); i > 0; i--) b[h + rng.int(0, 511)] = rng.int(0, 255);
        break;
      }
      case 1: // size field
        putOctal(
          b,
          h + 124,
          12,
          rng.pick([0, 1, 63, 64, 65, 511, 512, 513, 1 << 20, 8 ** 11 - 1, rng.int(0, 1e6)]),
        );
        break;
      case 2: // uid/gid/mode/mtime fields, octal or base-256
        if (rng.chance(0.5)) putOctal(b, h + rng.pick([100, 108, 116]), 8, rng.int(0, 0o7777777));
        else {
          const off = h + rng.pick([108, 116, 136]);
          b[off] = rng.pick([0x80, 0xff]);
          for (let i = 1; i < 8; i++) b[off + i] = rng.int(0, 255);
        }
        break;
      case 3: // typeflag
        b[h + 156] = rng.pick([..."0123456789xgLKSDVM\0"]).charCodeAt(0);
        break;
      case 4: { // name / linkname / prefix bytes
        const off = h + rng.pick([0, 157, 345]);
        const s = rng.pick(HOSTILE_VALUES);
        for (let i = 0; i < Math.min(s.length, 99); i++) b[off + i] = s.charCodeAt(i) & 0xff;
        break;
      }
      case 5: { // a PAX header with hostile records before a header
        const recs: [string, string][] = [];
        for (let i = rng.int(1, 4); i > 0; i--) recs.push([rng.pick(PAX_KEYS), rng.pick(HOSTILE_VALUES)]);
        const pax = paxMember(recs, rng.chance(0.2) ? "g" : "x");
        b = concatBytes([b.subarray(0, h), pax, b.subarray(h)]);
        break;
      }
      case 6: // truncation
        b = b.subarray(0, rng.int(0, b.length));
        break;
      case 7: { // delete a block
        const o = rng.int(0, Math.max(0, (b.length >> 9) - 1)) << 9;
        b = concatBytes([b.subarray(0, o), b.subarray(o + 512)]);
        break;
      }
      case 8: { // duplicate a block range
        const o = rng.int(0, Math.max(0, (b.length >> 9) - 1)) << 9;
        const n = rng.int(1, 4) << 9;
        b = concatBytes([b.subarray(0, o + n), b.subarray(o, o + n), b.subarray(o + n)]);
        break;
      }
      case 9: // zero block in the middle
        b = concatBytes([b.subarray(0, h), new Uint8Array(512 * rng.int(1, 2)), b.subarray(h)]);
        break;
      case 10: // trailing garbage after everything
        b = concatBytes([
          b,
          rng.chance(0.5) ? new Uint8Array(rng.int(1, 20000)) : rng.bytes(rng.int(1, 3000)),
        ]);
        break;
      case 11: // a device or link header with wild numbers
        b = concatBytes([
          b.subarray(0, h),
          tarMember({
            name: "usr/dev" + rng.int(0, 9),
            type: rng.pick(["3", "4", "1", "2"]),
            linkname: rng.pick(HOSTILE_VALUES).slice(0, 99),
          }),
          b.subarray(h),
        ]);
        break;
      case 12: { // random bytes in content or padding
        const o = rng.int(0, Math.max(0, b.length - 1));
        for (let i = rng.int(1, 16); i > 0 && o + i < b.length; i--) b[o + i] = rng.int(0, 255);
        break;
      }
      default: { // many tiny entries or many extension headers
        const parts: Uint8Array[] = [b.subarray(0, h)];
        for (let i = rng.int(1, 40); i > 0; i--) {
          if (rng.chance(0.5)) {
            parts.push(paxMember([[rng.pick(PAX_KEYS), rng.pick(HOSTILE_VALUES)]], rng.pick(["x", "g"])));
          } else parts.push(tarMember({ name: `usr/m${i}` }));
        }
        parts.push(b.subarray(h));
        b = concatBytes(parts);
      }
    }
    if (fix && h + 512 <= b.length) fixChecksum(b, h);
  }
  return b;
}

const JSON_VALUES: unknown[] = [
  null,
  -1,
  0,
  1.5,
  2 ** 53,
  1e300,
  "",
  "x",
  "sha256:" + "0".repeat(64),
  "sha512:" + "0".repeat(128),
  "sha256:../../etc/passwd",
  "md5:00",
  {},
  [],
  [{}],
  true,
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v1+json",
  "application/octet-stream",
];

/** Replaces, deletes or adds one value somewhere in a JSON document (returns a new document). */
export function mutateJson(rng: Rng, doc: unknown): unknown {
  const root = structuredClone(doc);
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, p: (string | number)[]) => {
    paths.push(p);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
    else if (v && typeof v === "object") { for (const [k, x] of Object.entries(v)) walk(x, [...p, k]); }
  };
  walk(root, []);
  const p = rng.pick(paths.filter((x) => x.length > 0));
  if (!p) return rng.pick(JSON_VALUES);
  let parent: any = root;
  for (const k of p.slice(0, -1)) parent = parent[k];
  const last = p[p.length - 1];
  const op = rng.int(0, 4);
  if (op === 0) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else if (op === 1 && Array.isArray(parent)) {
    for (let i = rng.int(1, 50); i > 0; i--) parent.push(structuredClone(parent[last as number]));
  } else if (op === 2 && typeof parent[last] === "number") {
    parent[last] = rng.pick([-1, parent[last] + 1, parent[last] - 1, 2 ** 60, 0.5]);
  } else if (op === 3 && typeof parent[last] === "string" && /^sha(256|512):/.test(parent[last])) {
    const s = parent[last] as string;
    const i = rng.int(7, s.length - 1);
    parent[last] = s.slice(0, i) + rng.pick([..."0123456789abcdefG"]) + s.slice(i + 1);
  } else parent[last] = rng.pick(JSON_VALUES);
  return root;
}

/**
 * Runs one batch of a generator's inputs in a worker process (killed after `killAfterSec`) and returns the
 * JSON result line it prints last.
 */
export async function runWorkerBatch<T>(
  worker: string,
  killAfterSec: number,
  seed: number,
  start: number,
  count: number,
): Promise<T> {
  const o = await new Deno.Command("timeout", {
    args: [
      "-s",
      "KILL",
      String(killAfterSec),
      DENO,
      "run",
      "-A",
      "--no-check",
      worker,
      String(seed),
      String(start),
      String(count),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(o.stdout).trim();
  if (o.code !== 0 || !text) {
    throw new Error(`worker exited ${o.code}: ${new TextDecoder().decode(o.stderr)}`);
  }
  return JSON.parse(text.split("\n").pop()!) as T;
}
