// Typed errors shared by every room of the library. The CLI maps them to messages and exit codes;
// the library itself never prints and never exits.

/**
 * Base class: `context` is a chain of "where" strings (file, digest, layer, URL), outermost first.
 * Every class spells out its `name` (rather than taking the constructor's) so it survives minification.
 */
export class CfsError extends Error {
  override name = "CfsError";
  context: string[];
  constructor(message: string, options?: { cause?: unknown; context?: string[] }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.context = options?.context ?? [];
  }
  /** Returns this error with `where` prepended to its context chain. */
  within(where: string): this {
    this.context.unshift(where);
    return this;
  }
}

/**
 * A value the caller gave is not acceptable: a malformed name, reference, URL or platform, options
 * that exclude each other. The caller's mistake, not the data's (that is FormatError); the CLI reports
 * it as wrong usage (exit code 2).
 */
export class InvalidArgumentError extends CfsError {
  override name = "InvalidArgumentError";
}
/** Wrong command-line usage: exit code 2. Thrown by lib/cli only; the library throws InvalidArgumentError. */
export class UsageError extends InvalidArgumentError {
  override name = "UsageError";
}
/** Malformed input data (dumpfile, EROFS image, splitstream, tar, JSON…). */
export class FormatError extends CfsError {
  override name = "FormatError";
}
/** A digest that does not match what was expected. */
export class IntegrityError extends CfsError {
  override name = "IntegrityError";
}
/** A named thing (image, stream, ref, object, tag) does not exist. */
export class NotFoundError extends CfsError {
  override name = "NotFoundError";
}
/** Missing privilege (not root, read-only repository…). */
export class PermissionError extends CfsError {
  override name = "PermissionError";
}
/** A repository that cannot be opened as asked (bad meta.json, algorithm mismatch, needs init…). */
export class RepositoryError extends CfsError {
  override name = "RepositoryError";
}
/** A network/transport failure (registry, proxy). */
export class TransportError extends CfsError {
  override name = "TransportError";
}

/** A failed system call, carrying errno and the syscall's name. */
export class KernelError extends CfsError {
  override name = "KernelError";
  errno: number;
  code: string;
  syscall: string;
  constructor(syscall: string, errno: number, code: string, message?: string, context?: string[]) {
    super(message ?? `${syscall} failed: ${code} (errno ${errno})`, { context });
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
  }
}

/**
 * A broken invariant inside cfsctl itself (a method called out of order, a layout that does not add
 * up, a native library that fails where it cannot): a bug to report, never the user's or the data's fault.
 */
export class InternalError extends CfsError {
  override name = "InternalError";
}

/** Renders `WHAT: WHY` with the context chain, as the CLI prints it. */
export function describeError(e: unknown): string {
  if (e instanceof CfsError) {
    const parts = [...e.context, e.message];
    // A wrapper often quotes its cause's message already ("corrupt data: <cause>"): say it once.
    const push = (m: string) => {
      if (!parts[parts.length - 1].endsWith(m)) parts.push(m);
    };
    let cause = e.cause;
    while (cause !== undefined) {
      if (cause instanceof CfsError) {
        parts.push(...cause.context);
        push(cause.message);
        cause = cause.cause;
      } else if (cause instanceof Error) {
        push(cause.message);
        cause = (cause as Error).cause;
      } else {
        push(String(cause));
        break;
      }
    }
    // Nor twice "where" when a message already starts with its context ("layer X" + "layer X: …").
    return parts.filter((p, i) => i + 1 >= parts.length || !parts[i + 1].startsWith(p + ": ")).join(": ");
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

/** An error as plain data, to cross to another thread (postMessage keeps no class). */
export interface NamedError {
  name: string;
  message: string;
  context?: string[];
  errno?: number;
  code?: string;
  syscall?: string;
}

const BY_NAME: Record<string, new (message: string, options?: { context?: string[] }) => CfsError> = {
  CfsError,
  InvalidArgumentError,
  UsageError,
  FormatError,
  IntegrityError,
  NotFoundError,
  PermissionError,
  RepositoryError,
  TransportError,
  InternalError,
};

/** `e` as plain data (toNamed ∘ errorFromNamed keeps the class, message and context of a CfsError). */
export function toNamed(e: unknown): NamedError {
  if (e instanceof KernelError) {
    return {
      name: e.name,
      message: e.message,
      context: e.context,
      errno: e.errno,
      code: e.code,
      syscall: e.syscall,
    };
  }
  if (e instanceof CfsError) return { name: e.name, message: e.message, context: e.context };
  if (e instanceof Error) return { name: "InternalError", message: `${e.name}: ${e.message}` };
  return { name: "InternalError", message: String(e) };
}

/** The typed error `n` describes (an unknown name becomes a CfsError). */
export function errorFromNamed(n: NamedError): CfsError {
  if (n.name === "KernelError") {
    return new KernelError(n.syscall ?? "?", n.errno ?? 0, n.code ?? "?", n.message, n.context);
  }
  const Class = BY_NAME[n.name] ?? CfsError;
  return new Class(n.message, { context: n.context ?? [] });
}
