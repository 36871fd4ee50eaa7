// Placeholder until this personality is implemented.
import { errln } from "./output.ts";

export function mountComposefsMain(_args: string[]): Promise<number> {
  errln("error: mount-composefs is not implemented yet");
  return Promise.resolve(1);
}
