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
    const row = await this.#db.retry("reading a job's recorded result", (em) => em.findOne(JobResultRow, { jobId }));
    if (row === null) return undefined;
    const result = bus.JobFinished.fromJSON(row.result);
    return { ...result, outputs: openValues(this.#secrets, result.outputs) };
  }

  async history(serviceId: string): Promise<Release[]> {
    const rows = await this.#db.retry("reading a service's releases", (em) =>
      em.find(ReleaseRow, { serviceId }, { orderBy: { revision: 'desc' } }),
    );
    return rows.map(toRelease);
  }

  async get(serviceId: string, revision: number): Promise<Release | undefined> {
    const row = await this.#db.retry('reading a release', (em) => em.findOne(ReleaseRow, { serviceId, revision }));
    return row === null ? undefined : toRelease(row);
  }

  async begin(input: NewRelease): Promise<Release> {
    // Safe to run again: a release is found by its job id before one is made.
    const row = await this.#db.retry('beginning a release', (outer) =>
      outer
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
          throw e;
        }),
    );
    return toRelease(row);
  }

  /** Every live CRON_JOB release on a runtime (the local scheduler's schedules). */
  async liveCronJobs(runtime: string): Promise<Release[]> {
    const rows = await this.#db.retry('reading live cron jobs', (em) =>
      em.find(ReleaseRow, { runtime, kind: 'CRON_JOB', status: 'DEPLOYED' }),
    );
    return rows.map(toRelease);
  }

  async setChart(id: string, chartPath: string, configHash: string): Promise<Release> {
    const row = await this.#db.retry("recording a release's chart", async (em) => {
      const found = await em.findOneOrFail(ReleaseRow, { id });
      found.chartPath = chartPath;
      found.configHash = configHash;
      found.updatedAt = this.#now();
      await em.flush();
      return found;
    });
    return toRelease(row);
  }

  async finish(record: JobRecord, changes: readonly ReleaseChange[]): Promise<void> {
    // Safe to run again: the same values are written, and the first recorded result stands.
    await this.#db.retry("recording a job's result", (outer) =>
      outer.transactional(async (em) => {
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
      }),
    );
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
    const db = this.#deps.db;
    const held = await db.retry("reading a service's host ports", (em) => em.find(HostPortRow, { serviceId }));
    const result = new Map<number, number>();
    for (const row of held) {
      if (containerPorts.includes(row.containerPort)) result.set(row.containerPort, row.port);
    }
    // Ports no longer public are given back.
    const stale = held.filter((row) => !containerPorts.includes(row.containerPort));
    if (stale.length > 0) {
      await db.retry('giving back host ports', (em) =>
        em.nativeDelete(HostPortRow, { port: { $in: stale.map((r) => r.port) } }),
      );
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
        await this.#deps.db.retry('reserving a host port', (em) =>
          em.insert(HostPortRow, {
            port,
            serviceId,
            environmentId,
            containerPort,
            createdAt: this.#deps.now?.() ?? new Date(),
          }),
        );
        return port;
      } catch (e) {
        if (!isUniqueViolation(e)) throw e;
        // Either another service holds that port (stopped, so not bound), or a concurrent delivery of this
        // service's job (or our own insert, retried after its commit was lost) reserved it first: then its
        // port is ours.
        const mine = await this.#deps.db.retry('reading a host port', (em) =>
          em.findOne(HostPortRow, { serviceId, containerPort }),
        );
        if (mine !== null) return mine.port;
      }
    }
    throw new DomainError('UNAVAILABLE', `no free host port after ${PICK_ATTEMPTS} attempts`);
  }

  async releaseService(serviceId: string): Promise<void> {
    await this.#deps.db.retry("giving back a service's host ports", (em) =>
      em.nativeDelete(HostPortRow, { serviceId }),
    );
  }

  /** Every reservation of an environment (tests, and operators looking for who holds a port). */
  async ofEnvironment(
    environmentId: string,
  ): Promise<Array<{ port: number; serviceId: string; containerPort: number }>> {
    const rows = await this.#deps.db.retry("reading an environment's host ports", (em) =>
      em.find(HostPortRow, { environmentId }, { orderBy: { port: 'asc' } }),
    );
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
    const db = this.#deps.db;
    const existing = await db.retry("reading a database's credentials", (em) =>
      em.findOne(DatabaseCredentialRow, { serviceId }),
    );
    if (existing !== null) return this.#credentials(existing);
    const made = make();
    try {
      await db.retry("recording a database's credentials", (em) =>
        em.insert(DatabaseCredentialRow, {
          serviceId,
          environmentId,
          ...made,
          password: this.#deps.secrets.seal(made.password),
          createdAt: this.#deps.now?.() ?? new Date(),
        }),
      );
      return made;
    } catch (e) {
      // Another delivery (or our own insert, retried after its commit was lost) made them first: theirs
      // are the ones.
      if (!isUniqueViolation(e)) throw e;
      return this.#credentials(
        await db.retry("reading a database's credentials", (em) =>
          em.findOneOrFail(DatabaseCredentialRow, { serviceId }),
        ),
      );
    }
  }

  #credentials(row: DatabaseCredentialRow): DatabaseCredentials {
    return { username: row.username, password: this.#deps.secrets.open(row.password), database: row.database };
  }

  async get(serviceId: string): Promise<DatabaseCredentials | undefined> {
    const row = await this.#deps.db.retry("reading a database's credentials", (em) =>
      em.findOne(DatabaseCredentialRow, { serviceId }),
    );
    return row === null ? undefined : this.#credentials(row);
  }

  async remove(serviceId: string): Promise<void> {
    await this.#deps.db.retry("forgetting a database's credentials", (em) =>
      em.nativeDelete(DatabaseCredentialRow, { serviceId }),
    );
  }
}
