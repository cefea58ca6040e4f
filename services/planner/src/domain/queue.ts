// The request queue's policy, pure: which open run a request joins (or why it is refused), and which
// queued run starts next. An environment runs one run at a time; the rest wait in request order.
import type { ActionName } from './model.ts';

/** An open run of the environment (queued, running or canceling), as the queue sees it. */
export interface OpenRun {
  id: string;
  action: string;
  status: string;
  requester: string;
  version: string;
  serviceIds: readonly string[];
  forceBuild: boolean;
  /** Epoch ms; ties are broken by id (UUIDv7: time-ordered). */
  createdAt: number;
  /** DEPLOY: per-service versions (absent or empty: none). */
  versions?: Readonly<Record<string, string>>;
  /** A resume of that run: never absorbs another request. */
  resumeOf?: string | null;
}

export interface QueueRequest {
  action: ActionName;
  requester: string;
  version: string;
  /** Empty: the whole environment. */
  serviceIds: readonly string[];
  forceBuild: boolean;
  /** DEPLOY: per-service versions (absent or empty: none). */
  versions?: Readonly<Record<string, string>>;
  /** A resume of that run: always a run of its own. */
  resumeOf?: string;
}

export type Admission =
  /** A DELETE of the environment is queued or running: nothing more may queue behind it. */
  | { type: 'refuse'; reason: 'delete-pending' }
  /** A queued run of the same action, requester, version and scope absorbs the request. */
  | { type: 'merge'; into: string; serviceIds: string[]; forceBuild: boolean }
  | { type: 'queue' };

const ACTIVE = new Set(['RUNNING', 'CANCELING']);
const scopeOf = (serviceIds: readonly string[]) => (serviceIds.length > 0 ? 'services' : 'environment');

/** What a request does to the environment's open runs. */
export function admit(open: readonly OpenRun[], request: QueueRequest): Admission {
  if (open.some((r) => r.action === 'DELETE')) return { type: 'refuse', reason: 'delete-pending' };
  // A rollback names its target: two are never the same request.
  if (request.action === 'ROLLBACK') return { type: 'queue' };
  // A resume names the run it takes up: it is a run of its own, and absorbs nothing.
  if (request.resumeOf) return { type: 'queue' };
  const into = inOrder(open).find(
    (r) =>
      r.status === 'QUEUED' &&
      !r.resumeOf &&
      sameVersions(r.versions, request.versions) &&
      r.action === request.action &&
      r.requester === request.requester &&
      r.version === request.version &&
      scopeOf(r.serviceIds) === scopeOf(request.serviceIds),
  );
  if (into === undefined) return { type: 'queue' };
  return {
    type: 'merge',
    into: into.id,
    serviceIds: into.serviceIds.length > 0 ? [...new Set([...into.serviceIds, ...request.serviceIds])] : [],
    forceBuild: into.forceBuild || request.forceBuild,
  };
}

/** Two per-service version maps ask for the same thing (absent and empty are the same). */
export function sameVersions(
  a: Readonly<Record<string, string>> | undefined,
  b: Readonly<Record<string, string>> | undefined,
): boolean {
  const ka = Object.keys(a ?? {});
  return ka.length === Object.keys(b ?? {}).length && ka.every((k) => b?.[k] === a?.[k]);
}

/**
 * Where a run stands in its environment's queue: while QUEUED, its position (1 = next) and the run
 * it waits for — the one ahead of it in request order (the active run, when it is next). A run that
 * is not queued (or not among `open`) stands nowhere: position 0, waiting for nothing.
 */
export function queueStanding(
  open: readonly Pick<OpenRun, 'id' | 'status' | 'createdAt'>[],
  id: string,
): { position: number; waitsFor: string } {
  const queued = inOrder(open.filter((r) => r.status === 'QUEUED'));
  const at = queued.findIndex((r) => r.id === id);
  if (at < 0) return { position: 0, waitsFor: '' };
  if (at > 0) return { position: at + 1, waitsFor: queued[at - 1]!.id };
  const active = inOrder(open.filter((r) => ACTIVE.has(r.status)))[0];
  return { position: 1, waitsFor: active?.id ?? '' };
}

/** The queued run to start now: the oldest, when none is running; undefined otherwise. */
export function nextToStart(open: readonly OpenRun[]): string | undefined {
  if (open.some((r) => ACTIVE.has(r.status))) return undefined;
  return inOrder(open).find((r) => r.status === 'QUEUED')?.id;
}

/** Request order: created first, then id. */
export function inOrder<T extends Pick<OpenRun, 'createdAt' | 'id'>>(runs: readonly T[]): T[] {
  return [...runs].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
