import { LockMode } from '@mikro-orm/core';
import type { Subjects } from '@stageline/bus';
import { type Database, type EntityManager, enqueue, isUniqueViolation, newId, withDbRetry } from '@stageline/db';
import { alreadyExists, invalidArgument, notFound } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { resolveNamespace } from '@stageline/policy';
import { bus, type control } from '@stageline/proto';
import { traceHeaders } from '@stageline/telemetry';
import type {
  Change,
  EnvironmentAggregate,
  EnvironmentEventBody,
  EnvironmentRecord,
  EnvironmentStore,
  Page,
  RunStateRecord,
  RunStateWrite,
} from '../../app/model.ts';
import type { Runtime } from '../../domain/environment.ts';
import type { DefaultSlot } from '../../domain/kinds.ts';
import { EnvStatus, type KindName } from '../../domain/kinds.ts';
import { servicePositions } from '../../domain/pipeline.ts';
import { readAggregate } from './aggregate-sql.ts';
import { EnvironmentRow, ServiceRow, StageRow } from './entities.ts';
import { lockRunState, type OutboxRow, setStatusIfUnchanged, writeRunState } from './run-sql.ts';

// EnvironmentStore on PostgreSQL: an aggregate is the environment row, its stages and its services;
// every change is loaded under the environment row's lock, reconciled row by row, and written with
// its outbox events in the same transaction.

