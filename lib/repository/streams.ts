// streams/<content-id> and streams/refs/<name> (spec §2.1, §2.5): splitstreams stored as objects,
// found by a caller-chosen content id. The symlink is made only after syncfs, so a visible stream
// never refers to objects that a crash could lose.
import { FormatError, IntegrityError, NotFoundError } from "../errors.ts";
import { ObjectId } from "../fsverity/object_id.ts";
import { closeFd, O_RDONLY, openPath } from "../linux/fs.ts";
import { SplitStreamReader, type SplitStreamWriter } from "../splitstream/mod.ts";
import type { Repository } from "./repository.ts";
import { checkLinkName, linkRelative } from "./symlinks.ts";
import { measureOrNull } from "../objects/verity.ts";

/** The object a `../objects/XX/rest`-style link target names, or null when it names none. */
export function objectIdOfTarget(target: string, alg: ObjectId["alg"]): ObjectId | null {
  const m = /(?:^|\/)objects\/([0-9a-f]{2})\/([0-9a-f]+)$/.exec(target);
  if (!m) return null;
  try {
    return ObjectId.fromHex(m[1] + m[2], alg);
  } catch {
    return null;
  }
}

/** `has_stream`: the object behind `streams/<contentId>`, or null when there is no such stream. */
export async function hasStream(repo: Repository, contentId: string): Promise<ObjectId | null> {
  checkLinkName(contentId, "stream");
  let target: string;
  try {
    target = await Deno.readLink(`${repo.path}/streams/${contentId}`);
  } catch {
    return null;
  }
  if (!target.startsWith("../")) return null;
  return objectIdOfTarget(target, repo.alg);
}

/** Finishes `writer`, stores it as an object and links `streams/<contentId>` (+ `streams/refs/<refName>`). */
export async function writeStream(
  repo: Repository,
  contentId: string,
  writer: SplitStreamWriter,
  refName?: string,
): Promise<ObjectId> {
  checkLinkName(contentId, "stream");
  if (refName !== undefined) checkLinkName(refName, "stream ref");
  await repo.ensureWritable();
  const bytes = await writer.finish();
  const id = await repo.ensureObject(bytes);
  await repo.settle(); // objects still being written in the background
  repo.sync();
  await linkRelative(repo.path, `streams/${contentId}`, `objects/${id.objectPath()}`);
  if (refName !== undefined) await nameStream(repo, contentId, refName);
  return id;
}

/** Adds `streams/refs/<name>` → `streams/<contentId>`. */
export async function nameStream(repo: Repository, contentId: string, name: string): Promise<void> {
  checkLinkName(contentId, "stream");
  checkLinkName(name, "stream ref");
  await repo.ensureWritable();
  await linkRelative(repo.path, `streams/refs/${name}`, `streams/${contentId}`);
}

/**
 * Opens a stored splitstream: `streams/<name>` (name = content id or `refs/<ref>`), or, when
 * `verity` is given, that object directly — whose kernel digest must then match (secure repos).
 */
export async function openStream(
  repo: Repository,
  name: string,
  verity?: ObjectId | null,
  contentType?: bigint,
): Promise<SplitStreamReader> {
  checkLinkName(name, "stream");
  let data: Uint8Array;
  if (verity) {
    const path = repo.objectPath(verity);
    try {
      data = await Deno.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new NotFoundError(`stream object ${verity.toId()} not found`, { context: [`stream ${name}`] });
      }
      throw e;
    }
    if (!repo.insecure) {
      const fd = openPath(path, O_RDONLY);
      try {
        const measured = measureOrNull(fd, repo.alg);
        if (!measured || !measured.equals(verity)) {
          throw new IntegrityError(
            measured
              ? `fs-verity digest ${measured.hex()} differs from ${verity.hex()}`
              : "object has no fs-verity",
            { context: [`stream ${name}`] },
          );
        }
      } finally {
        closeFd(fd);
      }
    }
  } else {
    try {
      data = await Deno.readFile(`${repo.path}/streams/${name}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NotFoundError(`stream ${name} not found`);
      throw e;
    }
  }
  try {
    return await SplitStreamReader.fromBytes(data, { alg: repo.alg, contentType });
  } catch (e) {
    if (e instanceof FormatError) throw e.within(`stream ${name}`);
    throw e;
  }
}

/** Writes the reassembled content of a stream (inline data and whole external objects) to `out`. */
export async function catStream(
  repo: Repository,
  reader: SplitStreamReader,
  out: (chunk: Uint8Array) => Promise<void> | void,
): Promise<void> {
  const buf = new Uint8Array(1 << 20);
  for await (const chunk of reader.chunks()) {
    if (chunk.kind === "inline") {
      await out(chunk.data);
      continue;
    }
    using f = await repo.openObject(chunk.id);
    for (;;) {
      const n = await f.read(buf);
      if (n === null) break;
      await out(buf.subarray(0, n));
    }
  }
}
