// A pull-based byte reader over an async sequence of chunks, with bounded buffering: it only holds
// what one request needs (a 512-byte header, an extension header payload ≤ 1 MiB) plus the rest of
// the chunk that arrived last. The sequence is plain bytes (a tar being imported) or a splitstream's
// chunks (docs/splitstream.md#chunks): byte reads stop at an external chunk and the tar reader asks
// for it explicitly.
import { FormatError } from "../../errors.ts";
import type { ObjectId } from "../../fsverity/object_id.ts";
import type { SplitStreamChunk } from "../../splitstream/chunk.ts";

/**
 * What a ByteSource reads: raw byte chunks, or splitstream chunks (the import path hands bytes
 * straight from the decoder, with no wrapper object per chunk).
 */
export type ByteSourcePart = Uint8Array | SplitStreamChunk;

export class ByteSource {
  #it: AsyncIterator<ByteSourcePart>;
  #chunks: Uint8Array[] = [];
  #head = 0; // read offset into #chunks[0]
  #buffered = 0;
  #pendingExternal: ObjectId | null = null;
  #eof = false;
  #onChunk?: (chunk: Uint8Array) => void;
  /** Bytes handed out so far (external parts not counted). */
  consumed = 0;

  /** `onChunk` sees every byte chunk pulled from the source exactly once, in order (for hashing). */
  constructor(source: AsyncIterable<ByteSourcePart>, onChunk?: (chunk: Uint8Array) => void) {
    this.#it = source[Symbol.asyncIterator]();
    this.#onChunk = onChunk;
  }

  static fromStream(stream: ReadableStream<Uint8Array>, onChunk?: (chunk: Uint8Array) => void): ByteSource {
    return new ByteSource(stream, onChunk);
  }

  /** Pulls one more part. Returns false at EOF or when an external part blocks the byte flow. */
  async #pull(): Promise<boolean> {
    if (this.#eof || this.#pendingExternal) return false;
    for (;;) {
      const r = await this.#it.next();
      if (r.done) {
        this.#eof = true;
        return false;
      }
      const v = r.value;
      if (!(v instanceof Uint8Array) && v.kind === "external") {
        this.#pendingExternal = v.id;
        return false;
      }
      const part = v instanceof Uint8Array ? v : v.data;
      if (part.length === 0) continue;
      this.#onChunk?.(part);
      this.#chunks.push(part);
      this.#buffered += part.length;
      return true;
    }
  }

  /**
   * Reads up to `n` bytes into a fresh array. Shorter only when the bytes end (EOF or an external
   * part); length 0 means nothing was left.
   */
  async read(n: number): Promise<Uint8Array> {
    while (this.#buffered < n && await this.#pull());
    const len = Math.min(n, this.#buffered);
    const out = new Uint8Array(len);
    let o = 0;
    while (o < len) {
      const c = this.#chunks[0];
      const take = Math.min(len - o, c.length - this.#head);
      out.set(c.subarray(this.#head, this.#head + take), o);
      o += take;
      this.#advance(take);
    }
    return out;
  }

  /** True when the byte flow stopped at an external part (not at EOF). */
  get blocked(): boolean {
    return this.#buffered === 0 && this.#pendingExternal !== null;
  }

  /** Reads exactly `n` bytes or throws FormatError naming `what` as truncated. */
  async readExact(n: number, what: string): Promise<Uint8Array> {
    const b = await this.read(n);
    if (b.length !== n) throw this.#truncated(what, n, b.length);
    return b;
  }

  /**
   * Yields exactly `n` bytes as views into the source's chunks (no copy; valid until the next
   * call). Throws FormatError when the bytes end early.
   */
  async *stream(n: number, what: string): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (this.#buffered === 0 && !await this.#pull()) throw this.#truncated(what, n, n - left);
      const c = this.#chunks[0];
      const take = Math.min(left, c.length - this.#head);
      const view = c.subarray(this.#head, this.#head + take);
      this.#advance(take);
      left -= take;
      yield view;
    }
  }

  /** Discards exactly `n` bytes (throws when they end early). */
  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.stream(n, what));
  }

  /** Yields every remaining byte until EOF (throws if an external part is met). */
  async *rest(): AsyncGenerator<Uint8Array> {
    for (;;) {
      while (this.#buffered > 0) {
        const c = this.#chunks[0];
        const view = c.subarray(this.#head);
        this.#advance(view.length);
        yield view;
      }
      if (!await this.#pull()) break;
    }
    if (this.#pendingExternal) {
      throw new FormatError("unexpected external chunk after the end of the tar archive");
    }
  }

  /**
   * Stops reading: the source iterator is returned, so a generator behind it (a decompressor with
   * native state) finishes its cleanup now rather than when it is garbage-collected.
   */
  async close(): Promise<void> {
    this.#eof = true;
    this.#chunks = [];
    this.#buffered = 0;
    await this.#it.return?.();
  }

  /** When the next part is an external chunk (no bytes buffered before it), takes it and returns its id. */
  async takeExternal(): Promise<ObjectId | null> {
    if (this.#buffered === 0) await this.#pull();
    if (this.#buffered > 0 || !this.#pendingExternal) return null;
    const e = this.#pendingExternal;
    this.#pendingExternal = null;
    return e;
  }

  #advance(n: number): void {
    this.#head += n;
    this.#buffered -= n;
    this.consumed += n;
    if (this.#head === this.#chunks[0].length) {
      this.#chunks.shift();
      this.#head = 0;
    }
  }

  #truncated(what: string, want: number, got: number): FormatError {
    const why = this.#pendingExternal ? "an external chunk interrupts it" : "unexpected end of data";
    return new FormatError(
      `truncated ${what}: ${why} after ${got} of ${want} bytes (at offset ${this.consumed})`,
    );
  }
}
