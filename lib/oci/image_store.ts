// OCI images inside a composefs repository (docs/oci.md#identifiers): manifests and configs stored as
// splitstreams holding the raw JSON as one object, with named refs to layer streams and to the
// composefs EROFS images; tags as symlinks under streams/refs/oci/. Reading them is OciImage's
// (./oci_image.ts); this file writes them, tags them and lists the tags.
import { describeError, FormatError, NotFoundError } from "../errors.ts";
import { repoFs, RepoPathError } from "../repository/repo_fs.ts";
import { ObjectId } from "../fsverity/object_id.ts";
import type { Repository } from "../repository/repository.ts";
import { SplitStreamWriter } from "../splitstream/mod.ts";
import { CONTENT_TYPE } from "./content_types.ts";
import { parseDigest } from "./digest.ts";
import { manifestDigestOfLink, OciImage } from "./oci_image.ts";
import { configStreamId, decodeTag, encodeTag, manifestStreamId, tagRefName } from "./tags.ts";

/** Stores config JSON with its named refs; returns the stream's verity. */
export async function writeConfigStream(
  repo: Repository,
  digest: string,
  bytes: Uint8Array,
  layerRefs: [string, ObjectId][],
  imageRefs: [string, ObjectId][] = [],
): Promise<ObjectId> {
  const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_CONFIG);
  w.writeExternal(await repo.ensureObject(bytes), bytes.length);
  for (const [k, v] of layerRefs) w.addNamedRef(k, v);
  for (const [k, v] of imageRefs) w.addNamedRef(k, v);
  return await repo.writeStream(configStreamId(digest), w);
}

/** Stores manifest JSON with `config:<digest>` and layer named refs; returns the stream's verity. */
export async function writeManifestStream(
  repo: Repository,
  digest: string,
  bytes: Uint8Array,
  configDigest: string,
  configVerity: ObjectId,
  layerRefs: [string, ObjectId][],
): Promise<ObjectId> {
  const w = new SplitStreamWriter(repo.alg, CONTENT_TYPE.OCI_MANIFEST);
  w.writeExternal(await repo.ensureObject(bytes), bytes.length);
  w.addNamedRef(`config:${configDigest}`, configVerity);
  for (const [k, v] of layerRefs) w.addNamedRef(k, v);
  return await repo.writeStream(manifestStreamId(digest), w);
}

export async function tagImage(repo: Repository, manifestDigest: string, name: string): Promise<void> {
  parseDigest(manifestDigest, "manifest digest");
  if (!(await repo.hasStream(manifestStreamId(manifestDigest)))) {
    throw new NotFoundError(`no stored manifest ${manifestDigest}`);
  }
  await repo.nameStream(manifestStreamId(manifestDigest), tagRefName(name));
}

export async function untagImage(repo: Repository, name: string): Promise<void> {
  const path = `${repo.path}/streams/refs/${tagRefName(name)}`;
  try {
    await Deno.lstat(path);
  } catch {
    throw new NotFoundError(`no image tagged ${JSON.stringify(name)}`);
  }
  await Deno.remove(path);
}

export interface ImageListEntry {
  name: string;
  manifestDigest: string;
  isContainer: boolean;
  architecture: string;
  os: string;
  created: string | null;
  layerCount: number;
  referrerCount: number;
  /** Set when the tag cannot be read (dangling, looping, outward, damaged): the other fields are empty. */
  error?: string;
}

/** Tag file names under streams/refs/oci/, read strictly below the repository (none: empty). */
export function tagFileNames(repo: Repository): string[] {
  try {
    return repoFs(repo).list("streams/refs/oci").map((e) => e.name);
  } catch (e) {
    if (e instanceof RepoPathError && e.code === "not-found") return [];
    throw e;
  }
}

/**
 * Every tag with what `oci images` shows, sorted by name. A tag that cannot be read does not hide
 * the others: it is listed with `error` set (docs/repository-safety.md).
 */
export async function listImages(repo: Repository): Promise<ImageListEntry[]> {
  const out: ImageListEntry[] = [];
  for (const enc of tagFileNames(repo)) {
    const name = decodeTag(enc);
    try {
      out.push(await describeTag(repo, enc, name));
    } catch (e) {
      out.push({
        name,
        manifestDigest: "",
        isContainer: false,
        architecture: "",
        os: "",
        created: null,
        layerCount: 0,
        referrerCount: 0,
        error: describeError(e),
      });
    }
  }
  return out;
}

/**
 * The manifest digest a tag file names, checked to resolve inside the repository to a stored
 * object (throws FormatError otherwise, RepoPathError when the link cannot be followed).
 */
export function taggedManifestDigest(repo: Repository, enc: string, name: string): string {
  const rel = `streams/refs/oci/${enc}`;
  const fs = repoFs(repo);
  const target = fs.readLink(rel);
  const digest = manifestDigestOfLink(target);
  if (digest === undefined) throw new FormatError(`tag ${name}: points at ${target}, not a manifest`);
  const real = fs.resolve(rel);
  if (!/^objects\/[0-9a-f]{2}\/[0-9a-f]+$/.test(real)) {
    throw new FormatError(`tag ${name}: leads to ${real}, not a stored manifest`);
  }
  return parseDigest(digest, `tag ${name} target`).digest;
}

async function describeTag(repo: Repository, enc: string, name: string): Promise<ImageListEntry> {
  const manifestDigest = taggedManifestDigest(repo, enc, name);
  const img = await OciImage.openManifest(repo, manifestDigest);
  return {
    name,
    manifestDigest,
    isContainer: img.isContainer,
    architecture: img.architecture,
    os: img.os,
    created: img.created,
    layerCount: img.layerCount,
    referrerCount: await countReferrers(repo, manifestDigest),
  };
}

async function countReferrers(repo: Repository, subject: string): Promise<number> {
  let n = 0;
  try {
    for await (const _ of Deno.readDir(`${repo.path}/streams/refs/oci-referrers/${encodeTag(subject)}`)) n++;
  } catch { /* none */ }
  return n;
}

export { ObjectId };
