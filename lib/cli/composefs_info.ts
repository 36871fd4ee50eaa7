// Placeholder until this personality is implemented.
import { errln } from "./output.ts";

export function composefsInfoMain(_args: string[]): Promise<number> {
  errln("error: composefs-info is not implemented yet");
  return Promise.resolve(1);
}
