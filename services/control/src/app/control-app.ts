import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import { DENY_ALL, type SourcePolicy } from '@stageline/policy';
import { control, type snapshot } from '@stageline/proto';
import type { Secrets } from '@stageline/secrets';
import { NO_AUTO_DEPLOY_SETTINGS } from '../domain/auto-deploy.ts';
import {
  applySettings,
  checkEnvironmentName,
  checkEnvironmentNamespace,
  checkProject,
  checkRuntime,
  chooseDeployHost,
} from '../domain/environment.ts';
import { sameValue } from '../domain/equality.ts';
import { EnvStatus } from '../domain/kinds.ts';
import * as pipelines from '../domain/pipeline.ts';
import {
  changeNothing,
  eventsToRecord,
  FINISHED,
  type LastRecorded,
  type RunEventFacts,
  type RunEventHead,
  recordRunEvents,
} from '../domain/run-events.ts';
import { mergeSecrets, normalizeDefinition } from '../domain/service-spec.ts';
import { checkSources } from '../domain/sources.ts';
import type {
  Change,
  Clock,
  EnvironmentAggregate,
  EnvironmentEventBody,
  EnvironmentRecord,
  EnvironmentStore,
  ServiceRecord,
} from './model.ts';
import { checkLimits, snapshotOf } from './size.ts';
import { environmentView, pipelineView, servicesInOrder, serviceView } from './views.ts';

// The use cases behind EnvironmentService and PipelineService. Each validates its request, computes
// the next aggregate with the pure domain, and lets the store write it with its events atomically.

/** What the operator allows environments to name (configuration: README, Security). */
export interface InputPolicy {
  /** Where git, image and chart URLs may point (STAGELINE_SOURCE_ALLOW). */
  sources: SourcePolicy;
  /** The kube contexts an environment may name (STAGELINE_KUBE_CONTEXTS). */
  kubeContexts: readonly string[];
  /** Deploy hosts a new `local` environment is bound to, the least used first (STAGELINE_DEPLOY_HOSTS). */
  deployHosts?: readonly string[];
}

export const STRICTEST_POLICY: InputPolicy = { sources: DENY_ALL, kubeContexts: [] };

export interface ControlAppDeps {
  store: EnvironmentStore;
  newId: () => string;
  clock: Clock;
  /** Seals secret values before they are stored (packages/secrets); the snapshot hands them on sealed. */
  secrets: Secrets;
  /** Default: the strictest, nothing allowed beyond the rules. */
  policy?: InputPolicy;
}

const MAX_PAGE_SIZE = 500;
const DEFAULT_PAGE_SIZE = 50;

function requireId(field: string, value: string): string {
  if (value === '') throw invalidArgument(field, 'is required');
  return value;
}

function findService(aggregate: EnvironmentAggregate, serviceId: string, field = 'service_id'): ServiceRecord {
  requireId(field, serviceId);
  const service = aggregate.services.find((s) => s.id === serviceId);
  if (!service) throw notFound('service', serviceId, field);
  return service;
}

function assertServiceNameFree(aggregate: EnvironmentAggregate, name: string, exceptId?: string): void {
  if (aggregate.services.some((s) => s.definition.name === name && s.id !== exceptId)) {
    throw alreadyExists('service.name', `a service named ${JSON.stringify(name)} already exists in this environment`);
  }
}

/** The event of an environment's status set by a run: removed when deleted, else updated. */
function environmentEvent(environment: EnvironmentRecord): EnvironmentEventBody {
  return environment.status === EnvStatus.DELETED
    ? { $case: 'environmentRemoved', value: { environmentId: environment.id } }
    : { $case: 'environmentUpdated', value: { environment: environmentView(environment) } };
}

export class ControlApp {
  readonly #deps: ControlAppDeps;
  readonly #actor: string;
  /** Per environment, the last run event recorded by this process (shared by every `as`). */
  readonly #recorded: Map<string, LastRecorded>;

