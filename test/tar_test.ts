// The streaming tar reader against archives written by GNU tar and Python's tarfile, and against
// hand-built hostile archives. Facts come from the tools: lstat() of the source tree, or the values
// the Python script set. Every archive must also come back byte-identical from the reader's parts.
import { FormatError } from "../lib/errors.ts";
import { ByteSource } from "../lib/oci/tar/byte_source.ts";
import { TarReader } from "../lib/oci/tar/reader.ts";
import { Flattener } from "../lib/oci/flatten.ts";
import { writeDumpfile } from "../lib/dumpfile/write.ts";
import { concatBytes, toHex } from "../lib/util/bytes.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import {
  END,
  type FileFacts,
  gnuTar,
  isRoot,
  makeSourceTree,
  paxMember,
  readAll,
  run,
  sha256Hex,
  splitNs,
  tarMember,
  ustarHeader,
} from "./helpers/tar_fixtures.ts";

const enc = new TextEncoder();
const bstr = (s: string) => String.fromCharCode(...enc.encode(s));

async function checkAgainstTree(dir: string, facts: Record<string, FileFacts>, tar: Uint8Array, opts: {
  nsec: boolean;
  xattrs: boolean;
}) {
  for (const chunk of [1, 511, 4096, 1 << 20]) {
    if (chunk === 1 && tar.length > 256 * 1024) continue;
    const { raw } = await readAll(tar, chunk);
    assertEquals(sha256Hex(raw), sha256Hex(tar), `reassembled bytes differ (chunk ${chunk})`);
  }
  const { entries } = await readAll(tar, 65536);
  const seen = new Set<string>();
  for (const { entry: e, content } of entries) {
    const f = facts[e.path];
    assert(f, `unexpected entry ${e.path}`);
    assert(!seen.has(e.path), `duplicate ${e.path}`);
    seen.add(e.path);
    const where = `${e.path} (${e.kind})`;
    if (e.kind === "hardlink") {
      const t = facts[e.linkTarget];
      assert(t && t.ino === f.ino && seen.has(e.linkTarget), `${where}: link target ${e.linkTarget}`);
      continue;
    }
    assertEquals(e.kind, f.type, where);
    assertEquals(e.mode & 0o7777, f.mode, `${where} mode`);
    assertEquals([e.uid, e.gid], [f.uid, f.gid], `${where} owner`);
    const [sec, nsec] = splitNs(f.mtime_ns);
    assertEquals(e.mtimeSec, sec, `${where} mtime`);
    assertEquals(e.mtimeNsec, opts.nsec ? nsec : 0, `${where} mtime nsec`);
    assertEquals(e.size, f.size, `${where} size`);
    if (e.kind === "file") {
      const disk = await Deno.readFile(
        dir + new TextDecoder().decode(Uint8Array.from(e.path, (c) => c.charCodeAt(0))),
      );
      assertEquals(sha256Hex(content), sha256Hex(disk), `${where} content`);
    }
    if (e.kind === "symlink") assertEquals(e.linkTarget, f.target, `${where} target`);
    if (e.kind === "chardev" || e.kind === "blockdev") {
      assertEquals([e.devMajor, e.devMinor, e.rdev], [f.major, f.minor, f.rdev], `${where} rdev`);
    }
    const xattrs = Object.fromEntries([...e.xattrs].map(([k, v]) => [k, toHex(v)]));
    assertEquals(xattrs, opts.xattrs ? f.xattrs : {}, `${where} xattrs`);
  }
  assertEquals([...seen].sort(), Object.keys(facts).sort(), "entries = files of the tree");
}

