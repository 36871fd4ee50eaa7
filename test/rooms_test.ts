// The rooms of lib/ (its top-level directories, plus lib/errors.ts) import one way: from a higher room
// to a lower one, never back, so a room can be read, tested and changed knowing only the rooms below
// it. Checked on the import graph read from the sources: value imports, `import type`, re-exports and
// dynamic `import("…")` all count (a type arrow couples the rooms as much as a value arrow).
//
// The order, lowest first. Rooms on the same line are peers at the bottom: they import nothing but
// each other (acyclically) and lib/errors.ts.
//   errors.ts, util, progress   shared leaves: typed errors, byte helpers, progress events
//   linux                       syscalls, ioctls and FFI, with the kernel's constants
//   compress                    codecs: gzip and zstd frames, choosing the native decoder
//   fsverity                    the object id and its digest (userspace and kernel-measured)
//   objects                     the content-addressed object store (room being created)
//   splitstream                 the splitstream format
//   tree                        the in-memory file tree, its scan and transforms
//   dumpfile                    the dumpfile text format of a tree
//   erofs                       the EROFS image of a tree
//   repository                  the on-disk repository; above erofs because gc and fsck read images
//   oci                         OCI images: transports, tar, layers, flattening
//   http_fetch                  `cfsctl fetch`: fetches a repository's OCI streams over HTTP
//   mount                       mounting images (EROFS + overlayfs through the new mount API)
//   boot                        booting from an image (composefs-setup-root, boot entries)
//   varlink                     the varlink service over the repository, oci and mount
//   cli                         argument parsing, rendering, exit codes
import { assert, assertEquals } from "./helpers/assert.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";

const ORDER: string[][] = [
  ["errors.ts", "util", "progress"],
  ["linux"],
  ["compress"],
  ["fsverity"],
  ["objects"],
  ["splitstream"],
  ["tree"],
  ["dumpfile"],
  ["erofs"],
  ["repository"],
  ["oci"],
  ["http_fetch"],
  ["mount"],
  ["boot"],
  ["varlink"],
  ["cli"],
];

/**
 * Upward arrows tolerated for now, each with the reason and what removes it: delete the entry with
 * the arrow. Any other upward arrow fails the test.
 */
const EXCEPTIONS: { from: string; to: string; why: string }[] = [];

const IMPORT_FROM = /^\s*(?:import|export)\b[^;"']*?\bfrom\s*["']([^"']+)["']/gm;
const IMPORT_BARE = /^\s*import\s*["']([^"']+)["']/gm;
const IMPORT_DYNAMIC = /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(PROJECT_ROOT + dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await tsFiles(p));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(p);
  }
  return out.sort();
}

/** Every relative import of every file under lib/, as project-relative paths. */
async function importEdges(): Promise<{ from: string; to: string }[]> {
  const edges: { from: string; to: string }[] = [];
  for (const file of await tsFiles("lib")) {
    const src = await Deno.readTextFile(PROJECT_ROOT + file);
    for (const re of [IMPORT_FROM, IMPORT_BARE, IMPORT_DYNAMIC]) {
      for (const m of src.matchAll(re)) {
        if (!m[1].startsWith(".")) continue;
        edges.push({ from: file, to: new URL(m[1], `file:///${file}`).pathname.slice(1) });
      }
    }
  }
  return edges;
}

/** `lib/oci/tar/reader.ts` → `oci`; `lib/errors.ts` → `errors.ts`. */
function roomOf(path: string): string {
  return path.split("/")[1];
}

const LEVEL = new Map(ORDER.flatMap((rooms, level) => rooms.map((r) => [r, level] as const)));

Deno.test("rooms: the import graph reader sees static, type, re-export and dynamic imports", async () => {
  const edges = await importEdges();
  const has = (from: string, to: string) => edges.some((e) => e.from === from && e.to === to);
  // one known arrow of each kind, so a broken pattern cannot make the checks below pass vacuously
  assert(has("lib/cli/main.ts", "lib/cli/program.ts"), "static import");
  assert(has("lib/tree/scan.ts", "lib/objects/store.ts"), "import type");
  assert(has("lib/splitstream/mod.ts", "lib/splitstream/format.ts"), "re-export");
  assert(edges.some((e) => e.from.startsWith("lib/cli/cmd_") && e.to === "lib/cli/oci_impl.ts"), "dynamic");
  assert(edges.length > 500, `only ${edges.length} imports found`);
});

Deno.test("rooms: every room of lib/ has its place in the order", async () => {
  const rooms = new Set((await tsFiles("lib")).map(roomOf));
  assertEquals([...rooms].filter((r) => !LEVEL.has(r)), []);
});

Deno.test("rooms: no import points from a lower room to a higher one", async () => {
  const upward: string[] = [];
  for (const { from, to } of await importEdges()) {
    const a = roomOf(from), b = roomOf(to);
    if (a === b || LEVEL.get(b)! < LEVEL.get(a)!) continue;
    if (LEVEL.get(a) === 0 && LEVEL.get(b) === 0) continue; // peers at the bottom: checked for cycles below
    if (EXCEPTIONS.some((x) => x.from === from && x.to === to)) continue;
    upward.push(`${from} (${a}) -> ${to} (${b})`);
  }
  assertEquals(upward, []);
});

Deno.test("rooms: the rooms' import graph has no cycle", async () => {
  const next = new Map<string, Set<string>>();
  for (const { from, to } of await importEdges()) {
    const a = roomOf(from), b = roomOf(to);
    if (a === b || EXCEPTIONS.some((x) => x.from === from && x.to === to)) continue;
    if (!next.has(a)) next.set(a, new Set());
    next.get(a)!.add(b);
  }
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (room: string, path: string[]) => {
    if (state.get(room) === "done") return;
    if (state.get(room) === "open") {
      cycles.push([...path.slice(path.indexOf(room)), room].join(" -> "));
      return;
    }
    state.set(room, "open");
    for (const b of next.get(room) ?? []) visit(b, [...path, room]);
    state.set(room, "done");
  };
  for (const room of next.keys()) visit(room, []);
  assertEquals(cycles, []);
});
