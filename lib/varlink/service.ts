// The cfsctl varlink service (docs/varlink.md): org.composefs.Repository and org.composefs.Oci on one
// socket, plus org.varlink.service. A call is dispatched by its qualified method name to one function
// (./repository_methods.ts, ./oci_methods.ts, ./oci_pull.ts); repositories are addressed by handles
// (./handles.ts) that are released when the connection that opened them closes.
import { RepositoryHandles } from "./handles.ts";
import { IFACE, INTERFACES } from "./interfaces.ts";
import type { CallContext, Method, ServiceInfo, ServiceOpenOptions } from "./method.ts";
import { OCI_METHODS } from "./oci_methods.ts";
import { type Params, str } from "./params.ts";
import { REPOSITORY_METHODS } from "./repository_methods.ts";
import {
  type ConnectionInfo,
  type ReplySink,
  type VarlinkCall,
  VarlinkError,
  type VarlinkService,
} from "./server.ts";

export type { ServiceInfo } from "./method.ts";

const SVC = IFACE.service;

function getInfo(cx: CallContext): Params {
  return {
    vendor: "org.composefs",
    product: "cfsctl",
    version: cx.info.version,
    url: "https://github.com/containers/composefs-rs",
    interfaces: Object.keys(INTERFACES),
  };
}

function getInterfaceDescription(cx: CallContext): Params {
  const want = str(cx.p, "interface");
  if (!Object.hasOwn(INTERFACES, want)) {
    throw new VarlinkError(`${SVC}.InterfaceNotFound`, { interface: want });
  }
  return { description: INTERFACES[want] };
}

/** Every method by qualified name (`org.composefs.Oci.Pull`). */
const METHODS = new Map<string, Method>(
  ([
    [SVC, { GetInfo: getInfo, GetInterfaceDescription: getInterfaceDescription }],
    [IFACE.repository, REPOSITORY_METHODS],
    [IFACE.oci, OCI_METHODS],
  ] as [string, Record<string, Method>][]).flatMap(([iface, methods]) =>
    Object.entries(methods).map(([name, m]): [string, Method] => [`${iface}.${name}`, m])
  ),
);

export class CfsctlService implements VarlinkService {
  #handles = new RepositoryHandles();
  constructor(private info: ServiceInfo, private openOpts: ServiceOpenOptions = {}) {}

  /** Repositories still open (for tests and shutdown). */
  get openHandles(): number {
    return this.#handles.size;
  }

  closed(conn: ConnectionInfo): void {
    this.#handles.release(conn.id);
  }

  closeAll(): void {
    this.#handles.closeAll();
  }

  async handle(call: VarlinkCall, sink: ReplySink, conn: ConnectionInfo): Promise<Params> {
    const iface = call.method.slice(0, Math.max(0, call.method.lastIndexOf(".")));
    if (!Object.hasOwn(INTERFACES, iface)) {
      throw new VarlinkError(`${SVC}.InterfaceNotFound`, { interface: iface });
    }
    const method = METHODS.get(call.method);
    if (!method) throw new VarlinkError(`${SVC}.MethodNotFound`, { method: call.method });
    return await method({
      call,
      p: call.parameters,
      sink,
      conn,
      handles: this.#handles,
      info: this.info,
      openOpts: this.openOpts,
    });
  }
}
