// Parsers of option values shared by the commander command tree (program.ts) and the personalities
// parsed without commander (small_command.ts).
import { UsageError } from "../errors.ts";

export function parseErofsVersion(v: string): 0 | 1 | 2 {
  if (v === "0" || v === "1" || v === "2") return Number(v) as 0 | 1 | 2;
  throw new UsageError(`invalid EROFS format version ${JSON.stringify(v)} (expected 0, 1 or 2)`);
}
