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
}

export interface QueueRequest {
  action: ActionName;
  requester: string;
  version: string;
  /** Empty: the whole environment. */
  serviceIds: readonly string[];
  forceBuild: boolean;
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
  const into = inOrder(open).find(
    (r) =>
      r.status === 'QUEUED' &&
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

/** The queued run to start now: the oldest, when none is running; undefined otherwise. */
export function nextToStart(open: readonly OpenRun[]): string | undefined {
  if (open.some((r) => ACTIVE.has(r.status))) return undefined;
  return inOrder(open).find((r) => r.status === 'QUEUED')?.id;
}

/** Request order: created first, then id. */
export function inOrder<T extends Pick<OpenRun, 'createdAt' | 'id'>>(runs: readonly T[]): T[] {
  return [...runs].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