export interface PgEnvironmentStoreDeps {
  db: Database;
  subjects: Subjects;
  /** Wakes the outbox relay after a commit, so events go out without waiting for a poll. */
  onCommit: () => void;
  /** Where retried statements are reported (as `db.retry` does). */
  log?: Logger;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Rows {
  environment: EnvironmentRow;
  stages: StageRow[];
  services: ServiceRow[];
}

function toRecord(row: EnvironmentRow): EnvironmentRecord {
  return {
    id: row.id,
    project: row.project,
    name: row.name,
    runtime: row.runtime as Runtime,
    preview: row.preview,
    clonedFromId: row.clonedFromId ?? '',
    settings: row.settings,
    status: row.status as control.EnvironmentStatus,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

function toAggregate(rows: Rows): EnvironmentAggregate {
  return {
    environment: toRecord(rows.environment),
    pipeline: {
      stages: rows.stages.map((s) => ({
        id: s.id,
        name: s.name,
        description: s.description,
        defaultFor: (s.defaultFor ?? null) as DefaultSlot | null,
      })),
      services: rows.services.map((s) => ({ id: s.id, kind: s.kind as KindName, stageId: s.stageId })),
    },
    services: rows.services.map((s) => ({
      id: s.id,
      definition: s.definition,
      secrets: s.secrets,
      skipped: s.skipped,
      hasResources: s.hasResources,
      endpoints: s.endpoints,
      createdAt: s.createdAt,
      updatedAt: s.updatedAt,
    })),
  };
}

function environmentFields(env: EnvironmentRecord) {
  return {
    project: env.project,
    name: env.name,
    runtime: env.runtime,
    preview: env.preview,
    clonedFromId: env.clonedFromId === '' ? null : env.clonedFromId,
    settings: env.settings,
    namespace: resolveNamespace(env.project, env.name, env.settings.namespace),
    status: env.status,
    createdAt: env.createdAt,
    updatedAt: env.updatedAt,
  };
}

export class PgEnvironmentStore implements EnvironmentStore {
  readonly #deps: PgEnvironmentStoreDeps;

  constructor(deps: PgEnvironmentStoreDeps) {
    this.#deps = deps;
  }

  async insert(aggregate: EnvironmentAggregate, actor: string, events: EnvironmentEventBody[]): Promise<void> {
    const env = aggregate.environment;
    try {
      await this.#deps.db.retry('creating an environment', (em) =>
        em.transactional(async (tx) => {
          // A retry after a commit whose answer was lost finds its own row: done.
          if ((await tx.findOne(EnvironmentRow, { id: env.id })) !== null) return;
          tx.create(EnvironmentRow, { id: env.id, ...environmentFields(env) });
          this.#writeChildren(tx, aggregate, { stages: [], services: [] });
          this.#enqueue(tx, env.id, events, actor);
        }),
      );
    } catch (e) {
      if (isUniqueViolation(e, 'environment_project_name_key')) {
        throw alreadyExists(
          'name',
          `an environment named ${JSON.stringify(env.name)} already exists in project ${JSON.stringify(env.project)}`,
        );
      }
      throw await this.#namespaceTaken(e, env);
    }
    this.#deps.onCommit();
  }

  /** ALREADY_EXISTS naming the environment that holds `env`'s namespace, when `e` is that; else `e`. */
  async #namespaceTaken(e: unknown, env: EnvironmentRecord): Promise<unknown> {
    if (!isUniqueViolation(e, 'environment_namespace_key')) return e;
    const namespace = resolveNamespace(env.project, env.name, env.settings.namespace);
    const holder = await this.#deps.db
      .em()
      .findOne(
        EnvironmentRow,
        { namespace, status: { $ne: EnvStatus.DELETED }, id: { $ne: env.id } },
        { fields: ['id', 'project', 'name'], disableIdentityMap: true },
      );
    const other = holder ? `environment ${holder.project}/${holder.name} (${holder.id})` : 'another environment';
    return alreadyExists(
      env.settings.namespace !== '' ? 'settings.namespace' : 'name',
      `namespace ${JSON.stringify(namespace)} is already the namespace of ${other}`,
    );
  }

  /**
   * Gives every live environment without a recorded namespace (rows from before it was recorded) its
   * resolved one, oldest first; returns those that could not have it because another holds it.
   */
  async assignNamespaces(): Promise<{ id: string; project: string; name: string; namespace: string }[]> {
    const em = this.#deps.db.em();
    const rows = await em.find(
      EnvironmentRow,
      { namespace: null, status: { $ne: EnvStatus.DELETED } },
      { orderBy: { id: 'asc' }, disableIdentityMap: true },
    );
    const conflicts: { id: string; project: string; name: string; namespace: string }[] = [];
    for (const row of rows) {
      const namespace = resolveNamespace(row.project, row.name, row.settings.namespace);
      try {
        await em.nativeUpdate(EnvironmentRow, { id: row.id, namespace: null }, { namespace });
      } catch (e) {
        if (!isUniqueViolation(e, 'environment_namespace_key')) throw e;
        conflicts.push({ id: row.id, project: row.project, name: row.name, namespace });
      }
    }
    return conflicts;
  }

  async deployHostLoad(): Promise<Map<string, number>> {
    const rows = await this.#deps.db.retry('counting environments per deploy host', (em) =>
      em.execute<{ host: string; n: string | number }[]>(
        `select settings->>'deployHost' as host, count(*) as n from environment
          where runtime = 'local' and status <> ? and settings->>'deployHost' is not null group by 1`,
        [EnvStatus.DELETED],
      ),
    );
    return new Map(rows.map((r) => [r.host, Number(r.n)]));
  }

  async get(environmentId: string): Promise<EnvironmentAggregate> {
    // A malformed id cannot name anything; PostgreSQL would reject it as a uuid.
    if (!UUID.test(environmentId)) throw notFound('environment', environmentId, 'environment_id');
    const aggregate = await this.#deps.db.retry('reading an environment', (em) => readAggregate(em, environmentId));
    if (aggregate === undefined) throw notFound('environment', environmentId, 'environment_id');
    return aggregate;
  }

