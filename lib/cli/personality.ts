// Which personality of the multi-call program answers (README.md#install): the name it was invoked
// under, else a first argument naming one (`cfsctl mkcomposefs …`). Light: main.ts decides with it
// before loading the command tree, and scripts/build.ts's bundle prelude follows the same rule.
export const PERSONALITIES = [
  "mkcomposefs",
  "composefs-info",
  "mount.composefs",
  "composefs-setup-root",
] as const;
export type Personality = typeof PERSONALITIES[number];

/** The personality and its arguments, or undefined for cfsctl itself. */
export function personalityOf(
  invokedAs: string,
  args: string[],
): { p: Personality; args: string[] } | undefined {
  const asP = PERSONALITIES.find((p) => p === invokedAs);
  if (asP) return { p: asP, args };
  const first = PERSONALITIES.find((p) => p === args[0]);
  if (first) return { p: first, args: args.slice(1) };
  return undefined;
}
