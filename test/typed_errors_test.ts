// The library throws only typed errors (lib/errors.ts: CfsError and its subclasses), so the CLI can map
// every failure to a message and an exit code and callers can tell kinds apart (docs/structure.md).
// Checked on the sources: every `throw new X(` in lib/ names a class that descends from CfsError,
// found by following `class A extends B` through lib/. The few exceptions are listed with the reason.
import { assert, assertEquals } from "./helpers/assert.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";

/** Classes thrown in lib/ that are not CfsErrors: where they may be thrown, and why. */
const ALLOWED: Record<string, { where: string; why: string }> = {
  Error: {
    where: "lib/linux/block_hash_thread.ts",
    why: "source text run in a fresh isolate (a hashing thread): it cannot import lib/errors.ts",
  },
  StallError: {
    where: "lib/oci/transport/registry/",
    why: "a transient signal inside the registry retry loops; the last one becomes a TransportError",
  },
  ExitCode: { where: "lib/cli/", why: "the CLI's own 'exit with this code' signal" },
};

async function libSources(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.name.endsWith(".ts")) out.set(p.slice(PROJECT_ROOT.length), await Deno.readTextFile(p));
    }
  };
  await walk(`${PROJECT_ROOT}lib`);
  return out;
}

/** Every class that descends from CfsError, by name. */
function cfsErrorClasses(sources: Map<string, string>): Set<string> {
  const parent = new Map<string, string>();
  for (const text of sources.values()) {
    for (const m of text.matchAll(/class\s+(\w+)\s+extends\s+(\w+)/g)) parent.set(m[1], m[2]);
  }
  const typed = new Set<string>(["CfsError"]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [child, base] of parent) {
      if (!typed.has(child) && typed.has(base)) {
        typed.add(child);
        grew = true;
      }
    }
  }
  return typed;
}

Deno.test("typed errors: lib/ throws only CfsError subclasses (listed exceptions aside)", async () => {
  const sources = await libSources();
  const typed = cfsErrorClasses(sources);
  assert(typed.has("InternalError") && typed.has("FormatError") && typed.has("KernelError"));
  const bad: string[] = [];
  for (const [path, text] of sources) {
    for (const m of text.matchAll(/throw new (\w+)\(/g)) {
      const name = m[1];
      if (typed.has(name)) continue;
      const line = text.slice(0, m.index).split("\n").length;
      const allowed = ALLOWED[name] !== undefined && path.startsWith(ALLOWED[name].where);
      // A class chosen at run time (`const E = cond ? A : B; throw new E(…)`) is checked where it is chosen.
      if (allowed || /^[A-Z]$/.test(name)) continue;
      bad.push(`${path}:${line}: throw new ${name}(…)`);
    }
    // Plain strings and template literals are not errors at all.
    for (const m of text.matchAll(/throw\s+[`"']/g)) {
      bad.push(`${path}:${text.slice(0, m.index).split("\n").length}: throws a string`);
    }
  }
  assertEquals(bad, [], "untyped throws in lib/ (see ALLOWED for the exceptions)");
});

Deno.test("typed errors: the checker sees an untyped throw", () => {
  const fake = new Map([["lib/x.ts", "class Mine extends Error {}\nthrow new Mine('x');"]]);
  assert(!cfsErrorClasses(fake).has("Mine"));
  const typedFake = new Map([["lib/x.ts", "class A extends CfsError {}\nclass B extends A {}"]]);
  assert(cfsErrorClasses(typedFake).has("B"));
});
