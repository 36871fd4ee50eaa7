// Runs an external tool for tests: stdin fed while the output is read (a large input would otherwise
// deadlock on full pipes); throws with the tool's stderr when it fails; returns stdout.
export async function runTool(
  cmd: string,
  args: string[],
  opts: { cwd?: string; stdin?: Uint8Array } = {},
): Promise<Uint8Array> {
  const p = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    stdin: opts.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const feeding = opts.stdin
    ? (async () => {
      const w = p.stdin.getWriter();
      await w.write(opts.stdin!);
      await w.close();
    })()
    : Promise.resolve();
  const [out] = await Promise.all([p.output(), feeding]);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}
