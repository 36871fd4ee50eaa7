// Platform (os/arch/variant) parsing and manifest selection from an index.
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import type { OciDescriptor } from "./json_types.ts";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const DENO_ARCH: Record<string, string> = { x86_64: "amd64", aarch64: "arm64" };

export function hostPlatform(): Platform {
  const architecture = DENO_ARCH[Deno.build.arch] ?? Deno.build.arch;
  return { os: "linux", architecture, variant: architecture === "arm64" ? "v8" : undefined };
}

/** Parses `os/arch[/variant]`. */
export function parsePlatform(s: string): Platform {
  const parts = s.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new InvalidArgumentError(`invalid platform ${JSON.stringify(s)} (expected os/arch[/variant])`);
  }
  return { os: parts[0], architecture: parts[1], variant: parts[2] };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? "/" + p.variant : ""}`;
}

/** What is read of an index entry (an OciDescriptor, or a test's stand-in). */
interface IndexEntry {
  platform?: OciDescriptor["platform"];
}

/**
 * Picks the entry for `want`: exact os+arch, variant equal when both name one (a missing variant on
 * either side matches). Entries without platform are used only when nothing else fits and there is
 * exactly one of them (layouts written without platform annotations).
 */
export function selectPlatformEntry<T extends IndexEntry>(entries: T[], want: Platform, where: string): T {
  const matches = entries.filter((e) =>
    e.platform?.os === want.os && e.platform?.architecture === want.architecture
  );
  const exact = matches.find((e) => want.variant && e.platform?.variant === want.variant);
  if (exact) return exact;
  const loose = matches.find((e) => !want.variant || !e.platform?.variant);
  if (loose) return loose;
  if (matches.length > 0 && !want.variant) return matches[0];
  if (matches.length > 0) return matches[0];
  const noPlatform = entries.filter((e) => !e.platform);
  if (noPlatform.length === 1) return noPlatform[0];
  const have = entries.map((e) =>
    e.platform
      ? formatPlatform({
        os: e.platform.os ?? "?",
        architecture: e.platform.architecture ?? "?",
        variant: e.platform.variant,
      })
      : "(none)"
  );
  throw new NotFoundError(
    `no manifest for platform ${formatPlatform(want)} in ${where} (available: ${have.join(", ") || "none"})`,
  );
}
