import { assertEquals } from "./helpers/assert.ts";
import { runCli } from "./helpers/cli.ts";

Deno.test("cli: --version prints the version and exits 0", async () => {
  const r = await runCli(["--version"]);
  assertEquals(r.code, 0);
  assertEquals(r.stdout.startsWith("cfsctl-ts "), true);
});

Deno.test("cli: unknown command is a usage error (exit 2)", async () => {
  const r = await runCli(["no-such-command"]);
  assertEquals(r.code, 2);
});
