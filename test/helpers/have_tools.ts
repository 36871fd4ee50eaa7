// Whether external programs a test needs are installed (tests that need one skip visibly without it).

/** True when every tool in `names` runs (`NAME --version` exits 0). */
export function haveTools(...names: string[]): boolean {
  return names.every((name) => {
    try {
      return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
        .success;
    } catch {
      return false;
    }
  });
}
