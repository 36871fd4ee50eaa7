// `cfsctl varlink [--address unix:PATH]` (docs/varlink.md): starts the varlink server of
// lib/varlink on a unix socket, or on the socket systemd passed (LISTEN_FDS/LISTEN_PID, fd 3).
import type { Command } from "commander";
import { UsageError } from "../errors.ts";
import { globalsOf } from "./program.ts";
import { examplesText } from "./program.ts";

/** `cfsctl varlink`, and the same service as `cfsctl oci varlink` (README.md#command-reference). */
export function registerVarlinkCommand(program: Command): void {
  defineVarlink(program, "cfsctl varlink");
  const oci = program.commands.find((c) => c.name() === "oci");
  if (oci) defineVarlink(oci, "cfsctl oci varlink");
}

function defineVarlink(parent: Command, usage: string): void {
  parent
    .command("varlink")
    .description("serve the varlink API (org.composefs.Repository, org.composefs.Oci) on a unix socket")
    .option("--address <unix:PATH>", "socket to listen on (omit under systemd socket activation)")
    .option(
      "--stall-timeout <SECONDS>",
      "drop a client that reads none of its replies for this long (default 30; env CFSCTL_VARLINK_STALL_TIMEOUT)",
    )
    .addHelpText(
      "after",
      examplesText(
        `${usage} --address unix:/run/composefs.sock`,
        `${usage.replace("cfsctl", "cfsctl --insecure")} --address /tmp/cfsctl.sock`,
      ) + `\nUnder systemd socket activation (e.g. \`systemd-socket-activate -l SOCKET ${usage}\`)\n` +
        "the passed socket is used and --address is not needed.\nInterfaces and methods: docs/varlink.md. Repositories are opened by the client " +
        "(OpenRepository);\n--insecure, --require-verity and --no-upgrade apply to every repository it opens.\n",
    )
    .action(async (opts, cmd: Command) => {
      const { activationFds, streamSocketKind } = await import("../linux/fd_stream.ts");
      const { serveFd, serveUnix } = await import("../varlink/server.ts");
      const { CfsctlService } = await import("../varlink/service.ts");
      const { VERSION } = await import("./version.ts");
      const g = globalsOf(cmd);
      const service = new CfsctlService({ version: VERSION }, {
        insecure: g.insecure || undefined,
        requireVerity: g.requireVerity || undefined,
        noUpgrade: g.noUpgrade || undefined,
      });
      const serveOpts = { stallTimeoutMs: stallTimeoutMs(opts.stallTimeout) };
      const fds = activationFds();
      let server;
      if (fds.length > 0) {
        const kind = streamSocketKind(fds[0]);
        if (!kind) throw new UsageError(`socket activation: fd ${fds[0]} is not a stream socket`);
        server = serveFd(fds[0], kind, service, serveOpts);
      } else {
        const addr: string | undefined = opts.address;
        if (!addr) throw new UsageError("no --address given and not socket-activated");
        const path = addr.startsWith("unix:") ? addr.slice(5).replace(/;.*$/, "") : addr;
        if (path === "" || path.startsWith("@")) {
          throw new UsageError(
            `--address takes unix:PATH (a filesystem socket), not ${JSON.stringify(addr)}`,
          );
        }
        server = serveUnix(path, service, serveOpts);
      }
      const stop = () => server.close();
      Deno.addSignalListener("SIGTERM", stop);
      Deno.addSignalListener("SIGINT", stop);
      try {
        await server.done;
      } finally {
        Deno.removeSignalListener("SIGTERM", stop);
        Deno.removeSignalListener("SIGINT", stop);
        service.closeAll();
      }
    });
}

/** --stall-timeout, else CFSCTL_VARLINK_STALL_TIMEOUT, in milliseconds (undefined: the default). */
function stallTimeoutMs(option: string | undefined): number | undefined {
  const v = option ?? Deno.env.get("CFSCTL_VARLINK_STALL_TIMEOUT");
  if (v === undefined || v === "") return undefined;
  const s = Number(v);
  if (!Number.isFinite(s) || s <= 0 || s > 86_400) {
    const from = option !== undefined ? "--stall-timeout" : "CFSCTL_VARLINK_STALL_TIMEOUT";
    throw new UsageError(`${from} takes seconds (above 0, at most 86400), not ${JSON.stringify(v)}`);
  }
  return Math.round(s * 1000);
}
