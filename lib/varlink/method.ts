// What a varlink method implementation gets and how its failures become varlink errors
// (docs/varlink.md#calls). Each method of org.composefs.Repository and org.composefs.Oci is one
// function of this type, found by name in the service's table.
import { describeError, NotFoundError } from "../errors.ts";
import type { OpenOptions, Repository } from "../repository/repository.ts";
import type { RepositoryHandles } from "./handles.ts";
import { int, type Params } from "./params.ts";
import { type ConnectionInfo, type ReplySink, type VarlinkCall, VarlinkError } from "./server.ts";

export interface ServiceInfo {
  version: string;
}

/** Applied to every repository the service opens (the server's --insecure, --require-verity, …). */
export type ServiceOpenOptions = Pick<OpenOptions, "insecure" | "requireVerity" | "noUpgrade">;

export interface CallContext {
  call: VarlinkCall;
  /** `call.parameters`. */
  p: Params;
  sink: ReplySink;
  conn: ConnectionInfo;
  handles: RepositoryHandles;
  info: ServiceInfo;
  openOpts: ServiceOpenOptions;
}

export type Method = (cx: CallContext) => Promise<Params> | Params;

/** The repository named by the call's `handle` parameter (`<iface>.InvalidHandle` if unknown). */
export function repoOf(cx: CallContext, iface: string): Repository {
  return cx.handles.get(int(cx.p, "handle"), iface);
}

/**
 * A `.catch` handler turning library failures into varlink errors: a NotFoundError becomes
 * `<iface>.<notFound[0]>` with parameters `notFound[1]` (when given), anything else
 * `<iface>.InternalError{message}`; VarlinkErrors pass through.
 */
export function failure(iface: string, notFound?: [string, Params]): (e: unknown) => never {
  return (e: unknown): never => {
    if (e instanceof VarlinkError) throw e;
    if (notFound && e instanceof NotFoundError) {
      throw new VarlinkError(`${iface}.${notFound[0]}`, notFound[1]);
    }
    throw new VarlinkError(`${iface}.InternalError`, { message: describeError(e) });
  };
}

/** `<iface>.InternalError{message}`. */
export function internalError(iface: string, message: string): VarlinkError {
  return new VarlinkError(`${iface}.InternalError`, { message });
}
