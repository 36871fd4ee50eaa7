// Human-readable numbers for messages and progress lines.

/** Bytes in binary units: `512 B`, `1.62 KiB`, `12.3 MiB`, `140 GiB` (3 significant digits). */
export function humanBytes(n: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${u[i]}`;
}
