// SELinux relabelling against libselinux itself (python3-selinux's selabel_lookup with
// SELABEL_OPT_PATH, test/helpers/selabel_oracle.py) on Debian's selinux-policy-default file_contexts:
// every pattern compiles as a JavaScript RegExp, and every path of a real Debian minbase root
// filesystem (debootstrap, cached under /var/tmp/cfsctl-boot-rootfs) and of this host's /etc, parts
// of /usr and /var gets the label libselinux gives it. Then end to end: create-dumpfile --bootable of that
// root filesystem with the policy inside it labels each node as libselinux does.
import { assert, assertEquals } from "./helpers/assert.ts";
import { PROJECT_ROOT, runCli, tempDir } from "./helpers/cli.ts";
import { debianRootfs } from "./helpers/boot_fixtures.ts";
import { runTool } from "./helpers/process.ts";
import { FileContexts, type FileTypeCode, loadImagePolicy } from "../lib/boot/selabel.ts";
import { unescapeField } from "../lib/dumpfile/escape.ts";
import { utf8ToBstr } from "../lib/util/bytes.ts";

const POLICY_DIR = "/etc/selinux/default/contexts/files";
const FILE_CONTEXTS = `${POLICY_DIR}/file_contexts`;
const havePolicy = (() => {
  try {
    Deno.statSync(FILE_CONTEXTS);
    return true;
  } catch {
    return false;
  }
})();
const ignore = !havePolicy;
if (ignore) console.error("SKIP: selinux-policy-default is not installed (no " + FILE_CONTEXTS + ")");

const latin1 = new TextDecoder("latin1");

