// Progress events emitted by long-running library operations (pulls, imports, scans). The library
// only emits; lib/cli/ chooses how to render them (bars, plain lines, JSON).

export type ProgressUnit = "bytes" | "items";

export type ProgressEvent =
  /** A component (layer digest, "apply-delta", …) starts; `total` may be unknown. */
  | { type: "started"; id: string; total?: number; unit: ProgressUnit; label?: string }
  | { type: "progress"; id: string; done: number; total?: number }
  /** The component was already present and needs no work. */
  | { type: "skipped"; id: string; reason?: string }
  | { type: "done"; id: string; transferred: number }
  | { type: "message"; text: string }
  /** Totals for a whole operation, known once the manifest is read. */
  | { type: "plan"; components: { id: string; total?: number; skipped: boolean }[] };

export interface ProgressReporter {
  report(event: ProgressEvent): void;
}

/** Discards everything: the default when the caller does not care. */
export const nullReporter: ProgressReporter = { report() {} };

/**
 * Coalesces high-frequency byte progress for one component so a slow renderer never slows I/O:
 * at most one "progress" event per `intervalMs`, plus the final value on `flush()`.
 */
export class ThrottledProgress {
  #last = 0;
  #done = 0;
  constructor(
    private reporter: ProgressReporter,
    private id: string,
    private total?: number,
    private intervalMs = 100,
  ) {}
  add(n: number): void {
    this.#done += n;
    const now = Date.now();
    if (now - this.#last >= this.intervalMs) {
      this.#last = now;
      this.reporter.report({ type: "progress", id: this.id, done: this.#done, total: this.total });
    }
  }
  get done(): number {
    return this.#done;
  }
  flush(): void {
    this.reporter.report({ type: "progress", id: this.id, done: this.#done, total: this.total });
  }
}
