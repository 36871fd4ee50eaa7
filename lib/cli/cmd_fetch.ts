// `cfsctl fetch URL NAME` (docs/fetch.md): a stream and everything it references from a web server
// serving a repository directory. The fetch code is loaded when the action starts.
import { type Command, Option } from "commander";
import { CfsError, UsageError } from "../errors.ts";
import { outJson, outln } from "./output.ts";
import { examplesText, globalsOf } from "./program.ts";
import { createReporter } from "./progress_render.ts";

function parseBool(v: string | boolean | undefined, flag: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === true || v === "true") return true;
  if (v === false || v === "false") return false;
  throw new UsageError(`${flag} takes true or false, not ${JSON.stringify(v)}`);
}

function parseCount(v: string | undefined, flag: string, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new UsageError(`${flag} takes a whole number from 0 to ${max}, not ${JSON.stringify(v)}`);
  }
  return n;
}

export function registerFetchCommand(program: Command): void {
  program
    .command("fetch")
    .description("download a stream and the streams and objects it references from a web-served repository")
    .argument("<URL>", "base URL of a repository directory served over http(s) (streams/…, objects/XX/…)")
    .argument("<NAME>", "stream below streams/: a content id (oci-manifest-sha256:…) or refs/<name>")
    .option("--cert-dir <DIR>", "TLS certificates (*.crt CAs, *.cert/*.key client pair) instead of certs.d")
    .option("--tls-verify [BOOL]", "verify the server's certificate (false: accept any; digests are checked)")
    .option("--creds <USER:PASS>", "HTTP basic authentication")
    .option("--retries <N>", "retries for failed requests and interrupted downloads (default 4)")
    .option("--jobs <N>", "parallel object downloads (default 4)")
    .option("--json", "print the result as JSON")
    .addOption(
      new Option(
        "--progress <MODE>",
        "progress output on stderr (auto: bars on a terminal, else plain lines)",
      )
        .choices(["auto", "plain", "json", "none"]).default("auto"),
    )
    .option("--progress-fd <N>", "write progress to this file descriptor")
    .addHelpText(
      "after",
      examplesText(
        "cfsctl --repo /var/tmp/repo fetch https://cdn.example/repo refs/oci/myimage",
        "cfsctl fetch http://10.0.0.1:8000/ oci-manifest-sha256:<hex> --json",
      ) + "\nEvery object's fs-verity digest is checked; objects already present are not downloaded.\n" +
        "Serve a repository with any static web server, e.g. `python3 -m http.server -d /var/tmp/repo`.\n",
    )
    .action(async (url: string, name: string, opts, cmd: Command) => {
      const { fetchStream } = await import("../http_fetch/fetch.ts");
      const { openRepoFromGlobals } = await import("./repo_open.ts");
      const jobs = parseCount(opts.jobs, "--jobs", 256);
      if (jobs === 0) throw new UsageError("--jobs must be at least 1");
      using repo = await openRepoFromGlobals(globalsOf(cmd));
      const reporter = createReporter(opts.progress, opts.progressFd);
      const t0 = performance.now();
      const r = await fetchStream(repo, url, name, {
        certDir: opts.certDir,
        tlsVerify: parseBool(opts.tlsVerify, "--tls-verify"),
        creds: opts.creds,
        retries: parseCount(opts.retries, "--retries", 100),
        concurrency: jobs,
        reporter,
      }).catch((e) => {
        throw e instanceof CfsError ? e.within(`fetching ${name} from ${url}`) : e;
      });
      reporter.finish?.();
      const seconds = (performance.now() - t0) / 1000;
      if (opts.json) {
        outJson({
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
            bytes_fetched: r.stats.bytesFetched,
            seconds: Math.round(seconds * 1000) / 1000,
          },
        });
        return;
      }
      outln(`content ${r.contentDigest}`);
      outln(`verity ${r.verity.hex()}`);
    });
}
