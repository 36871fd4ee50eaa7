// Work to finish before the process exits. Deno.exit() while a worker thread is still starting can
// crash the runtime (a segfault seen ~8 % of the time when a command failed right after the fs-verity
// hashing threads were warmed: docs/structure.md#threads), so code that starts threads ahead of need
// registers how to stop them, and the CLI runs these hooks before it exits.
const hooks = new Set<() => Promise<void> | void>();

/** Registers `stop`, run once by runShutdownHooks(); returns a function that unregisters it. */
export function addShutdownHook(stop: () => Promise<void> | void): () => void {
  hooks.add(stop);
  return () => hooks.delete(stop);
}

/** Runs every registered hook (errors ignored: the process is exiting anyway). */
export async function runShutdownHooks(): Promise<void> {
  const all = [...hooks];
  hooks.clear();
  await Promise.all(all.map(async (stop) => {
    try {
      await stop();
    } catch { /* exiting */ }
  }));
}
