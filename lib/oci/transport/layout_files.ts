// File access for the local transports: a directory on disk, or members of a tar archive.
import { NotFoundError } from "../../errors.ts";
import { indexTar, openTarMember, readTarMember, type TarMember } from "./tar_index.ts";

export interface LayoutFiles {
  readonly where: string;
  read(name: string, limit: number): Promise<Uint8Array>;
  open(name: string): Promise<ReadableStream<Uint8Array>>;
  exists(name: string): Promise<boolean>;
  size(name: string): Promise<number>;
  close(): Promise<void>;
}

function notFound(where: string, name: string): NotFoundError {
  return new NotFoundError(`${where}: ${name} not found`);
}

export class DirFiles implements LayoutFiles {
  constructor(readonly where: string) {}
  async read(name: string, limit: number): Promise<Uint8Array> {
    const s = await this.size(name);
    if (s > limit) throw new RangeError(`${this.where}/${name} is larger than ${limit} bytes`);
    return await Deno.readFile(`${this.where}/${name}`);
  }
  async open(name: string): Promise<ReadableStream<Uint8Array>> {
    try {
      return (await Deno.open(`${this.where}/${name}`)).readable;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw notFound(this.where, name);
      throw e;
    }
  }
  async exists(name: string): Promise<boolean> {
    try {
      await Deno.stat(`${this.where}/${name}`);
      return true;
    } catch {
      return false;
    }
  }
  async size(name: string): Promise<number> {
    try {
      return (await Deno.stat(`${this.where}/${name}`)).size;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw notFound(this.where, name);
      throw e;
    }
  }
  async close(): Promise<void> {}
}

export class TarFiles implements LayoutFiles {
  private constructor(readonly where: string, private members: Map<string, TarMember>) {}
  static async open(path: string): Promise<TarFiles> {
    try {
      return new TarFiles(path, await indexTar(path));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NotFoundError(`${path}: no such archive`);
      throw e;
    }
  }
  read(name: string, limit: number): Promise<Uint8Array> {
    if (!this.members.has(name)) return Promise.reject(notFound(this.where, name));
    return readTarMember(this.where, this.members, name, limit);
  }
  open(name: string): Promise<ReadableStream<Uint8Array>> {
    if (!this.members.has(name)) return Promise.reject(notFound(this.where, name));
    return openTarMember(this.where, this.members, name);
  }
  exists(name: string): Promise<boolean> {
    return Promise.resolve(this.members.has(name));
  }
  size(name: string): Promise<number> {
    const m = this.members.get(name);
    if (!m) return Promise.reject(notFound(this.where, name));
    return Promise.resolve(m.size);
  }
  async close(): Promise<void> {}
}