  async list(
    projects: readonly string[] | undefined,
    pageSize: number,
    pageToken: string,
  ): Promise<Page<EnvironmentRecord>> {
    let after: string | undefined;
    if (pageToken !== '') {
      after = Buffer.from(pageToken, 'base64url').toString();
      if (!UUID.test(after)) throw invalidArgument('page_token', 'is not a token from a previous page');
    }
    const where = {
      status: { $ne: EnvStatus.DELETED },
      ...(projects !== undefined ? { project: { $in: [...projects] } } : {}),
      ...(after !== undefined ? { id: { $gt: after } } : {}),
    };
    const rows = await this.#deps.db.retry('listing environments', (em) =>
      em.find(EnvironmentRow, where, { orderBy: { id: 'asc' }, limit: pageSize + 1 }),
    );
    const items = rows.slice(0, pageSize).map(toRecord);
    const last = items.at(-1);
    return {
      items,
      nextPageToken: rows.length > pageSize && last ? Buffer.from(last.id).toString('base64url') : '',
    };
  }

  async update<T>(
    environmentId: string,
    change: (current: EnvironmentAggregate) => Change<T>,
    actor: string,
  ): Promise<T> {
    let written = false;
    let next: EnvironmentRecord | undefined;
    // The change is decided again on what a retry reads: it never applies to a stale environment.
    const result = await this.#deps.db
      .retry('changing an environment', (em) =>
        em.transactional(async (tx) => {
          const rows = await this.#load(tx, environmentId, true);
          const c = change(toAggregate(rows));
          if (c.events.length > 0) {
            next = c.next.environment;
            tx.assign(rows.environment, environmentFields(c.next.environment));
            this.#writeChildren(tx, c.next, rows);
            this.#enqueue(tx, environmentId, c.events, actor);
            written = true;
          }
          return c.result;
        }),
      )
      .catch(async (e: unknown) => {
        throw next === undefined ? e : await this.#namespaceTaken(e, next);
      });
    if (written) this.#deps.onCommit();
    return result;
  }

  /**
   * Retried like `db.retry`, on one entity manager kept for the hand-written statements of the run
   * paths (they use no identity map; a transaction forks its own): not a new one per event.
   */
  #hot<T>(what: string, work: (em: EntityManager) => Promise<T>): Promise<T> {
    this.#sql ??= this.#deps.db.em();
    const em = this.#sql;
    return withDbRetry(() => work(em), {
      what: `${this.#deps.db.schema}: ${what}`,
      ...(this.#deps.log !== undefined ? { log: this.#deps.log } : {}),
    });
  }

  #sql: EntityManager | undefined;

  /** Environments as the run paths last read them: what `setStatus` makes its events of. */
  readonly #known = new Map<string, EnvironmentRecord>();

  #remember(environmentId: string, state: RunStateRecord | undefined): RunStateRecord | undefined {
    if (state === undefined) this.#known.delete(environmentId);
    else {
      if (this.#known.size >= 10_000) this.#known.clear();
      this.#known.set(environmentId, state.environment);
    }
    return state;
  }

  async setStatus(
    environmentId: string,
    status: control.EnvironmentStatus,
    events: (environment: EnvironmentRecord) => { body: EnvironmentEventBody; actor: string }[],
  ): Promise<control.EnvironmentStatus | undefined> {
    if (!UUID.test(environmentId)) return undefined;
    const known = this.#known.get(environmentId);
    // One statement, no read before it: the events are made of the environment as last read, and
    // written only if its row is still that (else the locked path below reads it again).
    if (known !== undefined && status !== EnvStatus.DELETED) {
      const outbox = this.#outboxRows(environmentId, events({ ...known, status }));
      const { before, written } = await this.#hot("setting an environment's status", (em) =>
        setStatusIfUnchanged(em, environmentId, status, known.updatedAt, outbox),
      );
      if (written) this.#deps.onCommit();
      if (before === undefined) this.#known.delete(environmentId);
      if (before === undefined) return undefined;
      if (written || before === status) return status;
    }
    let found = false;
    await this.recordRunState(environmentId, (current) => {
      found = true;
      return current.environment.status === status
        ? undefined
        : {
            status,
            services: status === EnvStatus.DELETED ? current.services : [],
            clearSecrets: status === EnvStatus.DELETED,
            events: events({ ...current.environment, status }),
          };
    });
    return found ? status : undefined;
  }

  async recordRunState(
    environmentId: string,
    decide: (current: RunStateRecord) => RunStateWrite | undefined,
  ): Promise<void> {
    if (!UUID.test(environmentId)) return;
    // Decided again on what a retry reads, under the lock: never applied to a stale environment.
    const written = await this.#hot('recording run events', (em) =>
      em.transactional(async (tx) => {
        const current = this.#remember(environmentId, await lockRunState(tx, environmentId));
        const write = current === undefined ? undefined : decide(current);
        if (write === undefined) return false;
        await writeRunState(tx, environmentId, write, this.#outboxRows(environmentId, write.events));
        return true;
      }),
    );
    if (written) this.#deps.onCommit();
  }

  async project(environmentId: string): Promise<string | undefined> {
    if (!UUID.test(environmentId)) return undefined;
    const row = await this.#deps.db.retry("reading an environment's project", (em) =>
      em.findOne(EnvironmentRow, { id: environmentId }, { fields: ['id', 'project'], disableIdentityMap: true }),
    );
    return row?.project;
  }

  async #load(em: EntityManager, environmentId: string, lock: boolean): Promise<Rows> {
    // A malformed id cannot name anything; PostgreSQL would reject it as a uuid.
    if (!UUID.test(environmentId)) throw notFound('environment', environmentId, 'environment_id');
    const environment = await em.findOne(
      EnvironmentRow,
      { id: environmentId },
      lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {},
    );
    if (!environment) throw notFound('environment', environmentId, 'environment_id');
    const [stages, services] = await Promise.all([
      em.find(StageRow, { environmentId }, { orderBy: { position: 'asc' } }),
      // Each stage's services in their order in it: the order the pipeline model reads positions from.
      em.find(ServiceRow, { environmentId }, { orderBy: { position: 'asc', id: 'asc' } }),
    ]);
    return { environment, stages, services };
  }

  /** Reconciles stage and service rows with the aggregate: create, update in place, remove. */
  #writeChildren(em: EntityManager, next: EnvironmentAggregate, rows: Pick<Rows, 'stages' | 'services'>): void {
    const environmentId = next.environment.id;
    const stages = new Map(rows.stages.map((s) => [s.id, s]));
    next.pipeline.stages.forEach((stage, position) => {
      const fields = { name: stage.name, description: stage.description, position, defaultFor: stage.defaultFor };
      const row = stages.get(stage.id);
      if (row) {
        em.assign(row, fields);
        stages.delete(stage.id);
      } else {
        em.create(StageRow, { id: stage.id, environmentId, ...fields });
      }
    });

    const placement = new Map(next.pipeline.services.map((s) => [s.id, s.stageId]));
    const positions = servicePositions(next.pipeline);
    const services = new Map(rows.services.map((s) => [s.id, s]));
    for (const service of next.services) {
      const fields = {
        stageId: placement.get(service.id)!,
        position: positions.get(service.id)!,
        name: service.definition.name,
        kind: service.definition.kind,
        skipped: service.skipped,
        definition: service.definition,
        secrets: service.secrets,
        hasResources: service.hasResources,
        endpoints: service.endpoints,
        createdAt: service.createdAt,
        updatedAt: service.updatedAt,
      };
      const row = services.get(service.id);
      if (row) {
        em.assign(row, fields);
        services.delete(service.id);
      } else {
        em.create(ServiceRow, { id: service.id, environmentId, ...fields });
      }
    }
    // Services first: a removed stage may still be referenced until its services are gone.
    for (const row of services.values()) em.remove(row);
    for (const row of stages.values()) em.remove(row);
  }

  #enqueue(em: EntityManager, environmentId: string, events: EnvironmentEventBody[], actor: string): void {
    for (const row of this.#outboxRows(
      environmentId,
      events.map((body) => ({ body, actor })),
    )) {
      enqueue(em, row);
    }
  }

  /** Environment events as outbox rows (the writer's trace context in their headers, as `enqueue` does). */
  #outboxRows(environmentId: string, events: { body: EnvironmentEventBody; actor: string }[]): OutboxRow[] {
    const subject = this.#deps.subjects.environmentEvents(environmentId);
    const trace = traceHeaders();
    return events.map(({ body, actor }) => {
      const id = newId();
      const payload = bus.EnvironmentEvent.encode({
        eventId: id,
        environmentId,
        occurredAt: new Date(),
        actor,
        event: body,
      }).finish();
      return { id, subject, payload, headers: { ...trace, 'Stageline-Event-Type': body.$case } };
    });
  }
}