  /** `actor`: who every change made through this instance is recorded as (see `as`). */
  constructor(deps: ControlAppDeps, actor = 'system', recorded = new Map<string, LastRecorded>()) {
    this.#deps = deps;
    this.#actor = actor;
    this.#recorded = recorded;
  }

  get #policy(): InputPolicy {
    return this.#deps.policy ?? STRICTEST_POLICY;
  }

  /** The kube contexts the operator registered, for the admin RPC that lists them. */
  kubeContexts(): readonly string[] {
    return this.#policy.kubeContexts;
  }

  /** The same use cases, acting as `actor` (`token:<name> (<id>)`, `service:<name>`): the audit trail. */
  as(actor: string): ControlApp {
    return new ControlApp(this.#deps, actor, this.#recorded);
  }

  /** Stamps the environment's updatedAt on every change that emits events. */
  #touch(aggregate: EnvironmentAggregate): EnvironmentAggregate {
    return { ...aggregate, environment: { ...aggregate.environment, updatedAt: this.#deps.clock.now() } };
  }

  #change<T>(environmentId: string, f: (a: EnvironmentAggregate) => Change<T>): Promise<T> {
    requireId('environment_id', environmentId);
    return this.#deps.store.update(
      environmentId,
      (current) => {
        if (current.environment.status === EnvStatus.DELETED) {
          throw failedPrecondition('the environment is deleted');
        }
        const change = f(current);
        return change.events.length === 0 ? change : { ...change, next: this.#touch(change.next) };
      },
      this.#actor,
    );
  }

  // --- environments -----------------------------------------------------------------------------

  async createEnvironment(req: control.CreateEnvironmentRequest): Promise<control.CreateEnvironmentResponse> {
    checkProject(req.project);
    checkEnvironmentName(req.name);
    const runtime = checkRuntime(req.runtime);
    const hosts = this.#policy.deployHosts ?? [];
    const requested = applySettings(req.settings, undefined, this.#policy.kubeContexts, hosts);
    const deployHost = chooseDeployHost(
      runtime,
      requested.deployHost ?? '',
      hosts,
      hosts.length === 0 || runtime !== 'local' ? new Map() : await this.#deps.store.deployHostLoad(),
    );
    const { deployHost: _requested, ...rest } = requested;
    const settings = deployHost === '' ? rest : { ...rest, deployHost };
    checkEnvironmentNamespace(req.project, req.name, settings);
    const now = this.#deps.clock.now();
    const aggregate: EnvironmentAggregate = {
      environment: {
        id: this.#deps.newId(),
        project: req.project,
        name: req.name,
        runtime,
        preview: false,
        clonedFromId: '',
        settings,
        status: EnvStatus.NEVER_DEPLOYED,
        createdAt: now,
        updatedAt: now,
      },
      pipeline: pipelines.initialPipeline(this.#deps.newId),
      services: [],
    };
    const environment = environmentView(aggregate.environment);
    const pipeline = pipelineView(aggregate);
    await this.#deps.store.insert(aggregate, this.#actor, [
      { $case: 'environmentCreated', value: { environment, pipeline, services: [] } },
    ]);
    return { environment, pipeline };
  }

  /** The project of an environment, undefined when there is none (for access checks). */
  projectOf(environmentId: string): Promise<string | undefined> {
    return this.#deps.store.project(environmentId);
  }

  async getEnvironment(req: control.GetEnvironmentRequest): Promise<control.GetEnvironmentResponse> {
    const aggregate = await this.#deps.store.get(requireId('environment_id', req.environmentId));
    return { environment: environmentView(aggregate.environment), pipeline: pipelineView(aggregate) };
  }

  /** `visible`: the projects the caller may see (undefined: all), as `visibleProjects` decides. */
  async listEnvironments(
    req: control.ListEnvironmentsRequest,
    visible: readonly string[] | undefined = req.project === '' ? undefined : [req.project],
  ): Promise<control.ListEnvironmentsResponse> {
    if (req.project !== '') checkProject(req.project);
    if (req.pageSize > MAX_PAGE_SIZE) throw invalidArgument('page_size', `must be at most ${MAX_PAGE_SIZE}`);
    if (visible?.length === 0) return { environments: [], nextPageToken: '' };
    const page = await this.#deps.store.list(visible, req.pageSize || DEFAULT_PAGE_SIZE, req.pageToken);
    return { environments: page.items.map(environmentView), nextPageToken: page.nextPageToken };
  }

  updateEnvironment(req: control.UpdateEnvironmentRequest): Promise<control.UpdateEnvironmentResponse> {
    return this.#change(req.environmentId, (current) => {
      const settings = applySettings(
        req.settings,
        current.environment.settings,
        this.#policy.kubeContexts,
        this.#policy.deployHosts ?? [],
      );
      checkEnvironmentNamespace(current.environment.project, current.environment.name, settings, 'settings.namespace');
      if (sameValue(settings, current.environment.settings)) {
        return { next: current, events: [], result: { environment: environmentView(current.environment) } };
      }
      const next = { ...current, environment: { ...current.environment, settings } };
      const environment = environmentView({ ...next.environment, updatedAt: this.#deps.clock.now() });
      return { next, events: [{ $case: 'environmentUpdated', value: { environment } }], result: { environment } };
    });
  }

  async cloneEnvironment(req: control.CloneEnvironmentRequest): Promise<control.CloneEnvironmentResponse> {
    const source = await this.#deps.store.get(requireId('source_environment_id', req.sourceEnvironmentId));
    checkEnvironmentName(req.name);
    checkEnvironmentNamespace(source.environment.project, req.name, { ...source.environment.settings, namespace: '' });
    for (const service of source.services)
      checkSources(service.definition, this.#policy.sources, 'source_environment_id');
    const { newId } = this.#deps;
    const now = this.#deps.clock.now();
    const stageIds = new Map(source.pipeline.stages.map((s) => [s.id, newId()]));
    const serviceIds = new Map(source.services.map((s) => [s.id, newId()]));
    const aggregate: EnvironmentAggregate = {
      environment: {
        ...source.environment,
        id: newId(),
        name: req.name,
        preview: req.preview,
        clonedFromId: source.environment.id,
        // A custom namespace belongs to the source; the clone gets its own default (and no auto-deploy triggers).
        settings: { ...source.environment.settings, namespace: '', autoDeploy: NO_AUTO_DEPLOY_SETTINGS },
        status: EnvStatus.NEVER_DEPLOYED,
        createdAt: now,
        updatedAt: now,
      },
      pipeline: {
        stages: source.pipeline.stages.map((s) => ({ ...s, id: stageIds.get(s.id)! })),
        services: source.pipeline.services.map((s) => ({
          ...s,
          id: serviceIds.get(s.id)!,
          stageId: stageIds.get(s.stageId)!,
        })),
      },
      services: source.services.map((s) => ({
        ...s,
        id: serviceIds.get(s.id)!,
        // Its own ciphertexts: purging the source's never touches the clone's.
        secrets: Object.fromEntries(
          Object.entries(s.secrets).map(([k, v]) => [k, this.#deps.secrets.seal(this.#deps.secrets.open(v))]),
        ),
        hasResources: false,
        endpoints: [],
        createdAt: now,
        updatedAt: now,
      })),
    };
    checkLimits(aggregate, 'name');
    const environment = environmentView(aggregate.environment);
    const pipeline = pipelineView(aggregate);
    const services = servicesInOrder(aggregate).map((s) => serviceView(aggregate, s));
    await this.#deps.store.insert(aggregate, this.#actor, [
      { $case: 'environmentCreated', value: { environment, pipeline, services } },
    ]);
    return { environment, pipeline };
  }

  // --- services ---------------------------------------------------------------------------------

  addService(req: control.AddServiceRequest): Promise<control.AddServiceResponse> {
    if (!req.service) throw invalidArgument('service', 'is required');
    const input = req.service;
    const definition = normalizeDefinition(input);
    checkSources(definition, this.#policy.sources);
    const { definition: stored, secrets } = mergeSecrets(definition, {}, this.#deps.secrets);
    return this.#change(req.environmentId, (current) => {
      assertServiceNameFree(current, definition.name);
      const now = this.#deps.clock.now();
      const record: ServiceRecord = {
        id: this.#deps.newId(),
        definition: stored,
        secrets,
        skipped: input.skipped,
        hasResources: false,
        endpoints: [],
        createdAt: now,
        updatedAt: now,
      };
      const next: EnvironmentAggregate = {
        ...current,
        pipeline: pipelines.placeService(
          current.pipeline,
          { id: record.id, kind: definition.kind },
          input.stageId,
          this.#deps.newId,
        ),
        services: [...current.services, record],
      };
      checkLimits(next, 'service', record.id);
      const service = serviceView(next, record);
      return {
        next,
        events: [{ $case: 'serviceAdded', value: { service, pipeline: pipelineView(next) } }],
        result: { service },
      };
    });
  }

  updateService(req: control.UpdateServiceRequest): Promise<control.UpdateServiceResponse> {
    if (!req.service) throw invalidArgument('service', 'is required');
    const input = req.service;
    const definition = normalizeDefinition(input);
    checkSources(definition, this.#policy.sources);
    return this.#change(req.environmentId, (current) => {
      const existing = findService(current, input.id, 'service.id');
      if (definition.kind !== existing.definition.kind) {
        throw invalidArgument('service.kind', 'cannot change: remove the service and add a new one');
      }
      const placedIn = current.pipeline.services.find((s) => s.id === existing.id)?.stageId;
      if (input.stageId !== '' && input.stageId !== placedIn) {
        throw invalidArgument('service.stage_id', 'is changed with PipelineService/MoveService');
      }
      assertServiceNameFree(current, definition.name, existing.id);
      const merged = mergeSecrets(definition, existing.secrets, this.#deps.secrets);
      if (sameValue(merged.definition, existing.definition) && sameValue(merged.secrets, existing.secrets)) {
        return { next: current, events: [], result: { service: serviceView(current, existing) } };
      }
      const updated: ServiceRecord = {
        ...existing,
        definition: merged.definition,
        secrets: merged.secrets,
        updatedAt: this.#deps.clock.now(),
      };
      const next = { ...current, services: current.services.map((s) => (s.id === updated.id ? updated : s)) };
      checkLimits(next, 'service', updated.id);
      const service = serviceView(next, updated);
      return { next, events: [{ $case: 'serviceUpdated', value: { service } }], result: { service } };
    });
  }

  removeService(req: control.RemoveServiceRequest): Promise<control.RemoveServiceResponse> {
    return this.#change(req.environmentId, (current) => {
      const existing = findService(current, req.serviceId);
      if (existing.hasResources) {
        throw failedPrecondition('the service still has resources deployed: delete it first (DeleteService)');
      }
      const next: EnvironmentAggregate = {
        ...current,
        pipeline: pipelines.removeService(current.pipeline, existing.id),
        services: current.services.filter((s) => s.id !== existing.id),
      };
      return {
        next,
        events: [{ $case: 'serviceRemoved', value: { serviceId: existing.id, pipeline: pipelineView(next) } }],
        result: {},
      };
    });
  }

  async listServices(req: control.ListServicesRequest): Promise<control.ListServicesResponse> {
    const aggregate = await this.#deps.store.get(requireId('environment_id', req.environmentId));
    return { services: servicesInOrder(aggregate).map((s) => serviceView(aggregate, s)) };
  }

  // --- for the planner ------------------------------------------------------------------------

  /** The environment as a run needs it: services in pipeline order with their secret values, sealed. */
  async snapshot(environmentId: string): Promise<snapshot.GetEnvironmentSnapshotResponse> {
    return snapshotOf(await this.#deps.store.get(requireId('environment_id', environmentId)));
  }

  /**
   * A run event: the environment's status, and when the run ended, each service's endpoints and whether
   * it has resources — by the planner's rule (`hasResources`, on the run's last event); an older event
   * without it falls back to the service's state. Applying the same event twice changes nothing.
   */
  recordRun(
    deployment: control.Deployment,
    status: control.EnvironmentStatus,
    hasResources: Readonly<Record<string, boolean>> = {},
  ): Promise<void> {
    return this.recordRuns(deployment.environmentId, [{ deployment, status, hasResources }]);
  }

  /**
   * One environment's run events, in stream order, recorded together. Events that follow directly on
   * the last one recorded here, in the same run and with the same status, change nothing: no statement.
   * Of the others, the events that end a run and the last one are recorded: while none ends a run only
   * the last one's status counts (one statement, which writes nothing when the environment has that
   * status already); else one transaction for them all, with an environment event per event that
   * changed something. An environment removed from under a run has nothing left to record.
   */
  /**
   * Whether run events (their heads: run, sequence, statuses) follow directly on the last one recorded
   * here, in the same run and with the same status: then they change nothing, and are taken as recorded.
   */
  skipUnchanged(environmentId: string, events: readonly RunEventHead[]): boolean {
    const last = this.#recorded.get(environmentId);
    if (last === undefined || !changeNothing(last, events)) return false;
    this.#recorded.set(environmentId, { ...last, sequence: events.at(-1)?.sequence ?? last.sequence });
    return true;
  }

  async recordRuns(environmentId: string, events: readonly RunEventFacts[]): Promise<void> {
    const tail = events.at(-1);
    if (tail === undefined) return;
    if (this.skipUnchanged(environmentId, events)) return;
    const recorded = this.#recorded;
    recorded.delete(environmentId);
    const said = eventsToRecord(events).filter(
      (e) => e.status !== control.EnvironmentStatus.ENVIRONMENT_STATUS_UNSPECIFIED,
    );
    const final = said.at(-1);
    if (final === undefined) return;
    let after: control.EnvironmentStatus | undefined;
    if (!said.some((e) => FINISHED.includes(e.deployment.status))) {
      after = await this.#deps.store.setStatus(environmentId, final.status, (environment) => [
        { actor: `run:${final.deployment.id}`, body: environmentEvent(environment) },
      ]);
    } else {
      await this.#deps.store.recordRunState(environmentId, (current) => {
        const recording = recordRunEvents({ status: current.environment.status, services: current.services }, said);
        after = recording.next.status;
        if (recording.writes.length === 0) return undefined;
        const deleted = recording.writes.some((w) => w.status === EnvStatus.DELETED);
        const changed = new Set(recording.changedServiceIds);
        return {
          status: recording.next.status,
          // A deleted environment keeps its rows (history), not its secret values.
          services: recording.next.services.filter((s) => deleted || changed.has(s.id)),
          clearSecrets: deleted,
          // What a run changes here is recorded as the run's doing; the run names who asked for it.
          events: recording.writes.map((w) => ({
            actor: `run:${w.deploymentId}`,
            body: environmentEvent({ ...current.environment, status: w.status }),
          })),
        };
      });
    }
    if (after === undefined) return;
    if (recorded.size >= 10_000) recorded.clear();
    recorded.set(environmentId, { deploymentId: tail.deployment.id, sequence: tail.sequence ?? 0, status: after });
  }

  // --- pipeline ---------------------------------------------------------------------------------

  async getPipeline(req: control.GetPipelineRequest): Promise<control.GetPipelineResponse> {
    const aggregate = await this.#deps.store.get(requireId('environment_id', req.environmentId));
    return { pipeline: pipelineView(aggregate) };
  }

  #pipelineChange(
    environmentId: string,
    /** The request field a refusal by the limits names; undefined: the change cannot grow the environment. */
    field: string | undefined,
    apply: (model: pipelines.PipelineModel) => pipelines.PipelineModel,
    event: (
      next: EnvironmentAggregate,
      pipeline: control.Pipeline,
      before: EnvironmentAggregate,
    ) => EnvironmentEventBody,
  ): Promise<{ pipeline: control.Pipeline }> {
    return this.#change(environmentId, (current) => {
      const next = { ...current, pipeline: apply(current.pipeline) };
      const pipeline = pipelineView(next);
      if (sameValue(pipeline, pipelineView(current))) {
        return { next: current, events: [], result: { pipeline } };
      }
      if (field !== undefined) checkLimits(next, field);
      return { next, events: [event(next, pipeline, current)], result: { pipeline } };
    });
  }

  createStage(req: control.CreateStageRequest): Promise<control.CreateStageResponse> {
    const id = this.#deps.newId();
    return this.#pipelineChange(
      req.environmentId,
      'name',
      (m) => pipelines.createStage(m, { id, name: req.name, description: req.description, position: req.position }),
      (_, pipeline) => ({ $case: 'stageCreated', value: { stageId: id, pipeline } }),
    );
  }

  updateStage(req: control.UpdateStageRequest): Promise<control.UpdateStageResponse> {
    return this.#pipelineChange(
      req.environmentId,
      'description',
      (m) => pipelines.updateStage(m, { stageId: req.stageId, name: req.name, description: req.description }),
      (_, pipeline) => ({ $case: 'stageUpdated', value: { stageId: req.stageId, pipeline } }),
    );
  }

  moveStage(req: control.MoveStageRequest): Promise<control.MoveStageResponse> {
    return this.#pipelineChange(
      req.environmentId,
      undefined,
      (m) => pipelines.moveStage(m, req.stageId, req.position),
      (_, pipeline, before) => ({
        $case: 'stageMoved',
        value: {
          stageId: req.stageId,
          fromPosition: before.pipeline.stages.findIndex((s) => s.id === req.stageId),
          toPosition: req.position,
          pipeline,
        },
      }),
    );
  }

  deleteStage(req: control.DeleteStageRequest): Promise<control.DeleteStageResponse> {
    return this.#pipelineChange(
      req.environmentId,
      undefined,
      (m) => pipelines.deleteStage(m, req.stageId, req.moveServicesToStageId),
      (_, pipeline) => ({
        $case: 'stageDeleted',
        value: { stageId: req.stageId, movedServicesToStageId: req.moveServicesToStageId, pipeline },
      }),
    );
  }

  moveService(req: control.MoveServiceRequest): Promise<control.MoveServiceResponse> {
    requireId('service_id', req.serviceId);
    return this.#pipelineChange(
      req.environmentId,
      undefined,
      (m) => pipelines.moveService(m, req.serviceId, req.stageId),
      (_, pipeline, before) => ({
        $case: 'serviceMoved',
        value: {
          serviceId: req.serviceId,
          fromStageId: before.pipeline.services.find((s) => s.id === req.serviceId)?.stageId ?? '',
          toStageId: req.stageId,
          pipeline,
        },
      }),
    );
  }

  setServiceSkipped(req: control.SetServiceSkippedRequest): Promise<control.SetServiceSkippedResponse> {
    return this.#change(req.environmentId, (current) => {
      const existing = findService(current, req.serviceId);
      if (existing.skipped === req.skipped) {
        return { next: current, events: [], result: { service: serviceView(current, existing) } };
      }
      const updated = { ...existing, skipped: req.skipped, updatedAt: this.#deps.clock.now() };
      const next = { ...current, services: current.services.map((s) => (s.id === updated.id ? updated : s)) };
      return {
        next,
        events: [{ $case: 'serviceSkippedChanged', value: { serviceId: updated.id, skipped: updated.skipped } }],
        result: { service: serviceView(next, updated) },
      };
    });
  }
}
