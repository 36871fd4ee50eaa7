// What the running kernel offers for composefs mounts, for errors that name the missing feature
// instead of a bare errno.

/** File system types listed in /proc/filesystems (undefined when it cannot be read). */
export function kernelFilesystems(): Set<string> | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/filesystems");
    return new Set(text.split("\n").map((l) => l.trim().split(/\s+/).pop() ?? "").filter(Boolean));
  } catch {
    return undefined;
  }
}

/** Kernel release as [major, minor] (from /proc/sys/kernel/osrelease), or undefined. */
export function kernelVersion(): [number, number] | undefined {
  try {
    const m = /^(\d+)\.(\d+)/.exec(Deno.readTextFileSync("/proc/sys/kernel/osrelease"));
    return m ? [Number(m[1]), Number(m[2])] : undefined;
  } catch {
    return undefined;
  }
}

/** Describes a file system type the kernel refused to open (fsopen → ENODEV). */
export function missingFilesystemMessage(fsType: string, purpose: string): string {
  const fss = kernelFilesystems();
  const listed = fss
    ? (fss.has(fsType) ? "although /proc/filesystems lists it" : "not in /proc/filesystems")
    : "";
  const module = fsType === "overlay" ? "overlay" : fsType;
  return `the kernel does not support ${fsType} file systems (${purpose})` +
    (listed ? `: ${listed}` : "") + `; load the module (modprobe ${module}) or use a kernel built with it`;
}
