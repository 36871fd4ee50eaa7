// Deno's Node compatibility layer (node:* modules) costs ~35 ms and ~14 MiB to load
// (docs/performance.md#mkcomposefs). The bundle (scripts/build.ts) loads it before any code runs, except
// for the personalities that mostly do without it (mkcomposefs): there it loads on the first call of
// nodeLayerReady(), which their code awaits before importing a module that uses node:* (directory scans,
// fs-verity digests). From source and in `deno compile` the module graph loads node:* modules by itself
// and this does nothing.

type Loader = () => Promise<void>;

/** Resolves once the bundle's node:* imports are loaded (at once outside the bundle). */
export async function nodeLayerReady(): Promise<void> {
  const load = (globalThis as { __cfsctlNodeLayer?: Loader }).__cfsctlNodeLayer;
  if (load !== undefined) await load();
}
