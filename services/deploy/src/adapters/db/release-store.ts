// ReleaseStore and HostPortReservations on PostgreSQL (schema `deploy`).
import { type Database, type EntityManager, isUniqueViolation, newId } from '@stageline/db';
import { DomainError } from '@stageline/errors';
import { bus, control } from '@stageline/proto';
import { openValues, type Secrets, sealValues } from '@stageline/secrets';
import type { CredentialStore, JobRecord, NewRelease, ReleaseChange, ReleaseStore } from '../../app/ports.ts';
import type { Release, ReleaseStatus } from '../../domain/release.ts';
import type { DatabaseCredentials } from '../../domain/workload.ts';
import type { HostPortReservations } from '../podman/local-runtime.ts';
import { DatabaseCredentialRow, HostPortRow, JobResultRow, ReleaseRow } from './entities.ts';

export function toRelease(row: ReleaseRow): Release {
  return {
    id: row.id,
    serviceId: row.serviceId,
    serviceName: row.serviceName,
    environmentId: row.environmentId,
    revision: row.revision,
    deploymentId: row.deploymentId,
    jobId: row.jobId,
    runtime: row.runtime,
    namespace: row.namespace,
    kubeContext: row.kubeContext,
    image: row.image,
    digest: row.digest,
    version: row.version,
    configHash: row.configHash,
    chartPath: row.chartPath,
    status: row.status as ReleaseStatus,
    message: row.message,
    hostPorts: row.hostPorts,
    endpoints: row.endpoints,
    readinessTimeoutSeconds: row.readinessTimeoutSeconds,
    runtimeRevision: row.runtimeRevision,
    kind: row.kind,
    schedule: row.schedule,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

/** A lost connection is worth a redelivery; anything else is a bug to report. */
export function unavailable(e: unknown): never {
  const code = (e as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === '57P01' || code === '08006') {
    throw new DomainError('UNAVAILABLE', 'the deploy database is unavailable', { cause: e });
  }
  throw e;
}

// Serializes revision allocation per service across processes, for the transaction's duration.
const lockService = (em: EntityManager, serviceId: string) =>
  em.execute(`select pg_advisory_xact_lock(hashtext('deploy.release'), hashtext(?))`, [serviceId]);

export interface PgReleaseStoreDeps {
  db: Database;
  /** Recorded outcomes keep their outputs (connection details, job outputs) sealed. */
  secrets: Secrets;
  now?: () => Date;
}

export class PgReleaseStore implements ReleaseStore {
  readonly #db: Database;
  readonly #secrets: Secrets;
  readonly #now: () => Date;

  constructor(deps: PgReleaseStoreDeps) {
    this.#db = deps.db;
    this.#secrets = deps.secrets;
    this.#now = deps.now ?? (() => new Date());
  }

  async findResult(jobId: string): Promise<bus.JobFinished | undefined> {
    const row = await this.#db.em().findOne(JobResultRow, { jobId }).catch(unavailable);
    if (row === null) return undefined;
    const result = bus.JobFinished.fromJSON(row.result);
    return { ...result, outputs: openValues(this.#secrets, result.outputs) };
  }

  async history(serviceId: string): Promise<Release[]> {
    const rows = await this.#db
      .em()
      .find(ReleaseRow, { serviceId }, { orderBy: { revision: 'desc' } })
      .catch(unavailable);
    return rows.map(toRelease);
  }

  async get(serviceId: string, revision: number): Promise<Release | undefined> {
    const row = await this.#db.em().findOne(ReleaseRow, { serviceId, revision }).catch(unavailable);
    return row === null ? undefined : toRelease(row);
  }

  async begin(input: NewRelease): Promise<Release> {
    const row = await this.#db
      .em()
      .transactional(async (em) => {
        await lockService(em, input.serviceId);
        const existing = await em.findOne(ReleaseRow, { jobId: input.jobId });
        if (existing !== null) return existing;
        const [last] = await em.execute<Array<{ revision: number | null }>>(
          'select max(revision) as revision from release where service_id = ?',
          [input.serviceId],
        );
        const now = this.#now();
        return em.create(ReleaseRow, {
          id: newId(),
          ...input,
          revision: (last?.revision ?? 0) + 1,
          configHash: '',
          chartPath: '',
          status: 'DEPLOYING',
          message: '',
          hostPorts: [],
          endpoints: [],
          runtimeRevision: 0,
          kind: input.kind ?? '',
          schedule: input.schedule ?? '',
          createdAt: now,
          updatedAt: now,
        });
      })
      .catch(async (e: unknown) => {
        // Two deliveries of one job raced past findOne: the other one's release is ours.
        if (isUniqueViolation(e)) {
          const other = await this.#db.em().findOne(ReleaseRow, { jobId: input.jobId });
          if (other !== null) return other;
        }
        return unavailable(e);
      });
    return toRelease(row);
  }

  /** Every live CRON_JOB release on a runtime (the local scheduler's schedules). */
  async liveCronJobs(runtime: string): Promise<Release[]> {
    const rows = await this.#db
      .em()
      .find(ReleaseRow, { runtime, kind: 'CRON_JOB', status: 'DEPLOYED' })
      .catch(unavailable);
    return rows.map(toRelease);
  }

  async setChart(id: string, chartPath: string, configHash: string): Promise<Release> {
    const em = this.#db.em();
    const row = await em.findOneOrFail(ReleaseRow, { id }).catch(unavailable);
    row.chartPath = chartPath;
    row.configHash = configHash;
    row.updatedAt = this.#now();
    await em.flush().catch(unavailable);
    return toRelease(row);
  }

  async finish(record: JobRecord, changes: readonly ReleaseChange[]): Promise<void> {
    await this.#db
      .em()
      .transactional(async (em) => {
        const now = this.#now();
        for (const change of changes) {
          const row = await em.findOneOrFail(ReleaseRow, { id: change.id });
          row.status = change.status;
          if (change.message !== undefined) row.message = change.message;
          if (change.hostPorts !== undefined) row.hostPorts = change.hostPorts;
          if (change.endpoints !== undefined) row.endpoints = change.endpoints;
          if (change.digest !== undefined) row.digest = change.digest;
          if (change.runtimeRevision !== undefined) row.runtimeRevision = change.runtimeRevision;
          row.updatedAt = now;
        }
        // A service deleted takes the values it handed on (connection details, job outputs) with it.
        if (record.action === control.Action.ACTION_DELETE && record.result.succeeded) {
          await em.execute(`update job_result set result = result - 'outputs' where service_id = ?`, [
            record.serviceId,
          ]);
        }
        // The first recorded outcome stands: a duplicate that raced us changes nothing.
        if ((await em.findOne(JobResultRow, { jobId: record.jobId })) === null) {
          em.create(JobResultRow, {
            jobId: record.jobId,
            serviceId: record.serviceId,
            action: record.action,
            result: bus.JobFinished.toJSON({
              ...record.result,
              outputs: sealValues(this.#secrets, record.result.outputs),
            }),
            createdAt: now,
          });
        }
      })
      .catch(unavailable);
  }
}

export interface PgHostPortsDeps {
  db: Database;
  /** A port free on 127.0.0.1 right now. */
  pickFreePort(): Promise<number>;
  now?: () => Date;
}

const PICK_ATTEMPTS = 20;

export class PgHostPorts implements HostPortReservations {
  readonly #deps: PgHostPortsDeps;

  constructor(deps: PgHostPortsDeps) {
    this.#deps = deps;
  }

  async reserve(
    serviceId: string,
    environmentId: string,
    containerPorts: readonly number[],
  ): Promise<Map<number, number>> {
    const em = this.#deps.db.em();
    const held = await em.find(HostPortRow, { serviceId }).catch(unavailable);
    const result = new Map<number, number>();
    for (const row of held) {
      if (containerPorts.includes(row.containerPort)) result.set(row.containerPort, row.port);
    }
    // Ports no longer public are given back.
    const stale = held.filter((row) => !containerPorts.includes(row.containerPort));
    if (stale.length > 0) {
      await em.nativeDelete(HostPortRow, { port: { $in: stale.map((r) => r.port) } }).catch(unavailable);
    }
    for (const containerPort of containerPorts) {
      if (result.has(containerPort)) continue;
      result.set(containerPort, await this.#reserveOne(serviceId, environmentId, containerPort));
    }
    return result;
  }

  async #reserveOne(serviceId: string, environmentId: string, containerPort: number): Promise<number> {
    for (let attempt = 0; attempt < PICK_ATTEMPTS; attempt++) {
      const port = await this.#deps.pickFreePort();
      try {
        await this.#deps.db.em().insert(HostPortRow, {
          port,
          serviceId,
          environmentId,
          containerPort,
          createdAt: this.#deps.now?.() ?? new Date(),
        });
        return port;
      } catch (e) {
        if (!isUniqueViolation(e)) unavailable(e);
        // Either another service holds that port (stopped, so not bound), or a concurrent delivery of this
        // service's job reserved this container port first: then its port is ours.
        const mine = await this.#deps.db.em().findOne(HostPortRow, { serviceId, containerPort });
        if (mine !== null) return mine.port;
      }
    }
    throw new DomainError('UNAVAILABLE', `no free host port after ${PICK_ATTEMPTS} attempts`);
  }

  async releaseService(serviceId: string): Promise<void> {
    await this.#deps.db.em().nativeDelete(HostPortRow, { serviceId }).catch(unavailable);
  }

  /** Every reservation of an environment (tests, and operators looking for who holds a port). */
  async ofEnvironment(
    environmentId: string,
  ): Promise<Array<{ port: number; serviceId: string; containerPort: number }>> {
    const rows = await this.#deps.db.em().find(HostPortRow, { environmentId }, { orderBy: { port: 'asc' } });
    return rows.map((r) => ({ port: r.port, serviceId: r.serviceId, containerPort: r.containerPort }));
  }
}

export interface PgCredentialStoreDeps {
  db: Database;
  /** Passwords are stored sealed. */
  secrets: Secrets;
  now?: () => Date;
}

/** A database's user, password and database name: created once per service, kept until DELETE. */
export class PgCredentialStore implements CredentialStore {
  readonly #deps: PgCredentialStoreDeps;
  constructor(deps: PgCredentialStoreDeps) {
    this.#deps = deps;
  }

  async ensure(
    serviceId: string,
    environmentId: string,
    make: () => DatabaseCredentials,
  ): Promise<DatabaseCredentials> {
    const em = this.#deps.db.em();
    const existing = await em.findOne(DatabaseCredentialRow, { serviceId }).catch(unavailable);
    if (existing !== null) return this.#credentials(existing);
    const made = make();
    try {
      await em.insert(DatabaseCredentialRow, {
        serviceId,
        environmentId,
        ...made,
        password: this.#deps.secrets.seal(made.password),
        createdAt: this.#deps.now?.() ?? new Date(),
      });
      return made;
    } catch (e) {
      // Another delivery made them first: theirs are the ones.
      if (!isUniqueViolation(e)) unavailable(e);
      return this.#credentials(await this.#deps.db.em().findOneOrFail(DatabaseCredentialRow, { serviceId }));
    }
  }

  #credentials(row: DatabaseCredentialRow): DatabaseCredentials {
    return { username: row.username, password: this.#deps.secrets.open(row.password), database: row.database };
  }

  async get(serviceId: string): Promise<DatabaseCredentials | undefined> {
    const row = await this.#deps.db.em().findOne(DatabaseCredentialRow, { serviceId }).catch(unavailable);
    return row === null ? undefined : this.#credentials(row);
  }

  async remove(serviceId: string): Promise<void> {
    await this.#deps.db.em().nativeDelete(DatabaseCredentialRow, { serviceId }).catch(unavailable);
  }
}