for (const format of ["gnu", "posix", "ustar"] as const) {
  Deno.test(`GNU tar --format=${format}: metadata equals lstat() of the source, bytes round-trip`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "cfs-tar-" });
    try {
      const facts = await makeSourceTree(dir, format === "ustar" ? "ustar" : "full");
      const xattrs = format === "posix";
      const tar = await gnuTar(dir, format, xattrs ? ["--xattrs", "--xattrs-include=*"] : []);
      await checkAgainstTree(dir, facts, tar, { nsec: format === "posix", xattrs });
      if (!isRoot) console.log("  (not root: no device nodes in this fixture)");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

// Python tarfile fixtures: the script prints the values it set (paths normalised per §7.2 and
// mtimes split per the PAX rules, computed with Python's Decimal).
const PY_FIXTURES = String.raw`
import tarfile, io, json, sys, base64
from decimal import Decimal, ROUND_FLOOR
out = sys.argv[1]
results = {}
def norm(n): return "/" + "/".join(c for c in n.split("/") if c not in ("", "."))
def pax_time(s):
    if "." in s:
        i, f = s.split(".")
        s = i + "." + f[:9]
    d = Decimal(s)
    sec = int(d.to_integral_value(rounding=ROUND_FLOOR))
    return sec, int((d - sec) * 1000000000)
def build(name, fmt, members):
    bio = io.BytesIO()
    exp = []
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as tf:
        for m in members:
            ti = tarfile.TarInfo(m["name"])
            ti.type = m.get("type", tarfile.REGTYPE)
            ti.mode = m.get("mode", 0o644)
            ti.uid, ti.gid = m.get("uid", 0), m.get("gid", 0)
            ti.mtime = m.get("mtime", 1000)
            ti.linkname = m.get("linkname", "")
            ti.devmajor, ti.devminor = m.get("dev", (0, 0))
            ti.pax_headers = dict(m.get("pax", {}))
            data = m.get("data", b"")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data else None)
            xattrs = {}
            for k, v in m.get("pax", {}).items():
                if k.startswith("SCHILY.xattr."): xattrs[k[13:]] = v.encode("utf-8", "surrogateescape").hex()
                if k.startswith("LIBARCHIVE.xattr."):
                    from urllib.parse import unquote
                    xattrs[unquote(k[17:])] = base64.b64decode(v).hex()
            if "mtime" in m.get("pax", {}): sec, nsec = pax_time(m["pax"]["mtime"])
            elif isinstance(ti.mtime, float): sec, nsec = pax_time(repr(ti.mtime))
            else: sec, nsec = ti.mtime, 0
            kind = {tarfile.REGTYPE: "file", tarfile.LNKTYPE: "hardlink", tarfile.SYMTYPE: "symlink",
                    tarfile.CHRTYPE: "chardev", tarfile.BLKTYPE: "blockdev", tarfile.DIRTYPE: "dir",
                    tarfile.FIFOTYPE: "fifo", tarfile.CONTTYPE: "file"}[ti.type]
            exp.append(dict(path=norm(m["name"]), kind=kind, mode=ti.mode, uid=ti.uid, gid=ti.gid,
                mtimeSec=sec, mtimeNsec=nsec, size=len(data),
                linkTarget=norm(ti.linkname) if kind == "hardlink" else ti.linkname,
                devMajor=ti.devmajor if kind in ("chardev", "blockdev") else 0,
                devMinor=ti.devminor if kind in ("chardev", "blockdev") else 0,
                xattrs=xattrs, content=data.hex()))
    open(f"{out}/{name}.tar", "wb").write(bio.getvalue())
    results[name] = exp
D, F = tarfile.DIRTYPE, tarfile.REGTYPE
uni = "dir/\u00fcn\u00efc\u00f6d\u00e9-\u6587\u4ef6.txt"
build("pax", tarfile.PAX_FORMAT, [
    dict(name="./", type=D, mode=0o755),
    dict(name="dir/", type=D, mode=0o2775, uid=3000000, gid=4000000),
    dict(name=uni, data=bytes(range(100)), mtime=1700000000.5),
    dict(name="dir/" + "x" * 300, data=b"long", mtime=1600000000,
         pax={"mtime": "1600000000.1234567891", "SCHILY.xattr.user.empty": "",
              "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0\x00",
              "LIBARCHIVE.xattr.user.lib%3Dname": base64.b64encode(b"\x01\x02\xff").decode()}),
    dict(name="dir/hl", type=tarfile.LNKTYPE, linkname=uni),
    dict(name="dir/sym", type=tarfile.SYMTYPE, linkname="../" + "y" * 200, mode=0o777),
    dict(name="dev", type=D),
    dict(name="dev/null", type=tarfile.CHRTYPE, dev=(1, 3), mode=0o666),
    dict(name="dev/loop0", type=tarfile.BLKTYPE, dev=(7, 0), mode=0o660),
    dict(name="dev/big", type=tarfile.CHRTYPE, dev=(4095, 1048575)),
    dict(name="fifo", type=tarfile.FIFOTYPE, pax={"mtime": "-1.25"}),
    dict(name="cont", type=tarfile.CONTTYPE, data=b"c" * 70),
    dict(name="/abs/../", type=D) if False else dict(name="/abs//./path/", type=D),
])
build("gnu", tarfile.GNU_FORMAT, [
    dict(name="./", type=D),
    dict(name="g" * 150, data=b"gnu long name", uid=2**32 - 1, gid=7, mtime=-100),
    dict(name="h" * 120, type=tarfile.LNKTYPE, linkname="g" * 150),
    dict(name="s", type=tarfile.SYMTYPE, linkname="z" * 180),
    dict(name="big-mtime", data=b"", mtime=8**11 + 5),
])
build("ustar", tarfile.USTAR_FORMAT, [
    dict(name="u" * 90 + "/" + "v" * 99, data=b"prefix"),
    dict(name="plain", data=b"p" * 512),
])
json.dump(results, sys.stdout)
`;

Deno.test("Python tarfile (PAX, GNU, ustar): entries equal what the script set, bytes round-trip", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfs-pytar-" });
  try {
    const expected = JSON.parse(new TextDecoder().decode(await run("python3", ["-c", PY_FIXTURES, dir])));
    for (const name of ["pax", "gnu", "ustar"]) {
      const tar = await Deno.readFile(`${dir}/${name}.tar`);
      const { entries, raw } = await readAll(tar, 1000);
      assertEquals(sha256Hex(raw), sha256Hex(tar), `${name}: round trip`);
      const got = entries.map(({ entry: e, content }) => ({
        path: e.path,
        kind: e.kind,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtimeSec: e.mtimeSec,
        mtimeNsec: e.mtimeNsec,
        size: e.size,
        linkTarget: e.linkTarget,
        devMajor: e.devMajor,
        devMinor: e.devMinor,
        xattrs: Object.fromEntries([...e.xattrs].map(([k, v]) => [k, toHex(v)])),
        content: toHex(content),
      }));
      const want = (expected[name] as Record<string, unknown>[]).map((x) => ({
        ...x,
        path: bstr(x.path as string),
        linkTarget: bstr(x.linkTarget as string),
      }));
      assertEquals(got, want, `${name}.tar`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function readBytes(tar: Uint8Array) {
  return await readAll(tar, 512);
}

Deno.test("hostile: bad checksum, '..', sparse, oversized PAX and names, too many extension headers", async () => {
  const file = tarMember({ name: "ok" }, enc.encode("hello"));
  const cases: [string, Uint8Array, RegExp][] = [
    ["bad checksum", concatBytes([tarMember({ name: "x", badChecksum: true }), END]), /checksum mismatch/],
    ["dotdot", concatBytes([tarMember({ name: "a/../../etc/passwd" }), END]), /"\.\." component/],
    [
      "dotdot hardlink",
      concatBytes([file, tarMember({ name: "h", type: "1", linkname: "../x" }), END]),
      /\.\./,
    ],
    ["dotdot pax", concatBytes([paxMember([["path", "../evil"]]), tarMember({ name: "x" }), END]), /\.\./],
    ["sparse S", concatBytes([tarMember({ name: "s", type: "S" }), END]), /sparse/],
    [
      "pax sparse",
      concatBytes([paxMember([["GNU.sparse.major", "1"]]), tarMember({ name: "x" }), END]),
      /sparse/,
    ],
    ["huge pax", concatBytes([ustarHeader({ name: "p", type: "x", size: 2 * 1024 * 1024 }), END]), /exceeds/],
    [
      "long name > 4096",
      concatBytes([tarMember({ name: "././@LongLink", type: "L" }, new Uint8Array(5000).fill(0x61)), END]),
      /exceeds/,
    ],
    [
      "pax path > 4096",
      concatBytes([paxMember([["path", "a".repeat(5000)]]), tarMember({ name: "x" }), END]),
      /longer than 4096/,
    ],
    [
      "17 extension headers",
      concatBytes([
        ...Array.from({ length: 17 }, () => paxMember([["uid", "1"]])),
        tarMember({ name: "x" }),
        END,
      ]),
      /more than 16/,
    ],
    [
      "bad pax record",
      concatBytes([paxMember([["uid", "12x"]]), tarMember({ name: "x" }), END]),
      /invalid uid/,
    ],
    [
      "bad octal",
      concatBytes([tarMember({ name: "x", sizeField: enc.encode("12a\0") }), END]),
      /invalid octal/,
    ],
    ["ext header then EOF", paxMember([["path", "x"]]), /extension header/],
    ["truncated content", concatBytes([file]).subarray(0, 515), /truncated/],
    ["truncated padding", concatBytes([file]).subarray(0, 600), /truncated/],
    ["truncated header", concatBytes([file, tarMember({ name: "y" })]).subarray(0, 1024 + 100), /truncated/],
    ["truncated pax payload", paxMember([["path", "x"]]).subarray(0, 520), /truncated/],
  ];
  for (const [name, tar, re] of cases) {
    const e = await assertRejects(() => readBytes(tar), re);
    assert(e instanceof FormatError, `${name}: ${e}`);
  }
});

Deno.test("end of archive: stray zero block, single zero block, clean EOF, record padding", async () => {
  const a = tarMember({ name: "a" }, enc.encode("A"));
  const b = tarMember({ name: "b" }, enc.encode("B"));
  const zero = new Uint8Array(512);
  const trailing = new Uint8Array(9216).fill(0x5a); // whatever follows the end blocks is kept
  for (
    const [what, tar, paths] of [
      ["stray zero block between entries", concatBytes([a, zero, b, END]), ["/a", "/b"]],
      ["clean EOF at a header boundary", concatBytes([a, b]), ["/a", "/b"]],
      ["one zero block then EOF", concatBytes([a, zero]), ["/a"]],
      ["bytes after the end blocks", concatBytes([a, END, trailing]), ["/a"]],
      ["empty input", new Uint8Array(0), []],
    ] as [string, Uint8Array, string[]][]
  ) {
    const { entries, raw } = await readBytes(tar);
    assertEquals(entries.map((e) => e.entry.path), paths, what);
    assertEquals(sha256Hex(raw), sha256Hex(tar), what);
  }
});

Deno.test("numeric fields: base-256 size/uid/mtime (positive and negative), signed checksum", async () => {
  const h = ustarHeader({ name: "x", size: 0 });
  // size = 3 in base-256, uid = 2^32 - 1 (the largest an image holds), mtime = -5
  h.fill(0, 124, 136);
  h[124] = 0x80;
  h[135] = 3;
  h.fill(0, 108, 116);
  h[108] = 0x80;
  h.fill(0xff, 112, 116); // 2^32 - 1 in the low four bytes of the 8-byte field
  h.fill(0xff, 136, 148);
  h[147] = 0xfb;
  h[156] = "0".charCodeAt(0);
  // A high-bit byte in the name makes signed and unsigned sums differ; store the signed sum.
  h[50] = 0xe9;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : h[i];
    signed += c >= 128 ? c - 256 : c;
  }
  const ck = signed.toString(8).padStart(6, "0") + "\0 ";
  for (let i = 0; i < 8; i++) h[148 + i] = ck.charCodeAt(i);
  const tar = concatBytes([h, enc.encode("abc"), new Uint8Array(509), END]);
  const { entries } = await readBytes(tar);
  assertEquals(entries.length, 1);
  assertEquals([entries[0].entry.size, entries[0].entry.uid, entries[0].entry.mtimeSec], [
    3,
    2 ** 32 - 1,
    -5,
  ]);
  assertEquals(new TextDecoder().decode(entries[0].content), "abc");
});

Deno.test("global PAX headers apply to later entries (not path/size); content can be skipped", async () => {
  const tar = concatBytes([
    paxMember([["uid", "77"], ["SCHILY.xattr.user.g", "1"], ["path", "ignored"]], "g"),
    tarMember({ name: "a" }, new Uint8Array(1000)),
    paxMember([["uid", "5"], ["SCHILY.xattr.user.l", "2"]]),
    tarMember({ name: "b" }),
    END,
  ]);
  const r = new TarReader(
    new ByteSource((async function* () {
      yield tar;
    })()),
  );
  const a = await r.next();
  assertEquals([a!.entry.path, a!.entry.uid, [...a!.entry.xattrs.keys()]], ["/a", 77, ["user.g"]]);
  assertEquals(a!.header.length, 512 * 3); // the g header, its payload, the main header
  const b = await r.next(); // skips a's content and padding
  assertEquals([b!.entry.path, b!.entry.uid, [...b!.entry.xattrs.keys()]], ["/b", 5, ["user.g", "user.l"]]);
  assertEquals(await r.next(), null);
});

Deno.test("GNU tar --sparse archives (typeflag 'S' and PAX GNU.sparse.*) are refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cfs-sparse-" });
  try {
    const f = await Deno.open(`${dir}/holey`, { write: true, create: true });
    await f.truncate(1 << 20);
    await f.seek(300_000, Deno.SeekMode.Start);
    await f.write(enc.encode("data in the middle"));
    f.close();
    for (
      const [format, extra] of [["gnu", []], ["posix", []], ["posix", ["--sparse-version=1.0"]]] as const
    ) {
      const tar = await gnuTar(dir, format, ["--sparse", ...extra]);
      await assertRejects(() => readBytes(tar), /sparse/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mtimes beyond 2^53: PAX and base-256 values are exact through the reader and the flattened tree", async () => {
  const big = "4611686018427387904"; // 2^62
  const tar = concatBytes([
    paxMember([["mtime", `${big}.5`]]),
    tarMember({ name: "a", size: 0 }),
    paxMember([["mtime", "-9223372036854775808"]]), // the smallest i64
    tarMember({ name: "b", size: 0 }),
    END,
  ]);
  const { entries } = await readBytes(tar);
  assertEquals(entries.map((e) => [e.entry.mtimeSecExact, e.entry.mtimeNsec]), [
    [2n ** 62n, 500_000_000],
    [-(2n ** 63n), 0],
  ]);
  // base-256 (12-byte field): 2^62 + 1, which no double holds
  const h = ustarHeader({ name: "c", size: 0 });
  h.fill(0, 136, 148);
  h[136] = 0x80;
  new DataView(h.buffer).setBigUint64(140, 2n ** 62n + 1n);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of h) sum += x;
  const ck = sum.toString(8).padStart(6, "0") + "\0 ";
  for (let i = 0; i < 8; i++) h[148 + i] = ck.charCodeAt(i);
  const r2 = await readBytes(concatBytes([h, END]));
  assertEquals(r2.entries[0].entry.mtimeSecExact, 2n ** 62n + 1n);
  // the flattened tree and its dumpfile keep the exact value
  const f = new Flattener();
  f.beginLayer();
  f.apply({ ...r2.entries[0].entry, path: "/usr", kind: "dir", mode: 0o40755 });
  const root = f.finish();
  const dump = new TextDecoder().decode(concatBytes([...writeDumpfile(root)]));
  assert(dump.includes(` ${2n ** 62n + 1n}.0 `), dump);
  // beyond 64 bits: refused, not wrapped
  await assertRejects(
    () =>
      readBytes(concatBytes([paxMember([["mtime", "9223372036854775808"]]), tarMember({ name: "d" }), END])),
    /out of range \(64 bits\)/,
  );
});
