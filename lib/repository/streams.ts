// streams/<content-id> and streams/refs/<name> (docs/repository.md#streams-images): splitstreams stored as
// objects, found by a caller-chosen content id. The symlink is made only after syncfs, so a visible stream
// never refers to objects that a crash could lose.
import { CfsError, FormatError, IntegrityError, NotFoundError } from "../errors.ts";
import { RepoPathError } from "./repo_fs.ts";

/** Largest splitstream read into memory (streams hold inline data of small files only). */
const MAX_STREAM = 1 << 30;
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
    target = repo.fs.readLink(`streams/${contentId}`);
  } catch {
    return null;
  }
  await Promise.resolve();
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
  const { id, linked } = await storeStream(repo, contentId, writer);
  await linked;
  if (refName !== undefined) await nameStream(repo, contentId, refName);
  return id;
}

/**
 * writeStream's two halves: the stream object is stored when this resolves (its id can be used, e.g.
 * read by verity), and `linked` resolves once every object written so far is synced and
 * `streams/<contentId>` made (docs/repository.md#streams-images). A pull builds its image while the last
 * layer's sync runs (docs/performance.md#shaped-pull); `linked` must be awaited (or its failure
 * handled) before anything is named that relies on the link.
 */
export async function storeStream(
  repo: Repository,
  contentId: string,
  writer: SplitStreamWriter,
): Promise<{ id: ObjectId; linked: Promise<void> }> {
  checkLinkName(contentId, "stream");
  await repo.ensureWritable();
  const bytes = await writer.finish();
  const id = await repo.ensureObject(bytes);
  const linked = (async () => {
    await repo.settle(); // objects still being written in the background
    await repo.syncAsync();
    await linkRelative(repo.path, `streams/${contentId}`, `objects/${id.objectPath()}`);
  })();
  linked.catch(() => {}); // the caller awaits it; a failure before that must not be unhandled
  return { id, linked };
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
      data = repo.fs.readFile(`objects/${verity.objectPath()}`, MAX_STREAM);
    } catch (e) {
      if (e instanceof RepoPathError && e.code === "not-found") {
        throw new NotFoundError(`stream object ${verity.toId()} not found`, { context: [`stream ${name}`] });
      }
      throw e instanceof CfsError ? e.within(`stream ${name}`) : e;
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
      // The link (and a refs/ link before it) is followed only inside the repository.
      data = repo.fs.readFile(repo.fs.resolve(`streams/${name}`), MAX_STREAM);
    } catch (e) {
      if (e instanceof RepoPathError && e.code === "not-found") {
        throw new NotFoundError(`stream ${name} not found`);
      }
      throw e instanceof CfsError ? e.within(`stream ${name}`) : e;
    }
  }
  try {
    return await SplitStreamReader.fromBytes(data, { alg: repo.alg, contentType });
  } catch (e) {
    if (e instanceof FormatError) throw e.within(`stream ${name}`);
    throw e;
  }
}
