// Placeholder until this personality is implemented.
import { errln } from "./output.ts";

export function mkcomposefsMain(_args: string[]): Promise<number> {
  errln("error: mkcomposefs is not implemented yet");
  return Promise.resolve(1);
}
