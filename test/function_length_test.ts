// The library's function-length rule (scripts/lint/function_length.ts, run by `deno lint` through
// deno.json): a function in lib/ over 80 lines fails the lint unless a `long:` comment right above it says
// why. These tests run the plugin on small fixtures, so the rule itself is known to bite; the lint of the
// real tree is part of `deno task check`.
import { assert, assertEquals } from "./helpers/assert.ts";
import { DENO, PROJECT_ROOT, tempDir } from "./helpers/cli.ts";

const PLUGIN = PROJECT_ROOT + "scripts/lint/function_length.ts";

function body(lines: number): string {
  return Array.from({ length: lines }, (_, i) => `  x += ${i};`).join("\n");
}

async function lint(files: Record<string, string>): Promise<{ code: number; out: string }> {
  await using dir = await tempDir("cfsctl-funclen-");
  await Deno.writeTextFile(`${dir.path}/deno.json`, JSON.stringify({ lint: { plugins: [PLUGIN] } }));
  for (const [name, text] of Object.entries(files)) {
    await Deno.mkdir(`${dir.path}/${name.slice(0, name.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${dir.path}/${name}`, text);
  }
  const o = await new Deno.Command(DENO, {
    args: ["lint", "--rules-exclude=prefer-const,no-unused-vars"],
    cwd: dir.path,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
  return { code: o.code, out };
}

Deno.test("function length: a long function, method or arrow in lib/ fails the lint, with its length", async () => {
  const r = await lint({
    "lib/long.ts": `export function f(): number {\n  let x = 0;\n${body(85)}\n  return x;\n}\n` +
      `export class C {\n  m(): number {\n    let x = 0;\n${body(90)}\n    return x;\n  }\n}\n` +
      `export const g = (): number => {\n  let x = 0;\n${body(79)}\n  return x;\n};\n`,
  });
  assert(r.code !== 0, r.out);
  assert(r.out.includes("function of 89 lines (over 80)"), r.out);
  assert(r.out.includes("function of 94 lines (over 80)"), r.out);
  assert(r.out.includes("function of 83 lines (over 80)"), r.out);
  assert(r.out.includes("Found 3 problems"), r.out);
});

Deno.test("function length: 80 lines pass, a `long:` reason above passes, files outside lib/ are not checked", async () => {
  const r = await lint({
    "lib/ok.ts": `export function f(): number {\n  let x = 0;\n${body(76)}\n  return x;\n}\n` +
      `// One pass over the header.\n// long: splitting costs a closure per entry on the hot path\n` +
      `export function h(): number {\n  let x = 0;\n${body(120)}\n  return x;\n}\n`,
    "test/t.ts": `export function t(): number {\n  let x = 0;\n${body(120)}\n  return x;\n}\n`,
  });
  assertEquals(r.code, 0, r.out);
});

Deno.test("function length: a reason separated from the function by a blank line does not count", async () => {
  const r = await lint({
    "lib/gap.ts": `// long: detached\n\nexport function f(): number {\n  let x = 0;\n${
      body(85)
    }\n  return x;\n}\n`,
  });
  assert(r.code !== 0, r.out);
  assert(r.out.includes("function of 89 lines (over 80)"), r.out);
});
