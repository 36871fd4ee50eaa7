// Renders library progress events: bars redrawn in place on a terminal, plain log lines otherwise,
// or one JSON object per event (`--progress=json`), on stderr or on `--progress-fd N`.
import type { ProgressEvent, ProgressReporter } from "../progress/events.ts";
import { UsageError } from "../errors.ts";
import { humanBytes } from "../util/format.ts";

export interface Renderer extends ProgressReporter {
  finish(): void;
}

const enc = new TextEncoder();

function short(id: string): string {
  return id.replace(/^sha256:/, "").slice(0, 12);
}

type Sink = (text: string) => void;

function fdSink(fd: number | undefined): { write: Sink; isTty: boolean } {
  if (fd === undefined || fd === 2) {
    return {
      write: (t) => {
        const b = enc.encode(t);
        let o = 0;
        while (o < b.length) o += Deno.stderr.writeSync(b.subarray(o));
      },
      isTty: Deno.stderr.isTerminal(),
    };
  }
  // Any other descriptor: opened through /proc so it works for pipes and files alike.
  const file = Deno.openSync(`/proc/self/fd/${fd}`, { write: true });
  return {
    write: (t) => {
      const b = enc.encode(t);
      let o = 0;
      while (o < b.length) o += file.writeSync(b.subarray(o));
    },
    isTty: false,
  };
}

class JsonRenderer implements Renderer {
  constructor(private write: Sink) {}
  report(e: ProgressEvent): void {
    this.write(JSON.stringify({ ...e, time: Date.now() }) + "\n");
  }
  finish(): void {}
}

class PlainRenderer implements Renderer {
  #last = new Map<string, number>();
  #totals = new Map<string, number | undefined>();
  constructor(private write: Sink, private intervalMs = 2000) {}
  report(e: ProgressEvent): void {
    switch (e.type) {
      case "started":
        this.#totals.set(e.id, e.total);
        this.write(`${short(e.id)}: fetching${e.total !== undefined ? ` (${humanBytes(e.total)})` : ""}\n`);
        break;
      case "progress": {
        const now = Date.now();
        if (now - (this.#last.get(e.id) ?? 0) < this.intervalMs) return;
        this.#last.set(e.id, now);
        const t = e.total ?? this.#totals.get(e.id);
        this.write(
          `${short(e.id)}: ${humanBytes(e.done)}${
            t ? ` of ${humanBytes(t)} (${Math.floor((e.done / t) * 100)}%)` : ""
          }\n`,
        );
        break;
      }
      case "skipped":
        this.write(`${short(e.id)}: already present\n`);
        break;
      case "done":
        this.write(`${short(e.id)}: done (${humanBytes(e.transferred)})\n`);
        break;
      case "message":
        this.write(`${e.text}\n`);
        break;
      case "plan":
        break;
    }
  }
  finish(): void {}
}

interface Bar {
  id: string;
  done: number;
  total?: number;
  state: "waiting" | "active" | "done" | "skipped";
  started: number;
}

/** Terminal bars: one line per component plus an overall line, redrawn in place. */
class TtyRenderer implements Renderer {
  #bars = new Map<string, Bar>();
  #drawn = 0;
  #lastDraw = 0;
  #start = Date.now();
  #finished = false;
  constructor(private write: Sink) {}

  report(e: ProgressEvent): void {
    const now = Date.now();
    switch (e.type) {
      case "plan":
        for (const c of e.components) {
          this.#bars.set(c.id, {
            id: c.id,
            done: 0,
            total: c.total,
            state: c.skipped ? "skipped" : "waiting",
            started: now,
          });
        }
        break;
      case "started": {
        const b = this.#bars.get(e.id) ??
          { id: e.id, done: 0, total: e.total, state: "active", started: now };
        b.state = "active";
        b.started = now;
        b.total ??= e.total;
        this.#bars.set(e.id, b);
        break;
      }
      case "progress": {
        const b = this.#bars.get(e.id);
        if (b) {
          b.done = e.done;
          b.total ??= e.total;
        }
        if (now - this.#lastDraw < 100) return;
        break;
      }
      case "skipped": {
        const b = this.#bars.get(e.id) ?? { id: e.id, done: 0, state: "skipped", started: now };
        b.state = "skipped";
        this.#bars.set(e.id, b);
        break;
      }
      case "done": {
        const b = this.#bars.get(e.id);
        if (b) {
          b.state = "done";
          b.done = Math.max(b.done, e.transferred);
        }
        break;
      }
      case "message":
        this.#clear();
        this.write(e.text + "\n");
        break;
    }
    this.#draw();
  }

  #line(label: string, done: number, total: number | undefined, elapsedMs: number, state: string): string {
    const width = 24;
    const frac = total ? Math.min(1, done / total) : 0;
    const filled = Math.round(frac * width);
    const bar = total
      ? "[" + "#".repeat(filled) + "-".repeat(width - filled) + "]"
      : "[" + " ".repeat(width) + "]";
    const rate = elapsedMs > 0 ? (done / elapsedMs) * 1000 : 0;
    const eta = total && rate > 0 && done < total ? `${Math.ceil((total - done) / rate)}s` : "";
    const size = total ? `${humanBytes(done)}/${humanBytes(total)}` : humanBytes(done);
    const tail = state === "active" ? `${humanBytes(rate)}/s ${eta}` : state;
    return `${label.padEnd(12)} ${bar} ${size.padStart(21)} ${tail}`;
  }

  #clear(): void {
    if (this.#drawn > 0) this.write(`\x1b[${this.#drawn}A\x1b[J`);
    this.#drawn = 0;
  }

  #draw(): void {
    if (this.#finished) return;
    this.#lastDraw = Date.now();
    const lines: string[] = [];
    let done = 0;
    let total = 0;
    for (const b of this.#bars.values()) {
      lines.push(this.#line(short(b.id), b.done, b.total, Date.now() - b.started, b.state));
      if (b.state !== "skipped") {
        done += b.done;
        total += b.total ?? 0;
      }
    }
    if (this.#bars.size > 0) {
      lines.push(this.#line("total", done, total || undefined, Date.now() - this.#start, "active"));
    }
    this.#clear();
    if (lines.length) this.write(lines.join("\n") + "\n");
    this.#drawn = lines.length;
  }

  finish(): void {
    if (this.#finished) return;
    this.#clear();
    this.#finished = true;
  }
}

const quiet: Renderer = { report() {}, finish() {} };

/** `mode`: auto | plain | json | none (also `tty` to force bars). */
export function createReporter(mode = "auto", fd?: string | number): Renderer {
  const n = fd === undefined ? undefined : Number(fd);
  if (n !== undefined && (!Number.isInteger(n) || n < 0)) throw new UsageError(`invalid --progress-fd ${fd}`);
  if (mode === "none") return quiet;
  const sink = fdSink(n);
  switch (mode) {
    case "json":
      return new JsonRenderer(sink.write);
    case "plain":
      return new PlainRenderer(sink.write);
    case "tty":
      return new TtyRenderer(sink.write);
    case "auto":
      return sink.isTty ? new TtyRenderer(sink.write) : new PlainRenderer(sink.write);
    default:
      throw new UsageError(`invalid --progress ${JSON.stringify(mode)} (auto, plain, json, none)`);
  }
}
