// Small file-system helpers shared by rooms that walk directories.

/** The entries of a directory, or none when it does not exist. */
export async function readDirOrEmpty(path: string): Promise<Deno.DirEntry[]> {
  try {
    return await Array.fromAsync(Deno.readDir(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}
