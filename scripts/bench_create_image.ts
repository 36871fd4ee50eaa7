// Benchmark: building a composefs image of a directory tree with its file objects stored, against the
// reference pipeline `cp -a SRC DST && find DST -type f -print0 | xargs -0 fsverity digest`.
//
//   deno run -A scripts/bench_create_image.ts [--runs 3] [--tree nodemodules,rootfs] [--bundle]
//                                             [--out /var/tmp/cfsctl-bench-create-image]
//
// Trees (built once, cached under /var/tmp; a `.complete` marker says a tree is whole):
// - nodemodules: 100,000 JS-like files of 100 B–20 KiB (log-uniform) in nested package directories,
//   generated deterministically (mulberry32), with identical LICENSE files across packages;
// - rootfs: a Debian root filesystem, `debootstrap --variant=minbase bookworm` (another benchmark may
//   create the same directory: `rootfs` appears by rename when complete, `rootfs.tmp` while building).
// Commands (each run from a source whose file data was evicted from the page cache with
// posix_fadvise(DONTNEED): /proc/sys/vm/drop_caches is read-only in this container, so directory
// metadata stays cached):
// - reference: cp -a + fsverity digest of every copied regular file;
// - mkcomposefs --digest-store STORE SRC IMAGE;
// - cfsctl --repo REPO create-image SRC NAME (fresh insecure sha256 repository per run).
// Ours run with the V8 flags the launchers give (scripts/build.ts V8_FLAGS), as users run them.
// Prints per command: median wall, CPU (user+sys), peak RSS (GNU time), and the exact command line.
import { parseArgs } from "node:util";
import { Trash } from "./bench_trash.ts";
import { V8_FLAGS } from "./build.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();

const NM_DIR = "/var/tmp/cfsctl-bench-nodemodules";
const NM_FILES = 100_000;
const ROOTFS_DIR = "/var/tmp/cfsctl-bench-rootfs";

// ---------------------------------------------------------------------------------------------
// Deterministic node_modules-like tree

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = [
  "function",
  "return",
  "const",
  "let",
  "var",
  "if",
  "else",
  "for",
  "while",
  "module.exports",
  "require",
  "import",
  "export",
  "default",
  "async",
  "await",
  "new",
  "this",
  "null",
  "undefined",
  "true",
  "false",
  "typeof",
  "Object.keys",
  "Array.isArray",
  "Promise.resolve",
  "JSON.stringify",
  "value",
  "options",
  "callback",
  "result",
  "index",
  "length",
  "buffer",
  "stream",
  "error",
  "context",
  "props",
  "state",
  "node",
];

/** A few MiB of JS-like text every file takes a slice of. */
function corpus(rand: () => number, size: number): Uint8Array {
  const parts: string[] = [];
  let n = 0;
  let depth = 0;
  while (n < size) {
    const r = rand();
    let s: string;
    if (r < 0.08) {
      s = "{\n" + "  ".repeat(++depth);
    } else if (r < 0.16 && depth > 0) {
      s = "\n" + "  ".repeat(--depth) + "}\n" + "  ".repeat(depth);
    } else if (r < 0.3) {
      s = ";\n" + "  ".repeat(depth);
    } else if (r < 0.35) {
      s = `"${WORDS[Math.floor(rand() * WORDS.length)]}_${Math.floor(rand() * 1000)}" `;
    } else {
      s = WORDS[Math.floor(rand() * WORDS.length)] + (rand() < 0.3 ? "(" : " ");
    }
    parts.push(s);
    n += s.length;
  }
  return new TextEncoder().encode(parts.join("")).subarray(0, size);
}

const LICENSES = ["MIT", "ISC", "Apache-2.0"].map((l) =>
  new TextEncoder().encode(
    `${l} License\n\nCopyright (c) contributors\n\n` +
      "Permission is hereby granted, free of charge, to any person obtaining a copy of this software\n"
        .repeat(12),
  )
);

