// images/<hex> and images/refs/<name> (docs/repository.md#streams-images): EROFS images the repository made
// or imported — the only things it mounts. A hex name is the image's fs-verity digest and is checked
// on open (kernel measurement, or a userspace digest where the file has no verity).
import { CfsError, IntegrityError, NotFoundError } from "../errors.ts";
import { MAX_REF_DEPTH, type RepoEntry, RepoPathError } from "./repo_fs.ts";
import { fsverityDigestFile } from "../fsverity/digest_file.ts";
import type { ObjectId } from "../fsverity/object_id.ts";
import { closeFd } from "../linux/fs.ts";
import type { Repository } from "./repository.ts";
import { objectIdOfTarget } from "./streams.ts";
import { checkLinkName, linkRelative } from "./symlinks.ts";
import { measureOrNull } from "../objects/verity.ts";

const HEX_NAME = /^[0-9a-f]+$/;

/** Stores image bytes as an object, links `images/<hex>` and, with `name`, `images/refs/<name>`. */
export async function writeImage(repo: Repository, bytes: Uint8Array, name?: string): Promise<ObjectId> {
  if (name !== undefined) checkLinkName(name, "image ref");
  await repo.ensureWritable();
  const id = await repo.ensureObject(bytes);
  await linkRelative(repo.path, `images/${id.hex()}`, `objects/${id.objectPath()}`);
  if (name !== undefined) await linkRelative(repo.path, `images/refs/${name}`, `images/${id.hex()}`);
  return id;
}

/**
 * writeImage for an image handed over in pieces by `produce` (synchronously; each piece only valid
 * during its call): written to the object as it comes, so the whole image is never in memory.
 */
export async function writeImageFrom(
  repo: Repository,
  produce: (sink: (piece: Uint8Array) => void) => void,
  name?: string,
): Promise<ObjectId> {
  if (name !== undefined) checkLinkName(name, "image ref");
  await repo.ensureWritable();
  const w = repo.createObjectWriter();
  let id: ObjectId;
  try {
    await w.write(new Uint8Array(0)); // opens it
    // A writer that cannot write synchronously (no O_TMPFILE here) gets copies afterwards.
    const kept: Uint8Array[] = [];
    produce((piece) => {
      if (kept.length > 0 || !w.writeSync?.(piece)) kept.push(piece.slice());
    });
    for (const k of kept) await w.write(k);
    id = (await w.finish()).id;
  } catch (e) {
    await w.abort();
    throw e;
  }
  await linkRelative(repo.path, `images/${id.hex()}`, `objects/${id.objectPath()}`);
  if (name !== undefined) await linkRelative(repo.path, `images/refs/${name}`, `images/${id.hex()}`);
  return id;
}

export interface OpenedImage {
  /** The name asked for (`<hex>` or `refs/<name>`). */
  name: string;
  /** The image's object id (its fs-verity digest). */
  id: ObjectId;
  /** Absolute path of the image's object file. */
  path: string;
  /** True when the mount must require fs-verity on the overlay (the image itself carries verity). */
  overlayVerity: boolean;
}

/**
 * Resolves and verifies `images/<name>`. A hex name must equal the image's digest; a `refs/…`
 * name is resolved to its image, which is checked the same way. Missing → NotFoundError.
 */
export async function openImage(repo: Repository, name: string): Promise<OpenedImage> {
  checkLinkName(name, "image");
  // Followed only inside the repository, and only to a regular file (a FIFO never hangs a mount).
  let rel: string;
  let fd: number;
  try {
    rel = repo.fs.resolve(`images/${name}`);
    if (!objectIdOfTarget(rel, repo.alg)) {
      throw new IntegrityError(`image ${name} does not resolve to an object (${rel})`);
    }
    fd = repo.fs.openFile(rel).fd;
  } catch (e) {
    if (e instanceof RepoPathError && e.code === "not-found") {
      throw new NotFoundError(`image ${name} not found`);
    }
    throw e instanceof CfsError ? e.within(`image ${name}`) : e;
  }
  const real = `${repo.path}/${rel}`;
  const id = objectIdOfTarget(rel, repo.alg)!;
  const expected = name.includes("/") ? id : nameAsId(repo, name);
  let measured: ObjectId | null;
  try {
    measured = measureOrNull(fd, repo.alg);
  } finally {
    closeFd(fd);
  }
  if (measured === null && !repo.insecure) {
    throw new IntegrityError(`image ${name} has no fs-verity in a repository that requires it`);
  }
  const actual = measured ?? await fsverityDigestFile(real, repo.alg);
  if (!actual.equals(expected)) {
    throw new IntegrityError(
      `image ${name}: fs-verity digest is ${actual.hex()}, expected ${expected.hex()}`,
    );
  }
  return { name, id: actual, path: real, overlayVerity: measured !== null };
}

function nameAsId(repo: Repository, name: string): ObjectId {
  if (!HEX_NAME.test(name)) throw new NotFoundError(`image ${name} not found (not a digest nor refs/<name>)`);
  const id = objectIdOfTarget(`objects/${name.slice(0, 2)}/${name.slice(2)}`, repo.alg);
  if (!id) throw new NotFoundError(`image ${name} not found (not a ${repo.alg} digest)`);
  return id;
}

/** Reads a verified image's bytes. */
export async function readImage(
  repo: Repository,
  name: string,
): Promise<{ image: OpenedImage; bytes: Uint8Array }> {
  const image = await openImage(repo, name);
  return { image, bytes: repo.fs.readFile(repo.fs.resolve(`images/${name}`), 1 << 30) };
}

export interface ImageEntry {
  /** `<hex>` for top-level images, `refs/<name>` for named refs. */
  name: string;
  /** Object the link points to (null for broken or foreign links). */
  id: ObjectId | null;
}

/** Top-level `images/<hex>` links and, recursively, `images/refs/…`, sorted by name. */
export function listImages(repo: Repository): Promise<ImageEntry[]> {
  const out: ImageEntry[] = [];
  const fs = repo.fs;
  const walk = (rel: string, depth: number) => {
    let entries: RepoEntry[];
    try {
      entries = fs.list(`images${rel ? "/" + rel : ""}`);
    } catch {
      return; // not a directory, or a symlink where one should be: fsck reports it
    }
    for (const e of entries) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      if (e.kind === "dir" && (rel !== "" || e.name === "refs")) {
        if (depth < MAX_REF_DEPTH) walk(name, depth + 1);
      } else if (e.kind === "symlink") {
        let id: ObjectId | null = null;
        try {
          id = objectIdOfTarget(fs.resolve(`images/${name}`), repo.alg);
        } catch { /* broken or outward link */ }
        out.push({ name, id });
      }
    }
  };
  walk("", 0);
  return Promise.resolve(out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
}
