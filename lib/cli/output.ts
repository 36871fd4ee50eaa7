// Output helpers for the CLI. Only lib/cli/ writes to stdout/stderr.
const enc = new TextEncoder();

function writeAll(w: { writeSync(p: Uint8Array): number }, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += w.writeSync(data.subarray(off));
}

export function out(text: string): void {
  writeAll(Deno.stdout, enc.encode(text));
}
export function outln(text = ""): void {
  out(text + "\n");
}
export function outBytes(data: Uint8Array): void {
  writeAll(Deno.stdout, data);
}
export function err(text: string): void {
  writeAll(Deno.stderr, enc.encode(text));
}
export function errln(text = ""): void {
  err(text + "\n");
}
/** Pretty JSON (2-space indent) + newline on stdout. */
export function outJson(value: unknown): void {
  outln(JSON.stringify(value, null, 2));
}
