// Repositories made before meta.json existed (docs/repository.md#meta-json): the algorithm is read off the
// length of object file names (62 hex chars after the XX/ directory → SHA-256, 126 → SHA-512) and whether
// objects carry verity decides whether the new meta.json gets it.
import { RepositoryError } from "../errors.ts";
import type { HashAlgorithm } from "../fsverity/object_id.ts";
import { closeFd, O_RDONLY, openPath } from "../linux/fs.ts";
import { measureOrNull } from "../objects/verity.ts";

const SUBDIR = /^[0-9a-f]{2}$/;

export async function hasObjectsDir(repoPath: string): Promise<boolean> {
  try {
    return (await Deno.lstat(`${repoPath}/objects`)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Infers the algorithm from the first object found, and probes that object for verity. */
export async function inferFromObjects(
  repoPath: string,
): Promise<{ alg: HashAlgorithm; hasVerity: boolean }> {
  const objects = `${repoPath}/objects`;
  for await (const sub of Deno.readDir(objects)) {
    if (!sub.isDirectory || !SUBDIR.test(sub.name)) continue;
    for await (const obj of Deno.readDir(`${objects}/${sub.name}`)) {
      if (!obj.isFile || !/^[0-9a-f]+$/.test(obj.name)) continue;
      let alg: HashAlgorithm;
      if (obj.name.length === 62) alg = "sha256";
      else if (obj.name.length === 126) alg = "sha512";
      else {
        throw new RepositoryError(
          `cannot infer the algorithm from object name objects/${sub.name}/${obj.name} (length ${obj.name.length})`,
        );
      }
      const fd = openPath(`${objects}/${sub.name}/${obj.name}`, O_RDONLY);
      try {
        return { alg, hasVerity: measureOrNull(fd, alg) !== null };
      } finally {
        closeFd(fd);
      }
    }
  }
  throw new RepositoryError("no objects found in repository — cannot infer metadata");
}