function generateNodeModules(dir: string): void {
  const rand = mulberry32(0xc0ffee);
  const text = corpus(rand, 4 << 20);
  const enc = new TextEncoder();
  let files = 0;
  const write = (path: string, data: Uint8Array) => {
    Deno.writeFileSync(path, data);
    files++;
  };
  const jsFile = (path: string) => {
    // log-uniform 100 B .. 20 KiB, a unique first line, then a slice of the corpus
    const size = Math.floor(100 * Math.exp(rand() * Math.log(20480 / 100)));
    const head = enc.encode(`// ${path.slice(dir.length)} ${files}\n`);
    const body = Math.max(0, size - head.length);
    const at = Math.floor(rand() * (text.length - body));
    const data = new Uint8Array(head.length + body);
    data.set(head);
    data.set(text.subarray(at, at + body), head.length);
    write(path, data);
  };
  Deno.mkdirSync(`${dir}/node_modules`, { recursive: true });
  for (let p = 0; files < NM_FILES; p++) {
    const scoped = rand() < 0.15;
    const name = `${scoped ? `@scope${p % 37}/` : ""}pkg-${p.toString(36)}`;
    const pkg = `${dir}/node_modules/${name}`;
    Deno.mkdirSync(pkg, { recursive: true });
    write(
      `${pkg}/package.json`,
      enc.encode(JSON.stringify({ name, version: `1.${p % 17}.${p % 5}`, main: "lib/index.js" }, null, 2)),
    );
    write(`${pkg}/LICENSE`, LICENSES[p % LICENSES.length]);
    jsFile(`${pkg}/README.md`);
    // 20..150 files in lib/ and dist/ subtrees up to 3 levels deep
    const count = 20 + Math.floor(rand() * 130);
    const dirs = [`${pkg}/lib`];
    Deno.mkdirSync(dirs[0]);
    for (let i = 0; i < count && files < NM_FILES; i++) {
      if (rand() < 0.12) {
        const parent = dirs[Math.floor(rand() * dirs.length)];
        if (parent.split("/").length - pkg.split("/").length < 3) {
          const d = `${parent}/${WORDS[Math.floor(rand() * WORDS.length)].replace(".", "-")}${i}`;
          Deno.mkdirSync(d);
          dirs.push(d);
        }
      }
      const d = dirs[Math.floor(rand() * dirs.length)];
      jsFile(`${d}/m${i}.${rand() < 0.8 ? "js" : "d.ts"}`);
    }
  }
}

