import type { bus, control } from '@stageline/proto';
import type { Runtime, Settings } from '../domain/environment.ts';
import type { PipelineModel } from '../domain/pipeline.ts';
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
  /** The environment's status alone (a cheap read, no lock); undefined when absent. */
  status(environmentId: string): Promise<control.EnvironmentStatus | undefined>;
  /** The environment's project alone (a cheap read, no lock); undefined when absent. */
  project(environmentId: string): Promise<string | undefined>;
  /** Live `local` environments per deploy host (settings.deploy_host). */
  deployHostLoad(): Promise<Map<string, number>>;
}

export interface Clock {
  now(): Date;
}
