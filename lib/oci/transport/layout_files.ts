// File access for the local transports: a directory on disk, or members of a tar archive.
import { FormatError, KernelError, NotFoundError } from "../../errors.ts";
import { closeFd, O_NOCTTY, O_NONBLOCK, O_RDONLY, openPath, preadAsync } from "../../linux/fs.ts";
import { statFd } from "../../linux/fs_at.ts";
import { concatBytes } from "../../util/bytes.ts";
import { indexTar, openTarMember, readTarMember, resolveTarMember, type TarMember } from "./tar_index.ts";

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

/** What a file type (st_mode & S_IFMT) is called in messages. */
function fileTypeName(mode: number): string {
  switch (mode & 0o170000) {
    case 0o010000:
      return "a FIFO";
    case 0o020000:
      return "a character device";
    case 0o060000:
      return "a block device";
    case 0o040000:
      return "a directory";
    case 0o140000:
      return "a socket";
    default:
      return "not a regular file";
  }
}

const READ_CHUNK = 1024 * 1024;

/**
 * A file of a layout directory, opened as a regular file only: O_NONBLOCK so that a FIFO does not
 * block the open, then fstat of what was opened (a symlink is followed, and whatever it reaches
 * must be a regular file too). Reads go through the descriptor, so a limit applies to the bytes
 * actually read, not to a size someone reported.
 */
function openRegular(where: string, name: string): number {
  const path = `${where}/${name}`;
  let fd: number;
  try {
    fd = openPath(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  } catch (e) {
    if (e instanceof KernelError && e.code === "ENOENT") throw notFound(where, name);
    throw e;
  }
  try {
    const st = statFd(fd, path);
    if ((st.mode & 0o170000) !== 0o100000) {
      throw new FormatError(`${path} is ${fileTypeName(st.mode)}, not a regular file`);
    }
    return fd;
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

export class DirFiles implements LayoutFiles {
  constructor(readonly where: string) {}
  async read(name: string, limit: number): Promise<Uint8Array> {
    const fd = openRegular(this.where, name);
    try {
      const parts: Uint8Array[] = [];
      let got = 0;
      for (;;) {
        const buf = new Uint8Array(Math.min(READ_CHUNK, limit + 1 - got));
        const n = await preadAsync(fd, buf, got);
        if (n === 0) break;
        parts.push(buf.subarray(0, n));
        got += n;
        if (got > limit) throw new FormatError(`${this.where}/${name} is larger than ${limit} bytes`);
      }
      return parts.length === 1 ? parts[0] : concatBytes(parts);
    } finally {
      closeFd(fd);
    }
  }
  open(name: string): Promise<ReadableStream<Uint8Array>> {
    let fd: number;
    try {
      fd = openRegular(this.where, name);
    } catch (e) {
      return Promise.reject(e);
    }
    let pos = 0;
    let closed = false;
    const close = () => {
      if (!closed) closeFd(fd);
      closed = true;
    };
    return Promise.resolve(
      new ReadableStream<Uint8Array>({
        async pull(ctl) {
          try {
            const buf = new Uint8Array(READ_CHUNK);
            const n = await preadAsync(fd, buf, pos);
            if (n === 0) {
              close();
              ctl.close();
              return;
            }
            pos += n;
            ctl.enqueue(buf.subarray(0, n));
          } catch (e) {
            close();
            ctl.error(e);
          }
        },
        cancel() {
          close();
        },
      }, { highWaterMark: 0 }),
    );
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
    const m = resolveTarMember(this.members, name);
    if (!m) return Promise.reject(notFound(this.where, name));
    return Promise.resolve(m.size);
  }
  async close(): Promise<void> {}
}