async function hostPolicy(): Promise<FileContexts> {
  const p = await loadImagePolicy(async (path) => {
    if (path === "/etc/selinux/config") {
      return new TextEncoder().encode("SELINUX=permissive\nSELINUXTYPE=default\n");
    }
    try {
      return await Deno.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
  });
  assert(p !== null);
  return p;
}

/** libselinux's answers for [path, st_mode] pairs (paths as byte strings). */
async function oracle(records: [string, number][]): Promise<string[]> {
  const input = records.map(([p, m]) => `${m.toString(8)} ${p}\0`).join("");
  const out = await runTool("/usr/bin/python3", [
    `${PROJECT_ROOT}test/helpers/selabel_oracle.py`,
    FILE_CONTEXTS,
  ], {
    stdin: Uint8Array.from(input, (c) => c.charCodeAt(0)),
  });
  const lines = latin1.decode(out).split("\n");
  lines.pop();
  assertEquals(lines.length, records.length, "one oracle answer per path");
  return lines;
}

function typeCode(mode: number): FileTypeCode {
  switch (mode & 0o170000) {
    case 0o040000:
      return "d";
    case 0o120000:
      return "l";
    case 0o020000:
      return "c";
    case 0o060000:
      return "b";
    case 0o010000:
      return "p";
    case 0o140000:
      return "s";
    default:
      return "-";
  }
}

/** [path inside the tree (byte string), st_mode] for everything under DIR (not crossing SKIP). */
function walkDisk(dir: string, skip: Set<string> = new Set()): [string, number][] {
  const out: [string, number][] = [];
  const stack: [string, string][] = [[dir, ""]];
  while (stack.length > 0) {
    const [abs, rel] = stack.pop()!;
    for (const e of Deno.readDirSync(abs || "/")) {
      const p = `${rel}/${utf8ToBstr(e.name)}`;
      const st = Deno.lstatSync(`${abs}/${e.name}`);
      out.push([p, st.mode!]);
      if (e.isDirectory && !skip.has(p)) stack.push([`${abs}/${e.name}`, p]);
    }
  }
  return out;
}

function compare(policy: FileContexts, records: [string, number][], expected: string[]): string[] {
  const bad: string[] = [];
  records.forEach(([p, m], i) => {
    if (expected[i] === "<<not-utf-8>>") return;
    const got = policy.lookup(p, typeCode(m)) ?? "<<none>>";
    if (got !== expected[i]) bad.push(`${p} (${typeCode(m)}): libselinux ${expected[i]}, we ${got}`);
  });
  return bad;
}

Deno.test({
  name:
    "selabel: every pattern of Debian's file_contexts compiles; labels of a Debian minbase root match libselinux",
  ignore,
  fn: async () => {
    const policy = await hostPolicy();
    const lines = latin1.decode(await Deno.readFile(FILE_CONTEXTS)).split("\n")
      .filter((l) => l.trim() !== "" && !l.trim().startsWith("#"));
    const homedirs = latin1.decode(await Deno.readFile(`${POLICY_DIR}/file_contexts.homedirs`)).split("\n")
      .filter((l) => l.trim() !== "" && !l.trim().startsWith("#"));
    assertEquals(policy.size, lines.length + homedirs.length, "every line became a spec");
    assert(policy.size > 5000, `a real policy (${policy.size} specs)`);
    const rootfs = await debianRootfs();
    const records: [string, number][] = [["/", Deno.lstatSync(rootfs).mode!], ...walkDisk(rootfs)];
    assert(records.length >= 2000, `${records.length} paths`);
    const expected = await oracle(records);
    const bad = compare(policy, records, expected);
    assertEquals(bad.slice(0, 20), [], `${bad.length} of ${records.length} labels differ`);
    // The corpus exercises many distinct labels, subs aliases (/bin → /usr/bin) and <<none>>-free paths.
    assert(new Set(expected).size >= 40, `${new Set(expected).size} distinct labels`);
    assertEquals(policy.lookup("/bin/sh", "l"), policy.lookup("/usr/bin/sh", "l"));
  },
});

Deno.test({
  name:
    "selabel: this host's /etc, /usr/{bin,sbin,lib/systemd,share/man} and /var get libselinux's labels (an extra corpus)",
  ignore,
  fn: async () => {
    const policy = await hostPolicy();
    const records: [string, number][] = [];
    for (const top of ["/etc", "/usr/bin", "/usr/sbin", "/usr/lib/systemd", "/usr/share/man", "/var"]) {
      records.push([top, Deno.lstatSync(top).mode!]);
      for (const [p, m] of walkDisk(top, new Set(["/tmp", "/lib/containers"]))) records.push([top + p, m]);
    }
    assert(records.length >= 2000, `${records.length} paths`);
    const expected = await oracle(records);
    const bad = compare(policy, records, expected);
    assertEquals(bad.slice(0, 20), [], `${bad.length} of ${records.length} labels differ`);
  },
});

Deno.test({
  name:
    "selabel: precedence rules on a synthetic policy (exact paths beat regexes, last line wins, types, <<none>>, subs)",
  ignore,
  fn: async () => {
    await using d = await tempDir();
    const fc = [
      "/opt/app/bin/tool  system_u:object_r:exact_t:s0",
      "/opt(/.*)?  system_u:object_r:opt_t:s0",
      "/opt/app(/.*)?  system_u:object_r:app_t:s0",
      "/opt/app/log(/.*)?  -d  system_u:object_r:logdir_t:s0",
      "/opt/app/private(/.*)?  <<none>>",
      "/srv/[^/]+\\.d  system_u:object_r:dotd_t:s0",
    ].join("\n") + "\n";
    await Deno.writeTextFile(`${d.path}/file_contexts`, fc);
    await Deno.writeTextFile(`${d.path}/file_contexts.subs`, "/data/app /opt/app\n");
    const policy = new FileContexts();
    policy.addSpecs(fc, "file_contexts");
    policy.addSubs("/data/app /opt/app\n", "file_contexts.subs", false);
    const records: [string, number][] = [
      ["/opt/app/bin/tool", 0o100755],
      ["/opt/app/bin/other", 0o100755],
      ["/opt/other", 0o100644],
      ["/opt/app/log", 0o040755],
      ["/opt/app/log/x", 0o100644],
      ["/opt/app/private/key", 0o100600],
      ["/srv/a.d", 0o040755],
      ["/srv/a/b.d", 0o040755],
      ["/data/app/bin/tool", 0o100755],
      ["/data/apple", 0o100755],
    ];
    const input = records.map(([p, m]) => `${m.toString(8)} ${p}\0`).join("");
    const out = latin1.decode(
      await runTool("/usr/bin/python3", [
        `${PROJECT_ROOT}test/helpers/selabel_oracle.py`,
        `${d.path}/file_contexts`,
      ], {
        stdin: new TextEncoder().encode(input),
      }),
    ).split("\n").slice(0, records.length);
    assertEquals(compare(policy, records, out), []);
    assertEquals(out.slice(0, 3), [
      "system_u:object_r:exact_t:s0",
      "system_u:object_r:app_t:s0",
      "system_u:object_r:opt_t:s0",
    ]);
    assertEquals(out[5], "<<none>>");
    assertEquals(out[8], "system_u:object_r:exact_t:s0", "subs alias");
  },
});

Deno.test({
  name:
    "create-dumpfile --bootable relabels a Debian root (policy inside the image) exactly as libselinux would",
  ignore,
  fn: async () => {
    await using d = await tempDir();
    const rootfs = await debianRootfs();
    const tree = `${d.path}/root`;
    await runTool("cp", ["-a", "--reflink=auto", rootfs, tree]);
    await Deno.mkdir(`${tree}/etc/selinux/default/contexts/files`, { recursive: true });
    await Deno.writeTextFile(`${tree}/etc/selinux/config`, "SELINUX=enforcing\nSELINUXTYPE=default\n");
    for (const f of ["file_contexts", "file_contexts.homedirs", "file_contexts.subs_dist"]) {
      await Deno.copyFile(`${POLICY_DIR}/${f}`, `${tree}/etc/selinux/default/contexts/files/${f}`);
    }
    const r = await runCli(["--no-repo", "create-dumpfile", "--bootable", tree]);
    assertEquals(r.code, 0, r.stderr);
    const records: [string, number][] = [];
    const labels: string[] = [];
    for (const line of r.stdout.split("\n")) {
      if (!line) continue;
      const f = line.split(" ");
      if (f[2].startsWith("@")) continue; // hard link: the label is on the canonical line
      records.push([unescapeField(f[0], "path"), parseInt(f[2], 8)]);
      const x = f.slice(11).find((x) => x.startsWith("security.selinux="));
      labels.push(x ? unescapeField(x.slice("security.selinux=".length), "label") : "<<none>>");
    }
    assert(records.length >= 2000, `${records.length} nodes`);
    const expected = await oracle(records);
    const bad = records.map(([p], i) => [p, expected[i], labels[i]]).filter(([, e, g]) => e !== g);
    assertEquals(bad.slice(0, 10), [], `${bad.length} of ${records.length} labels differ`);
  },
});
