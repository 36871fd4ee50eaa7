// Fixtures for the boot tests: a minimal PE image with a .cmdline section (what a UKI is to the
// code that reads it), a hand-made bootable tree on disk, and a cached Debian minbase root filesystem.
import { runTool } from "./process.ts";

/** A PE/COFF file with sections `.text` (dummy bytes) and `.cmdline` (CMDLINE + NUL). */
export function makePe(cmdline: string): Uint8Array {
  const text = new TextEncoder().encode("not really code");
  const cmd = new TextEncoder().encode(cmdline + "\0");
  const peOff = 0x40;
  const secTable = peOff + 24;
  const dataStart = secTable + 2 * 40;
  const out = new Uint8Array(dataStart + text.length + cmd.length);
  const dv = new DataView(out.buffer);
  out[0] = 0x4d;
  out[1] = 0x5a;
  dv.setUint32(0x3c, peOff, true);
  dv.setUint32(peOff, 0x00004550, true);
  dv.setUint16(peOff + 4, 0x8664, true);
  dv.setUint16(peOff + 6, 2, true);
  dv.setUint16(peOff + 20, 0, true); // no optional header
  const sections: [string, Uint8Array][] = [[".text", text], [".cmdline", cmd]];
  let at = dataStart;
  sections.forEach(([name, data], i) => {
    const s = secTable + i * 40;
    out.set(new TextEncoder().encode(name), s);
    dv.setUint32(s + 8, data.length, true); // VirtualSize
    dv.setUint32(s + 16, data.length, true); // SizeOfRawData
    dv.setUint32(s + 20, at, true); // PointerToRawData
    out.set(data, at);
    at += data.length;
  });
  return out;
}

async function write(path: string, data: string | Uint8Array): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  if (typeof data === "string") await Deno.writeTextFile(path, data);
  else await Deno.writeFile(path, data);
}

/**
 * A bootable tree at DIR: a BLS entry naming files in /boot, a UKI (+ addon) in /boot/EFI/Linux, a
 * UKI and a plain kernel + initramfs in /usr/lib/modules/6.1.0, os-release, junk in /boot and
 * /sysroot (the transform must empty both). `ukiCmdline` goes into both UKIs' .cmdline.
 */
export async function makeBootTree(dir: string, opts: { ukiCmdline?: string } = {}): Promise<void> {
  const uki = makePe(opts.ukiCmdline ?? "quiet composefs=?" + "0".repeat(128));
  await write(`${dir}/usr/lib/modules/6.1.0/vmlinuz`, "plain kernel 6.1.0\n".repeat(10));
  await write(`${dir}/usr/lib/modules/6.1.0/initramfs.img`, "plain initramfs 6.1.0\n".repeat(10));
  await write(`${dir}/usr/lib/modules/6.1.0/uki-6.1.0.efi`, uki);
  await write(`${dir}/usr/lib/os-release`, 'NAME="Test OS"\nPRETTY_NAME="Test OS 42"\nVERSION_ID=42\n');
  await write(`${dir}/usr/bin/tool`, "#!/bin/sh\necho tool\n");
  await write(
    `${dir}/boot/loader/entries/test-6.1.conf`,
    "title Test OS\nversion 6.1\nlinux /vmlinuz-6.1\ninitrd /initramfs-6.1.img\noptions quiet rw\n",
  );
  await write(`${dir}/boot/loader/entries/README`, "not an entry\n");
  await write(`${dir}/boot/vmlinuz-6.1`, "bls kernel\n".repeat(10));
  await write(`${dir}/boot/initramfs-6.1.img`, "bls initramfs\n".repeat(10));
  await write(`${dir}/boot/EFI/Linux/test.efi`, uki);
  await write(`${dir}/boot/EFI/Linux/test.efi.extra.d/debug.addon.efi`, makePe("debug"));
  await write(`${dir}/sysroot/ostree/leftover`, "x\n");
  await write(`${dir}/etc/hostname`, "test\n");
  await Deno.mkdir(`${dir}/var/log`, { recursive: true });
}

export const ROOTFS_CACHE = "/var/tmp/cfsctl-boot-rootfs";

/**
 * A Debian bookworm minbase root filesystem (debootstrap, ~70 s the first time), cached under
 * /var/tmp/cfsctl-boot-rootfs/rootfs, with an empty /sysroot added (a bootable image needs one).
 */
export async function debianRootfs(): Promise<string> {
  const dir = `${ROOTFS_CACHE}/rootfs`;
  try {
    await Deno.stat(`${ROOTFS_CACHE}/.complete`);
    return dir;
  } catch { /* build it */ }
  await Deno.mkdir(ROOTFS_CACHE, { recursive: true });
  const tmp = `${ROOTFS_CACHE}/tmp`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await runTool("debootstrap", ["--variant=minbase", "bookworm", tmp]);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await runTool("sh", ["-c", `rm -rf ${tmp}/var/cache/apt/archives/*.deb ${tmp}/var/lib/apt/lists/*`]);
  await Deno.mkdir(`${tmp}/sysroot`, { recursive: true });
  await Deno.rename(tmp, dir);
  await Deno.writeTextFile(`${ROOTFS_CACHE}/.complete`, "");
  return dir;
}