export async function ensureNodeModules(): Promise<string> {
  const tree = `${NM_DIR}/tree`;
  const marker = `${NM_DIR}/.complete`;
  if (exists(marker)) return tree;
  await Deno.mkdir(NM_DIR, { recursive: true });
  await Deno.remove(tree, { recursive: true }).catch(() => {});
  console.error(`generating ${NM_FILES} files under ${tree} ...`);
  const t = performance.now();
  generateNodeModules(tree);
  await Deno.writeTextFile(marker, `${NM_FILES} files\n`);
  console.error(`generated in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return tree;
}

// ---------------------------------------------------------------------------------------------
// Debian root filesystem

function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

async function ensureRootfs(): Promise<string> {
  const done = `${ROOTFS_DIR}/rootfs`, tmp = `${ROOTFS_DIR}/rootfs.tmp`;
  await Deno.mkdir(ROOTFS_DIR, { recursive: true });
  // One builder at a time among processes using the lock; `rootfs.tmp` also means "being built".
  using lock = await Deno.open(`${ROOTFS_DIR}/.lock`, { create: true, write: true });
  await lock.lock(true);
  for (let waited = 0; !exists(done) && exists(tmp) && waited < 900; waited += 5) {
    if (waited === 0) console.error(`waiting for ${tmp} to become ${done} ...`);
    await new Promise((r) => setTimeout(r, 5000));
  }
  if (exists(done)) return done;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  console.error(`debootstrap --variant=minbase bookworm ${tmp} ...`);
  const o = await new Deno.Command("debootstrap", {
    args: ["--variant=minbase", "bookworm", tmp],
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!o.success) throw new Error("debootstrap failed");
  await Deno.rename(tmp, done);
  return done;
}

// ---------------------------------------------------------------------------------------------
// Page cache eviction (file data) through posix_fadvise(POSIX_FADV_DONTNEED)

const libc = Deno.dlopen("libc.so.6", {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
}).symbols;
const O_RDONLY_NOFOLLOW = 0o400000;
const POSIX_FADV_DONTNEED = 4;

export function evict(path: string): number {
  let n = 0;
  const enc = new TextEncoder();
  const walk = (p: string) => {
    for (const e of Deno.readDirSync(p)) {
      const c = `${p}/${e.name}`;
      if (e.isDirectory) walk(c);
      else if (e.isFile) {
        const fd = libc.open(enc.encode(c + "\0"), O_RDONLY_NOFOLLOW, 0);
        if (fd < 0) continue;
        libc.posix_fadvise(fd, 0n, 0n, POSIX_FADV_DONTNEED);
        libc.close(fd);
        n++;
      }
    }
  };
  walk(path);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Measurement

export interface Sample {
  wall: number;
  cpu: number;
  rssMiB: number;
}

async function sh(cmd: string): Promise<void> {
  const o = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "null", stderr: "piped" }).output();
  if (!o.success) throw new Error(`${cmd}: ${new TextDecoder().decode(o.stderr)}`);
}

export async function timed(cmd: string): Promise<Sample> {
  const o = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "TIME %e %U %S %M", "sh", "-c", cmd],
    stdout: "null",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(o.stderr);
  if (!o.success) throw new Error(`${cmd}: ${err}`);
  const m = /TIME ([0-9.]+) ([0-9.]+) ([0-9.]+) ([0-9]+)/.exec(err)!;
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), rssMiB: Number(m[4]) / 1024 };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Case {
  name: string;
  /** Not timed: moves the previous outputs aside and prepares (e.g. a fresh repository). */
  setup: () => Promise<void>;
  cmd: string;
}

function cases(src: string, out: string, trash: Trash, bundle: boolean, containerRoot: boolean): Case[] {
  // The previous run's output is moved aside, not deleted (./bench_trash.ts); main() deletes the lot at
  // the end.
  const aside = async (...paths: string[]) => {
    for (const p of paths) await trash.moveAside(p);
  };
  // As the launchers run it (dist/cfsctl, deno compile): with their V8 flags (docs/performance.md#memory).
  const flags = `--v8-flags=${V8_FLAGS}`;
  const cli = bundle
    ? `${DENO} run -A --no-config ${flags} ${ROOT}dist/cfsctl.js`
    : `${DENO} run -A ${flags} ${ROOT}main.ts`;
  return [
    {
      name: "reference: cp -a + fsverity digest",
      setup: () => aside(`${out}/dst`),
      cmd:
        `cp -a ${src} ${out}/dst && find ${out}/dst -type f -print0 | xargs -0 fsverity digest > /dev/null`,
    },
    {
      name: "mkcomposefs --digest-store",
      setup: () => aside(`${out}/store`, `${out}/image.cfs`),
      cmd: `${cli} mkcomposefs --digest-store ${out}/store ${src} ${out}/image.cfs`,
    },
    {
      name: "cfsctl create-image",
      setup: async () => {
        await aside(`${out}/repo`);
        await sh(`${cli} --repo ${out}/repo init --insecure --algorithm fsverity-sha256-12`);
      },
      // Not a root filesystem: read it as is (no /usr to give the root its metadata).
      cmd: `${cli} --repo ${out}/repo create-image${
        containerRoot ? "" : " --no-propagate-usr-to-root"
      } ${src} bench`,
    },
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
      tree: { type: "string", default: "nodemodules,rootfs" },
      only: { type: "string" },
      bundle: { type: "boolean", default: false },
      out: { type: "string", default: "/var/tmp/cfsctl-bench-create-image" },
    },
  });
  const runs = Number(values.runs);
  const out = values.out!;
  await Deno.mkdir(out, { recursive: true });
  const trash = new Trash(`${out}/trash`);
  if (values.bundle && !exists(`${ROOT}dist/cfsctl.js`)) {
    await sh(`cd ${ROOT} && ${DENO} run -A scripts/build.ts bundle`);
  }
  for (const tree of values.tree!.split(",")) {
    const src = tree === "rootfs" ? await ensureRootfs() : await ensureNodeModules();
    const table = cases(src, out, trash, values.bundle!, tree === "rootfs").filter((c) =>
      !values.only || c.name.includes(values.only)
    );
    const samples = table.map(() => [] as Sample[]);
    for (let r = 0; r < runs; r++) {
      for (let i = 0; i < table.length; i++) {
        await table[i].setup();
        await sh("sync");
        const files = evict(src);
        const s = await timed(table[i].cmd);
        samples[i].push(s);
        console.error(
          `${tree} run ${r + 1} ${table[i].name}: ${s.wall.toFixed(2)} s wall, ${s.cpu.toFixed(2)} s CPU, ` +
            `${s.rssMiB.toFixed(0)} MiB (${files} files evicted)`,
        );
      }
    }
    console.log(`\n${tree}: ${src} (median of ${runs} runs, source file data evicted before each run)`);
    console.log("| command | wall s | CPU s | peak RSS MiB |\n|---|---|---|---|");
    for (let i = 0; i < table.length; i++) {
      const m = (f: (s: Sample) => number) => median(samples[i].map(f));
      console.log(
        `| ${table[i].name} | ${m((s) => s.wall).toFixed(2)} | ${m((s) => s.cpu).toFixed(2)} | ${
          m((s) => s.rssMiB).toFixed(0)
        } |`,
      );
    }
    for (const c of table) console.log(`- ${c.name}: \`${c.cmd}\``);
  }
  for (const d of ["dst", "store", "image.cfs", "repo"]) await trash.moveAside(`${out}/${d}`);
  await trash.empty();
}

if (import.meta.main) await main();
