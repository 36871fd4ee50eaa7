// Runs an async function over a list with at most `limit` calls in flight (pull's layers, fetch's
// streams, the directory scan's large files, fsck's objects). The first failure stops new calls from
// starting and is rethrown once the running ones end. `fn` learns which of the `limit` workers runs it
// (0 … limit-1), so each worker can keep its own buffers.

export async function runBounded<T>(
  items: T[],
  limit: number,
  fn: (item: T, worker: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: { e: unknown } | undefined;
  const worker = async (_: unknown, w: number) => {
    while (failed === undefined && next < items.length) {
      const item = items[next++];
      try {
        await fn(item, w);
      } catch (e) {
        failed ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed !== undefined) throw failed.e;
}
