// A stack of undo actions for the mount sequence: every resource (fd, temporary mount, temporary
// directory, loop device) registers how to release it the moment it exists, so every error path
// releases everything taken so far, newest first, and a failing release does not hide the first error.

export class Cleanup {
  #actions: (() => void)[] = [];

  /** Registers `release`; returns it so callers can run it early via `release()`. */
  defer(release: () => void): void {
    this.#actions.push(release);
  }

  /** Runs every registered action, newest first, swallowing their errors. */
  run(): void {
    while (this.#actions.length) {
      const a = this.#actions.pop()!;
      try {
        a();
      } catch { /* best effort: keep releasing the rest */ }
    }
  }
}
