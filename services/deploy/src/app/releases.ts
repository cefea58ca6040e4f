// Release queries (stageline.deploy.v1.ReleaseService).
import { invalidArgument, notFound } from '@stageline/errors';
import type { Release } from '../domain/release.ts';
import type { CronRun, CronTickStore } from './cron-scheduler.ts';
import type { ReleaseStore } from './ports.ts';

export interface ReleaseQueriesDeps {
  releases: Pick<ReleaseStore, 'history' | 'get'>;
  cronRuns?: Pick<CronTickStore, 'list'>;
}

function requireServiceId(serviceId: string): void {
  if (serviceId.trim() === '') throw invalidArgument('service_id', 'required');
}

/** Every release of the service, newest first (empty for a service never deployed). */
export async function listReleases(deps: ReleaseQueriesDeps, serviceId: string): Promise<Release[]> {
  requireServiceId(serviceId);
  return deps.releases.history(serviceId);
}

export async function getRelease(deps: ReleaseQueriesDeps, serviceId: string, revision: number): Promise<Release> {
  requireServiceId(serviceId);
  if (!Number.isInteger(revision) || revision < 1) throw invalidArgument('revision', 'must be 1 or more');
  const release = await deps.releases.get(serviceId, revision);
  if (release === undefined) throw notFound('release', `${serviceId}@${revision}`, 'revision');
  return release;
}

/** A cron job's runs on the local runtime, newest first. */
export async function listCronRuns(deps: ReleaseQueriesDeps, serviceId: string, limit: number): Promise<CronRun[]> {
  requireServiceId(serviceId);
  if (limit > 500) throw invalidArgument('limit', 'must be at most 500');
  return deps.cronRuns?.list(serviceId, limit || 50) ?? [];
}
