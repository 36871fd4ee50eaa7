// The methods of org.composefs.Repository (lib/varlink/org.composefs.Repository.varlink,
// docs/varlink.md#calls), one function each.
import { gcReportFields } from "../repository/gc_json.ts";
import { collectObjects } from "../erofs/reader.ts";
import { fsckReportFields } from "../repository/fsck_json.ts";
import { SYSTEM_REPO_PATH, userRepoPath } from "../repository/location.ts";
import { Repository } from "../repository/repository.ts";
import { describeError } from "../errors.ts";
import { mountOptions, replyWithMount } from "./detached_mount.ts";
import { IFACE } from "./interfaces.ts";
import { type CallContext, failure, type Method, repoOf } from "./method.ts";
import { bool, int, type Params, str, strings } from "./params.ts";
import { VarlinkError } from "./server.ts";

const REPO = IFACE.repository;

function invalidSpec(message: string): VarlinkError {
  return new VarlinkError(`${REPO}.InvalidSpec`, { message });
}

async function initRepository(cx: CallContext): Promise<Params> {
  const path = str(cx.p, "path");
  const algorithm = str(cx.p, "algorithm", true) ?? "fsverity-sha512-12";
  if (algorithm !== "fsverity-sha512-12" && algorithm !== "fsverity-sha256-12") {
    throw invalidSpec(
      `invalid algorithm ${JSON.stringify(algorithm)} (fsverity-sha256-12 or fsverity-sha512-12)`,
    );
  }
  const insecure = bool(cx.p, "insecure", true) ?? cx.openOpts.insecure ?? false;
  const r = await Repository.init(path, { algorithm, insecure }).catch(failure(REPO));
  return { created: r.created };
}

async function openRepository(cx: CallContext): Promise<Params> {
  const path = str(cx.p, "path", true);
  const user = bool(cx.p, "user", true) ?? false;
  const system = bool(cx.p, "system", true) ?? false;
  if ((path !== undefined ? 1 : 0) + (user ? 1 : 0) + (system ? 1 : 0) !== 1) {
    throw invalidSpec("exactly one of `path`, `user`, `system` must be set");
  }
  let where: string;
  try {
    where = path ?? (system ? SYSTEM_REPO_PATH : userRepoPath());
  } catch (e) {
    throw invalidSpec(describeError(e));
  }
  let repo: Repository;
  try {
    repo = await Repository.open(where, cx.openOpts);
  } catch (e) {
    throw new VarlinkError(`${REPO}.RepoNotFound`, { message: describeError(e) });
  }
  return { handle: cx.handles.add(repo, cx.conn.id) };
}

function closeRepository(cx: CallContext): Params {
  cx.handles.close(int(cx.p, "handle"), REPO);
  return {};
}

async function fsck(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, REPO);
  const metadataOnly = bool(cx.p, "metadata_only", true) ?? false;
  return fsckReportFields(await repo.fsck({ metadataOnly }).catch(failure(REPO)));
}

async function gc(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, REPO);
  const dryRun = bool(cx.p, "dry_run");
  const roots = strings(cx.p, "roots");
  return gcReportFields(await repo.gc({ dryRun, roots }).catch(failure(REPO)), dryRun);
}

async function imageObjects(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, REPO);
  const image = str(cx.p, "name");
  const { bytes } = await repo.readImage(image).catch(failure(REPO, ["NoSuchRef", { reference: image }]));
  const ids = collectObjects(bytes, repo.alg).map((id) => id.toId());
  return { object_ids: [...new Set(ids)].sort() };
}

async function mount(cx: CallContext): Promise<Params> {
  const repo = repoOf(cx, REPO);
  const image = str(cx.p, "name");
  const opts = mountOptions(cx.p);
  return await replyWithMount(cx, repo, image, opts, failure(REPO, ["NoSuchRef", { reference: image }]));
}

export const REPOSITORY_METHODS: Record<string, Method> = {
  InitRepository: initRepository,
  OpenRepository: openRepository,
  CloseRepository: closeRepository,
  Fsck: fsck,
  Gc: gc,
  ImageObjects: imageObjects,
  Mount: mount,
};
