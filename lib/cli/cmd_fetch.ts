// `cfsctl fetch URL NAME` (docs/fetch.md): a stream and everything it references from a web server
// serving a repository directory. The fetch code is loaded when the action starts.
import { type Command, Option } from "commander";
import { CfsError, UsageError } from "../errors.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import type { FetchOptions, FetchResult, ObjectFetchStats } from "../http_fetch/fetch.ts";
import type { Repository } from "../repository/repository.ts";
import { outJson, outln } from "./output.ts";
import { examplesText, globalsOf } from "./program.ts";
import { createReporter } from "./progress_render.ts";
import { addProgressOptions, parseBool, parseCount } from "./common_options.ts";

/** How to start this program again: deno + script (source or bundle), or a compiled binary alone. */
function selfCommand(): string[] {
  const exe = Deno.execPath();
  if (/(^|\/)deno$/.test(exe) && Deno.mainModule.startsWith("file:")) {
    const path = new URL(Deno.mainModule).pathname;
    return [exe, "run", "-A", path.endsWith(".js") ? "--no-config" : "--no-check", path];
  }
  return [exe];
}

/** Below this many missing objects one process does it all (a helper costs ~0.2 s to start). */
const MIN_SHARED = 32;

/**
 * Shares the missing objects out between this process and `procs - 1` helper processes
 * (`cfsctl fetch URL - --object-list FILE`): hashing and writing objects is CPU work, and one
 * process does it on one thread.
 */
