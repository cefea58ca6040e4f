import type { bus, control } from '@stageline/proto';
import type { Runtime, Settings } from '../domain/environment.ts';
import type { PipelineModel } from '../domain/pipeline.ts';
import type { ServiceRunState } from '../domain/run-events.ts';
import type { ServiceDefinition } from '../domain/service-spec.ts';

// The environment aggregate as the application works on it: the store loads one, a use case
// returns the next one plus the events it caused, and the store writes both in one transaction.

export interface EnvironmentRecord {
  id: string;
  project: string;
  name: string;
  runtime: Runtime;
  preview: boolean;
  clonedFromId: string;
  settings: Settings;
  status: control.EnvironmentStatus;
  createdAt: Date;
  updatedAt: Date;
}

export interface ServiceRecord {
  id: string;
  definition: ServiceDefinition;
  /** Secret env values by key; never part of `definition`, never returned. */
  secrets: Record<string, string>;
  skipped: boolean;
  /** Set once a run has deployed something for it and cleared when it is deleted (pipeline-engine issue). */
  hasResources: boolean;
  endpoints: control.Endpoint[];
  createdAt: Date;
  updatedAt: Date;
}

export interface EnvironmentAggregate {
  environment: EnvironmentRecord;
  /** Stage order and placement; service ids match `services`. */
  pipeline: PipelineModel;
  services: ServiceRecord[];
}

/** An event to publish, in the bus's `EnvironmentEvent.event` oneof shape. */
export type EnvironmentEventBody = NonNullable<bus.EnvironmentEvent['event']>;

export interface Change<T> {
  /** The aggregate after the change; the same object when nothing changed. */
  next: EnvironmentAggregate;
  events: EnvironmentEventBody[];
  result: T;
}

/** An environment as run events change it: its record, and each service's run state. */
export interface RunStateRecord {
  environment: EnvironmentRecord;
  /** Every service of the environment (by id), or none when they were not asked for. */
  services: ServiceRunState[];
}

/** What run events write: the environment's status, the services they changed, and an event per change. */
export interface RunStateWrite {
  status: control.EnvironmentStatus;
  services: ServiceRunState[];
  /** A deleted environment keeps its services' rows (history), not their secret values. */
  clearSecrets: boolean;
  /** Each with who caused it (`run:<id>`). */
  events: { body: EnvironmentEventBody; actor: string }[];
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** Persistence of environments (adapters/db implements it on PostgreSQL). */
export interface EnvironmentStore {
  /** Inserts a new aggregate with its events. ALREADY_EXISTS when (project, name) is taken. */
  insert(aggregate: EnvironmentAggregate, actor: string, events: EnvironmentEventBody[]): Promise<void>;
  /** NOT_FOUND when absent. */
  get(environmentId: string): Promise<EnvironmentAggregate>;
  /** Oldest first; `projects` undefined: every project. */
  list(projects: readonly string[] | undefined, pageSize: number, pageToken: string): Promise<Page<EnvironmentRecord>>;
  /**
   * Loads the aggregate under a row lock, applies `change`, and writes the difference and the
   * events atomically, each event naming `actor` (who made the change). Nothing is written when `change` throws or reports no events.
   */
  update<T>(environmentId: string, change: (current: EnvironmentAggregate) => Change<T>, actor: string): Promise<T>;
  /**
   * Reads the run state (with every service) under the environment's lock and writes what `decide`
   * makes of it, with its events, in one transaction; nothing when it decides nothing (or the
   * environment is absent).
   */
  recordRunState(environmentId: string, decide: (current: RunStateRecord) => RunStateWrite | undefined): Promise<void>;
  /**
   * Sets the environment's status, with the events `events` makes of the environment (with that
   * status), unless it has that status already; a deleted one keeps its services' rows, not their
   * secret values. Returns the status it has now; undefined (nothing written) when it is absent.
   */
  setStatus(
    environmentId: string,
    status: control.EnvironmentStatus,
    events: (environment: EnvironmentRecord) => { body: EnvironmentEventBody; actor: string }[],
  ): Promise<control.EnvironmentStatus | undefined>;
  /** The environment's project alone (a cheap read, no lock); undefined when absent. */
  project(environmentId: string): Promise<string | undefined>;
  /** Live `local` environments per deploy host (settings.deploy_host). */
  deployHostLoad(): Promise<Map<string, number>>;
}

export interface Clock {
  now(): Date;
}
