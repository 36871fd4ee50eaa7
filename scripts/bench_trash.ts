// Benchmark outputs are moved aside between runs and deleted together at the end, never deleted right
// before a measured run: on this machine's root ext4 (no journal) every inode allocated within minutes
// of a mass deletion is checked against the deleted ones, which charges the previous run's `rm -rf` to
// the next measurement (docs/performance.md#ext4-without-a-journal).

/** A directory that outputs are renamed into (so it must be on their filesystem), emptied at the end. */
export class Trash implements AsyncDisposable {
  readonly dir: string;
  #moved = 0;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Renames `path` into the trash under a name of its own; nothing happens when it does not exist. */
  async moveAside(path: string): Promise<void> {
    try {
      await Deno.lstat(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    await Deno.mkdir(this.dir, { recursive: true });
    const base = path.replace(/\/+$/, "").split("/").pop();
    const to = `${this.dir}/${++this.#moved}-${base}`;
    try {
      await Deno.rename(path, to);
    } catch (e) {
      // EXDEV: a copy and delete would be the deletion this avoids; the caller picks a trash per filesystem.
      throw new Error(`moving ${path} aside to ${to}: ${e}`);
    }
  }

  /** Deletes everything moved aside (and the trash directory). */
  async empty(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.empty();
  }
}
