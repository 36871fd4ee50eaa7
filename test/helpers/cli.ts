// Runs the CLI as a child process (`deno run -A main.ts ...`), the way users do.
const ROOT = new URL("../../", import.meta.url).pathname;
export const DENO = Deno.execPath();
/** The program under test: the bundle when CFSCTL_TEST_BUNDLE names one (CI), else main.ts. */
const BUNDLE = Deno.env.get("CFSCTL_TEST_BUNDLE");
export const MAIN = BUNDLE ? (BUNDLE.startsWith("/") ? BUNDLE : ROOT + BUNDLE) : ROOT + "main.ts";
const RUN_FLAGS = MAIN.endsWith(".js") ? ["run", "-A", "--no-config"] : ["run", "-A", "--no-check"];
export const PROJECT_ROOT = ROOT;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

export async function runCli(
  args: string[],
  opts: { stdin?: Uint8Array | string; env?: Record<string, string>; invokedAs?: string; cwd?: string } = {},
): Promise<CliResult> {
  const env: Record<string, string> = { ...opts.env };
  if (opts.invokedAs) env.CFSCTL_INVOKED_AS = opts.invokedAs;
  const cmd = new Deno.Command(DENO, {
    args: [...RUN_FLAGS, MAIN, ...args],
    stdin: opts.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    env,
    cwd: opts.cwd,
  });
  const child = cmd.spawn();
  // Collect output while the input is written: a full pipe would otherwise deadlock both sides.
  const output = child.output();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin);
    await w.close();
  }
  const o = await output;
  return {
    code: o.code,
    stdout: new TextDecoder().decode(o.stdout),
    stderr: new TextDecoder().decode(o.stderr),
    stdoutBytes: o.stdout,
  };
}

/** A fresh temporary directory, removed by the returned dispose function. */
export async function tempDir(
  prefix = "cfsctl-test-",
): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** `cfsctl --repo REPO oci pull --progress none --json FLAGS REF NAME`, its JSON output parsed on success. */
export async function ociPullJson(
  repo: string,
  ref: string,
  flags: string[] = [],
  env?: Record<string, string>,
  name = "img",
): Promise<CliResult & { json?: any }> {
  const r = await runCli(
    ["--repo", repo, "oci", "pull", "--progress", "none", "--json", ...flags, ref, name],
    {
      env,
    },
  );
  return { ...r, json: r.code === 0 ? JSON.parse(r.stdout) : undefined };
}

/** `cfsctl --repo PATH init --insecure`; throws with its stderr when it fails. Returns PATH. */
export async function initInsecureRepo(path: string): Promise<string> {
  const r = await runCli(["--repo", path, "init", "--insecure"]);
  if (r.code !== 0) throw new Error(`init ${path} exited ${r.code}: ${r.stderr}`);
  return path;
}

/**
 * Sends `signal` to `child` unless it has already exited. A child can exit between a caller's "still
 * running?" check and the kill (its status promise resolves a turn later), and Deno then throws
 * "Child process has already terminated"; that race is not a test failure. Returns whether the signal
 * was sent.
 */
export function killIfRunning(child: Deno.ChildProcess, signal: Deno.Signal = "SIGKILL"): boolean {
  try {
    child.kill(signal);
    return true;
  } catch (e) {
    if (e instanceof TypeError && /already terminated/.test(e.message)) return false;
    throw e;
  }
}
