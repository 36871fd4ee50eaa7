// Writing an image's boot entry into a boot directory (`oci prepare-boot`, docs/boot.md): a BLS
// type 1 entry (its kernel and initramfs copied, the composefs karg and extra arguments on its
// `options` line) or a UKI (copied; its own .cmdline must already name this image).
import { FormatError, InvalidArgumentError } from "../errors.ts";
import { bstrToUtf8 } from "../util/bytes.ts";
import { BlsEntry, type BootEntry, type LeafReader, type Type1Entry } from "./entries.ts";
import { parseComposefsKarg } from "./karg.ts";
import { ukiCmdline } from "./uki.ts";

export interface WriteBootOptions {
  bootdir: string;
  /** Renames the entry (`ID.conf`, files under `/ID/`; `ID.efi` for a UKI). */
  entryId?: string;
  /** The composefs karg (`composefs=…` or `composefs.digest=…`). */
  karg: string;
  /** Image id the karg names (checked against a UKI's own command line). */
  imageHex: string;
  /** Extra kernel arguments (type 1 only). */
  cmdline: string[];
  read: LeafReader;
}

export interface WrittenBoot {
  kind: "bls" | "uki";
  /** Files written, relative to the boot directory, the entry (or UKI) last. */
  files: string[];
  /** The BLS entry text (type 1). */
  entry?: string;
}

/** A path below the boot directory from an image: relative, no `..`, no empty components. */
function safeRel(p: string, what: string): string {
  const rel = p.replace(/^\/+/, "");
  const parts = rel.split("/");
  if (rel === "" || parts.some((c) => c === "" || c === "." || c === "..")) {
    throw new FormatError(`${what}: path ${JSON.stringify(p)} is not a plain path below the boot directory`);
  }
  return rel;
}

async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeFile(tmp, data);
  await Deno.rename(tmp, path);
}

function osReleaseField(text: string, key: string): string | null {
  const m = new RegExp(`^${key}=(.*)$`, "m").exec(text);
  if (!m) return null;
  return m[1].trim().replace(/^"(.*)"$/, "$1").replace(/^'(.*)'$/, "$1");
}

async function plainToType1(e: Extract<BootEntry, { kind: "vmlinuz" }>, opts: WriteBootOptions) {
  if (!e.initramfs) {
    throw new FormatError(`/usr/lib/modules/${e.kver}/vmlinuz has no initramfs.img next to it`);
  }
  const id = opts.entryId ?? e.kver;
  let title = "composefs";
  let version = e.kver;
  if (e.osRelease) {
    const t = new TextDecoder().decode(await opts.read(e.osRelease, "/usr/lib/os-release"));
    title = osReleaseField(t, "PRETTY_NAME") ?? osReleaseField(t, "NAME") ?? title;
    const v = osReleaseField(t, "VERSION_ID");
    if (v) version = `${v} (${e.kver})`;
  }
  const entry = new BlsEntry(
    `# written by cfsctl oci prepare-boot\ntitle ${title}\nversion ${version}\n` +
      `linux /${id}/vmlinuz\ninitrd /${id}/initramfs.img\n`,
  );
  const t1: Type1Entry = {
    kind: "bls",
    filename: `${id}.conf`,
    entry,
    files: new Map([[`/${id}/vmlinuz`, e.vmlinuz], [`/${id}/initramfs.img`, e.initramfs]]),
  };
  return t1;
}

async function writeType1(t1: Type1Entry, opts: WriteBootOptions, renamed: boolean): Promise<WrittenBoot> {
  let files = t1.files;
  let filename = bstrToUtf8(t1.filename);
  if (opts.entryId !== undefined && !renamed) {
    const dir = `/${opts.entryId}`;
    t1.entry.relocate(dir);
    files = new Map([...files].map(([p, leaf]) => [`${dir}/${p.slice(p.lastIndexOf("/") + 1)}`, leaf]));
    filename = `${opts.entryId}.conf`;
  }
  t1.entry.addOption(opts.karg);
  for (const a of opts.cmdline) t1.entry.addOption(a);
  const written: string[] = [];
  for (const [p, leaf] of files) {
    const rel = safeRel(p, `boot entry ${filename}`);
    await writeFileAtomic(`${opts.bootdir}/${rel}`, await opts.read(leaf, p));
    written.push(rel);
  }
  const entryRel = `loader/entries/${safeRel(filename, "boot entry")}`;
  const text = t1.entry.toString();
  await writeFileAtomic(`${opts.bootdir}/${entryRel}`, new TextEncoder().encode(text));
  written.push(entryRel);
  return { kind: "bls", files: written, entry: text };
}

/** Writes ENTRY into opts.bootdir. */
export async function writeBootEntry(entry: BootEntry, opts: WriteBootOptions): Promise<WrittenBoot> {
  if (opts.entryId !== undefined) safeRel(opts.entryId, "--entry-id");
  if (opts.entryId?.includes("/")) {
    throw new InvalidArgumentError(`--entry-id ${opts.entryId} must not contain "/"`);
  }
  switch (entry.kind) {
    case "bls":
      return await writeType1(entry, opts, false);
    case "vmlinuz":
      return await writeType1(await plainToType1(entry, opts), opts, true);
    case "uki": {
      if (opts.cmdline.length > 0) {
        throw new InvalidArgumentError("--cmdline cannot be added to a UKI (its command line is signed)");
      }
      const what = `UKI ${
        entry.kver ? `/usr/lib/modules/${entry.kver}/` : "/boot/EFI/Linux/"
      }${entry.relPath}`;
      const bytes = await opts.read(entry.leaf, what);
      const karg = parseComposefsKarg(ukiCmdline(bytes, what));
      if (!karg || karg.hex !== opts.imageHex) {
        throw new FormatError(
          `${what}: its .cmdline names ${karg ? karg.text : "no composefs image"}, ` +
            `but this image is ${opts.imageHex} (rebuild the UKI with ${opts.karg})`,
        );
      }
      let rel = entry.relPath;
      if (opts.entryId !== undefined) {
        rel = `${rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/") + 1) : ""}${opts.entryId}.efi`;
      }
      rel = `EFI/Linux/${safeRel(rel, what)}`;
      await writeFileAtomic(`${opts.bootdir}/${rel}`, bytes);
      return { kind: "uki", files: [rel] };
    }
  }
}
