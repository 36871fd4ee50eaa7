// The repositories a varlink server has open, by handle (docs/varlink.md#calls): integers from 1,
// never reused by one server process; each belongs to the connection that opened it and is closed
// when that connection ends.
import type { Repository } from "../repository/repository.ts";
import { VarlinkError } from "./server.ts";

interface Entry {
  repo: Repository;
  /** ConnectionInfo.id of the connection that opened it. */
  owner: number;
}

export class RepositoryHandles {
  #open = new Map<number, Entry>();
  #last = 0;

  get size(): number {
    return this.#open.size;
  }

  add(repo: Repository, owner: number): number {
    const handle = ++this.#last;
    this.#open.set(handle, { repo, owner });
    return handle;
  }

  /** The repository of `handle`; an unknown one is `<iface>.InvalidHandle`. */
  get(handle: number, iface: string): Repository {
    const e = this.#open.get(handle);
    if (!e) throw new VarlinkError(`${iface}.InvalidHandle`, { handle });
    return e.repo;
  }

  close(handle: number, iface: string): void {
    this.get(handle, iface).close();
    this.#open.delete(handle);
  }

  /** Closes the handles `owner` opened (its connection ended). */
  release(owner: number): void {
    for (const [h, e] of this.#open) {
      if (e.owner !== owner) continue;
      e.repo.close();
      this.#open.delete(h);
    }
  }

  closeAll(): void {
    for (const e of this.#open.values()) e.repo.close();
    this.#open.clear();
  }
}
