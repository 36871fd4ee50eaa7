// The part of TOML that containers-registries.conf(5) files use: comments, [tables], [[arrays of
// tables]] (dotted, e.g. [[registry.mirror]] appends to the last [[registry]]), key = value with
// strings, booleans, integers and (multi-line) arrays of those. Anything else is a FormatError.
import { FormatError } from "../../../errors.ts";

export type TomlValue = string | boolean | number | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

class Cursor {
  pos = 0;
  line = 1;
  constructor(readonly text: string, readonly where: string) {}
  fail(why: string): never {
    throw new FormatError(`${this.where}:${this.line}: ${why}`);
  }
  peek(): string {
    return this.text[this.pos] ?? "";
  }
  eof(): boolean {
    return this.pos >= this.text.length;
  }
  next(): string {
    const c = this.text[this.pos++] ?? "";
    if (c === "\n") this.line++;
    return c;
  }
  /** Skips spaces/tabs and comments on this line. */
  skipInline(): void {
    while (!this.eof()) {
      const c = this.peek();
      if (c === " " || c === "\t" || c === "\r") this.pos++;
      else if (c === "#") {
        while (!this.eof() && this.peek() !== "\n") this.pos++;
      } else break;
    }
  }
  /** Skips whitespace, newlines and comments. */
  skipAll(): void {
    for (;;) {
      this.skipInline();
      if (this.peek() === "\n") this.next();
      else return;
    }
  }
  endOfLine(): void {
    this.skipInline();
    if (!this.eof() && this.peek() !== "\n") this.fail(`unexpected ${JSON.stringify(this.peek())}`);
  }
}

function parseKeyPart(c: Cursor): string {
  c.skipInline();
  const ch = c.peek();
  if (ch === '"' || ch === "'") return parseString(c);
  const start = c.pos;
  while (/[A-Za-z0-9_-]/.test(c.peek())) c.pos++;
  if (c.pos === start) c.fail(`expected a key, got ${JSON.stringify(ch)}`);
  return c.text.slice(start, c.pos);
}

function parseDottedKey(c: Cursor): string[] {
  const parts = [parseKeyPart(c)];
  c.skipInline();
  while (c.peek() === ".") {
    c.pos++;
    parts.push(parseKeyPart(c));
    c.skipInline();
  }
  return parts;
}

const ESCAPES: Record<string, string> = { b: "\b", t: "\t", n: "\n", f: "\f", r: "\r", '"': '"', "\\": "\\" };

function parseString(c: Cursor): string {
  const q = c.next();
  if (c.text.startsWith(q + q, c.pos)) c.fail("multi-line strings are not supported here");
  let out = "";
  for (;;) {
    if (c.eof() || c.peek() === "\n") c.fail("unterminated string");
    const ch = c.next();
    if (ch === q) return out;
    if (q === '"' && ch === "\\") {
      const e = c.next();
      if (e === "u" || e === "U") {
        const n = e === "u" ? 4 : 8;
        const hex = c.text.slice(c.pos, c.pos + n);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== n) c.fail("invalid unicode escape");
        c.pos += n;
        out += String.fromCodePoint(parseInt(hex, 16));
      } else if (e in ESCAPES) out += ESCAPES[e];
      else c.fail(`invalid escape \\${e}`);
    } else out += ch;
  }
}

function parseValue(c: Cursor): TomlValue {
  c.skipInline();
  const ch = c.peek();
  if (ch === '"' || ch === "'") return parseString(c);
  if (ch === "[") {
    c.next();
    const arr: TomlValue[] = [];
    for (;;) {
      c.skipAll();
      if (c.peek() === "]") {
        c.next();
        return arr;
      }
      arr.push(parseValue(c));
      c.skipAll();
      if (c.peek() === ",") c.next();
      else if (c.peek() !== "]") c.fail("expected , or ] in array");
    }
  }
  const m = /^(true|false|[+-]?[0-9][0-9_]*)(?![A-Za-z0-9_.:-])/.exec(c.text.slice(c.pos, c.pos + 40));
  if (!m) c.fail(`unsupported value starting with ${JSON.stringify(c.text.slice(c.pos, c.pos + 10))}`);
  c.pos += m[1].length;
  if (m[1] === "true") return true;
  if (m[1] === "false") return false;
  return Number(m[1].replaceAll("_", ""));
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Walks `path` from `root`, descending into the last element of arrays of tables. */
function descend(c: Cursor, root: TomlTable, path: string[]): TomlTable {
  let t = root;
  for (const k of path) {
    let v = t[k];
    if (v === undefined) t[k] = v = {};
    if (Array.isArray(v)) v = v[v.length - 1];
    if (!isTable(v)) c.fail(`${path.join(".")}: ${k} is not a table`);
    t = v;
  }
  return t;
}

export function parseTomlSubset(text: string, where: string): TomlTable {
  const c = new Cursor(text, where);
  const root: TomlTable = {};
  let current = root;
  for (;;) {
    c.skipAll();
    if (c.eof()) return root;
    if (c.peek() === "[") {
      c.next();
      const isArray = c.peek() === "[";
      if (isArray) c.next();
      const path = parseDottedKey(c);
      if (c.next() !== "]" || (isArray && c.next() !== "]")) c.fail("unterminated table header");
      c.endOfLine();
      const parent = descend(c, root, path.slice(0, -1));
      const last = path[path.length - 1];
      if (isArray) {
        const arr = parent[last] ?? [];
        if (!Array.isArray(arr)) return c.fail(`${path.join(".")} is not an array of tables`);
        const t: TomlTable = {};
        arr.push(t);
        parent[last] = arr;
        current = t;
      } else {
        current = descend(c, parent, [last]);
      }
      continue;
    }
    const key = parseDottedKey(c);
    if (c.next() !== "=") c.fail(`expected = after ${key.join(".")}`);
    const value = parseValue(c);
    c.endOfLine();
    const t = descend(c, current, key.slice(0, -1));
    const last = key[key.length - 1];
    if (last in t) c.fail(`duplicate key ${key.join(".")}`);
    t[last] = value;
  }
}
