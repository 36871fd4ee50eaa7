// The one JSON parser for documents read from disk or the network (manifests, configs, indexes,
// layout files): strict UTF-8, and errors that say where, never what.
import { FormatError } from "../errors.ts";

/**
 * Parses a JSON document. The error names the file and where parsing stopped, never the content:
 * the bytes may be anything a hostile layout links to (V8's own message quotes them).
 */
export function parseJson(bytes: Uint8Array, what: string): any {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(`${what}: not valid UTF-8 (${bytes.length} bytes)`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    const at = /at position (\d+)/.exec((e as Error).message);
    const where = at
      ? `at character ${at[1]}`
      : /end of JSON input/.test((e as Error).message)
      ? "at its end"
      : "";
    throw new FormatError(`${what}: invalid JSON (${bytes.length} bytes${where ? ", error " + where : ""})`);
  }
}