function sharedFetcher(
  repo: Repository,
  url: string,
  procs: number,
  jobs: number,
  fetchOpts: FetchOptions,
  helperArgs: string[],
  remoteArgs: string[],
): (ids: ObjectId[]) => Promise<ObjectFetchStats> {
  return async (ids) => {
    const { fetchObjects } = await import("../http_fetch/fetch.ts");
    const missing: ObjectId[] = [];
    for (const id of ids) if (!(await repo.hasObject(id))) missing.push(id);
    const present = ids.length - missing.length;
    const n = missing.length >= MIN_SHARED ? procs : 1;
    const perProc = Math.max(1, Math.ceil(jobs / n));
    const shards: ObjectId[][] = Array.from({ length: n }, () => []);
    missing.forEach((id, i) => shards[i % n].push(id));
    const [cmd, ...prefix] = selfCommand();
    const helper = async (shard: ObjectId[]): Promise<ObjectFetchStats> => {
      const file = await Deno.makeTempFile({ prefix: "cfsctl-fetch-objects-" });
      try {
        await Deno.writeTextFile(file, shard.map((id) => id.hex()).join("\n") + "\n");
        const o = await new Deno.Command(cmd, {
          args: [
            ...prefix,
            "--repo",
            repo.path,
            ...helperArgs,
            "fetch",
            url,
            "-",
            "--object-list",
            file,
            "--json",
            "--jobs",
            String(perProc),
            ...remoteArgs,
          ],
          env: { CFSCTL_INVOKED_AS: "cfsctl" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        if (o.code !== 0) {
          const text = new TextDecoder().decode(o.stderr).trim().replace(/^error: /, "");
          throw new CfsError(text || `helper process exited with status ${o.code}`);
        }
        return JSON.parse(new TextDecoder().decode(o.stdout));
      } finally {
        await Deno.remove(file).catch(() => {});
      }
    };
    const results = await Promise.allSettled([
      fetchObjects(repo, url, shards[0], { ...fetchOpts, concurrency: perProc }),
      ...shards.slice(1).map(helper),
    ]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const sum = { fetched: 0, present, bytes: 0, processes: n };
    for (const r of results as PromiseFulfilledResult<ObjectFetchStats>[]) {
      sum.fetched += r.value.fetched;
      sum.present += r.value.present;
      sum.bytes += r.value.bytes;
    }
    return sum;
  };
}

export function registerFetchCommand(program: Command): void {
  const cmd = program
    .command("fetch")
    .description("download a stream and the streams and objects it references from a web-served repository")
    .argument("<URL>", "base URL of a repository directory served over http(s) (streams/…, objects/XX/…)")
    .argument("<NAME>", "stream below streams/: a content id (oci-manifest-sha256:…) or refs/<name>")
    .option("--cert-dir <DIR>", "TLS certificates (*.crt CAs, *.cert/*.key client pair) instead of certs.d")
    .option("--tls-verify [BOOL]", "verify the server's certificate (false: accept any; digests are checked)")
    .option("--creds <USER:PASS>", "HTTP basic authentication")
    .option("--retries <N>", "retries for failed requests and interrupted downloads (default 4)")
    .option("--jobs <N>", "parallel object downloads (default 4)")
    .option(
      "--threads <N>",
      "threads downloading, writing and hashing objects (default: the cores, at most 4; 0: the main thread)",
    )
    .option(
      "--processes <N>",
      "processes sharing the hashing and writing of objects (default 1: this process only)",
    )
    .addOption(
      new Option("--object-list <FILE>", "helper mode: fetch only these object ids (hex, one a line)")
        .hideHelp(),
    )
    .option("--json", "print the result as JSON");
  addProgressOptions(cmd)
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo fetch https://cdn.example/repo refs/oci/myimage",
        "cfsctl fetch http://10.0.0.1:8000/ oci-manifest-sha256:<hex> --json",
      ) + "\nEvery object's fs-verity digest is checked; objects already present are not downloaded.\n" +
        "Serve a repository with any static web server, e.g. `python3 -m http.server -d /var/tmp/repo`.\n",
    )
    .action(fetchAction);
}

// deno-lint-ignore no-explicit-any
type FetchFlags = Record<string, any>;

async function fetchAction(url: string, name: string, opts: FetchFlags, cmd: Command): Promise<void> {
  const { fetchStream } = await import("../http_fetch/fetch.ts");
  const { openRepoFromGlobals } = await import("./repo_open.ts");
  const jobs = parseCount(opts.jobs, "--jobs", 256) ?? 4;
  if (jobs === 0) throw new UsageError("--jobs must be at least 1");
  const procs = parseCount(opts.processes, "--processes", 64) ?? 1;
  if (procs === 0) throw new UsageError("--processes must be at least 1");
  const g = globalsOf(cmd);
  using repo = await openRepoFromGlobals(g);
  const fetchOpts: FetchOptions = {
    certDir: opts.certDir,
    tlsVerify: parseBool(opts.tlsVerify, "--tls-verify"),
    creds: opts.creds,
    retries: parseCount(opts.retries, "--retries", 100),
    concurrency: jobs,
    threads: parseCount(opts.threads, "--threads", 64),
  };
  if (opts.objectList) return await fetchObjectList(repo, url, opts.objectList, fetchOpts);
  const helperArgs: string[] = [];
  if (g.insecure) helperArgs.push("--insecure");
  if (g.requireVerity) helperArgs.push("--require-verity");
  const reporter = createReporter(opts.progress, opts.progressFd);
  const t0 = performance.now();
  const r = await fetchStream(repo, url, name, {
    ...fetchOpts,
    reporter,
    objectFetcher: procs > 1
      ? sharedFetcher(repo, url, procs, jobs, fetchOpts, helperArgs, remoteArgsOf(opts, fetchOpts))
      : undefined,
  }).catch((e) => {
    throw e instanceof CfsError ? e.within(`fetching ${name} from ${url}`) : e;
  });
  reporter.finish?.();
  const seconds = (performance.now() - t0) / 1000;
  if (opts.json) {
    outJson(fetchJson(r, seconds));
    return;
  }
  outln(`content ${r.contentDigest}`);
  outln(`verity ${r.verity.hex()}`);
}

/** Helper mode (`--object-list FILE`): fetch the listed objects only, print the counts as JSON. */
async function fetchObjectList(repo: Repository, url: string, file: string, fetchOpts: FetchOptions) {
  const { fetchObjects } = await import("../http_fetch/fetch.ts");
  const ids = (await Deno.readTextFile(file)).split("\n").filter((l) => l !== "")
    .map((l) => repo.parseObjectId(l));
  const r = await fetchObjects(repo, url, ids, fetchOpts).catch((e) => {
    throw e instanceof CfsError ? e.within(`fetching objects from ${url}`) : e;
  });
  outJson(r);
}

/** The remote options a helper process is given again. */
function remoteArgsOf(opts: FetchFlags, fetchOpts: FetchOptions): string[] {
  const remoteArgs: string[] = [];
  if (opts.certDir) remoteArgs.push("--cert-dir", opts.certDir);
  if (fetchOpts.tlsVerify !== undefined) remoteArgs.push(`--tls-verify=${fetchOpts.tlsVerify}`);
  if (opts.creds) remoteArgs.push("--creds", opts.creds);
  if (fetchOpts.retries !== undefined) remoteArgs.push("--retries", String(fetchOpts.retries));
  return remoteArgs;
}

function fetchJson(r: FetchResult, seconds: number) {
  return {
    content: r.contentDigest,
    verity: r.verity.hex(),
    linked: r.linked,
    stats: {
      streams: r.stats.streams,
      streams_fetched: r.stats.streamsFetched,
      objects: r.stats.objects,
      objects_fetched: r.stats.objectsFetched,
      objects_present: r.stats.objectsPresent,
      images: r.stats.images,
      processes: r.stats.processes,
      threads: r.stats.threads,
      bytes_fetched: r.stats.bytesFetched,
      seconds: Math.round(seconds * 1000) / 1000,
    },
  };
}
