// Reading the parameters of a varlink call (docs/varlink.md#calls): a missing or mistyped parameter is
// org.varlink.service.InvalidParameter naming it.
import { VarlinkError } from "./server.ts";

export type Params = Record<string, unknown>;

export function invalid(parameter: string): never {
  throw new VarlinkError("org.varlink.service.InvalidParameter", { parameter });
}

export function str(p: Params, k: string): string;
export function str(p: Params, k: string, optional: true): string | undefined;
export function str(p: Params, k: string, optional = false): string | undefined {
  const v = p[k];
  if (v === undefined || v === null) return optional ? undefined : invalid(k);
  return typeof v === "string" ? v : invalid(k);
}

export function bool(p: Params, k: string): boolean;
export function bool(p: Params, k: string, optional: true): boolean | undefined;
export function bool(p: Params, k: string, optional = false): boolean | undefined {
  const v = p[k];
  if (v === undefined || v === null) return optional ? undefined : invalid(k);
  return typeof v === "boolean" ? v : invalid(k);
}

/** A non-negative integer (handles). */
export function int(p: Params, k: string): number {
  const v = p[k];
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : invalid(k);
}

export function strings(p: Params, k: string): string[] {
  const v = p[k];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) return invalid(k);
  return v as string[];
}

/** An optional struct parameter (absent: empty). */
export function struct(p: Params, k: string): Params {
  const o = p[k] ?? {};
  if (typeof o !== "object" || o === null || Array.isArray(o)) return invalid(k);
  return o as Params;
}

/** One of `choices`. */
export function oneOf<T extends string>(p: Params, k: string, choices: readonly T[]): T {
  const v = str(p, k);
  return (choices as readonly string[]).includes(v) ? v as T : invalid(k);
}
