import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import { DEFAULT_SLOTS, type DefaultSlot, defaultSlotOf, defaultStageName, type KindName } from './kinds.ts';
import { checkDescription, checkStageName } from './names.ts';

// The pipeline of one environment as a value: stages in order (a stage's order is its index,
// so orders are dense by construction) and where each service sits, in order within its stage (a
// service's position is its index among its stage's services in `services`, so positions are dense
// by construction too). Every operation returns a new value or throws a DomainError; persistence
// reconciles the result (adapters/db).

export interface StageModel {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  /** The kinds this stage receives by default; it stays their default when renamed or moved. */
  readonly defaultFor: DefaultSlot | null;
}

export interface PlacedService {
  readonly id: string;
  readonly kind: KindName;
  readonly stageId: string;
}

export interface PipelineModel {
  readonly stages: readonly StageModel[];
  /** Services of one stage appear in their order in that stage; services of different stages may interleave. */
  readonly services: readonly PlacedService[];
}

export type NewId = () => string;

export function initialPipeline(newId: NewId): PipelineModel {
  return {
    stages: DEFAULT_SLOTS.map((slot) => ({
      id: newId(),
      name: defaultStageName(slot),
      description: '',
      defaultFor: slot,
    })),
    services: [],
  };
}

export function stageIndex(model: PipelineModel, stageId: string, field = 'stage_id'): number {
  if (stageId === '') throw invalidArgument(field, 'is required');
  const index = model.stages.findIndex((s) => s.id === stageId);
  if (index < 0) throw notFound('stage', stageId, field);
  return index;
}

/** The services of a stage, in their order in it. */
export function servicesOf(model: PipelineModel, stageId: string): PlacedService[] {
  return model.services.filter((s) => s.stageId === stageId);
}

/** Each service's 0-based position within its stage (dense per stage), by service id. */
export function servicePositions(model: PipelineModel): Map<string, number> {
  const next = new Map<string, number>();
  const positions = new Map<string, number>();
  for (const s of model.services) {
    const position = next.get(s.stageId) ?? 0;
    positions.set(s.id, position);
    next.set(s.stageId, position + 1);
  }
  return positions;
}

function checkStageFields(model: PipelineModel, name: string, description: string, exceptId?: string): void {
  const nameError = checkStageName(name);
  if (nameError) throw invalidArgument('name', nameError);
  const descriptionError = checkDescription(description);
  if (descriptionError) throw invalidArgument('description', descriptionError);
  if (model.stages.some((s) => s.name === name && s.id !== exceptId)) {
    throw alreadyExists('name', `a stage named ${JSON.stringify(name)} already exists in this environment`);
  }
}

function checkPosition(position: number, max: number): void {
  if (!Number.isInteger(position) || position < 0 || position > max) {
    throw invalidArgument('position', `must be between 0 and ${max}`);
  }
}

export interface CreateStage {
  id: string;
  name: string;
  description: string;
  /** 0-based; undefined: last. */
  position?: number | undefined;
}

export function createStage(model: PipelineModel, input: CreateStage): PipelineModel {
  checkStageFields(model, input.name, input.description);
  const position = input.position ?? model.stages.length;
  checkPosition(position, model.stages.length);
  const stages = [...model.stages];
  stages.splice(position, 0, { id: input.id, name: input.name, description: input.description, defaultFor: null });
  return { ...model, stages };
}

export interface UpdateStage {
  stageId: string;
  /** Empty or undefined: unchanged. */
  name?: string | undefined;
  /** Undefined: unchanged. */
  description?: string | undefined;
}

export function updateStage(model: PipelineModel, input: UpdateStage): PipelineModel {
  const index = stageIndex(model, input.stageId);
  const current = model.stages[index]!;
  const name = input.name === undefined || input.name === '' ? current.name : input.name;
  const description = input.description ?? current.description;
  checkStageFields(model, name, description, current.id);
  const stages = [...model.stages];
  stages[index] = { ...current, name, description };
  return { ...model, stages };
}

export function moveStage(model: PipelineModel, stageId: string, position: number): PipelineModel {
  const from = stageIndex(model, stageId);
  checkPosition(position, model.stages.length - 1);
  const stages = [...model.stages];
  const [stage] = stages.splice(from, 1);
  stages.splice(position, 0, stage!);
  return { ...model, stages };
}

export function deleteStage(model: PipelineModel, stageId: string, moveServicesTo?: string): PipelineModel {
  stageIndex(model, stageId);
  const occupants = servicesOf(model, stageId);
  const target = moveServicesTo === undefined || moveServicesTo === '' ? undefined : moveServicesTo;
  if (target !== undefined) {
    if (target === stageId) throw invalidArgument('move_services_to_stage_id', 'must differ from the deleted stage');
    stageIndex(model, target, 'move_services_to_stage_id');
  } else if (occupants.length > 0) {
    throw failedPrecondition(
      `stage has ${occupants.length} service(s): give move_services_to_stage_id to move them before deleting it`,
      'move_services_to_stage_id',
    );
  }
  // The deleted stage's services go after the target's own, in the order they had.
  return {
    stages: model.stages.filter((s) => s.id !== stageId),
    services: [
      ...model.services.filter((s) => s.stageId !== stageId),
      ...(target === undefined ? [] : occupants.map((s) => ({ ...s, stageId: target }))),
    ],
  };
}

/** Puts a service last in another stage; moving it to the stage it is in leaves it where it is. */
export function moveService(model: PipelineModel, serviceId: string, stageId: string): PipelineModel {
  const service = model.services.find((s) => s.id === serviceId);
  if (!service) throw notFound('service', serviceId, 'service_id');
  stageIndex(model, stageId);
  if (service.stageId === stageId) return model;
  return { ...model, services: [...model.services.filter((s) => s.id !== serviceId), { ...service, stageId }] };
}

/**
 * Where a new service goes: the stage asked for, else the stage that is the default for its kind
 * (wherever that stage now sits and whatever it is now called), else the last stage; when the
 * environment has no stage left at all, the default stage of its kind is created again for it.
 * Either way it goes last in that stage.
 */
export function placeService(
  model: PipelineModel,
  service: { id: string; kind: KindName },
  requestedStageId: string,
  newId: NewId,
): PipelineModel {
  let stages = model.stages;
  let stageId = requestedStageId;
  if (stageId !== '') {
    stageIndex(model, stageId, 'service.stage_id');
  } else {
    const slot = defaultSlotOf(service.kind);
    const home = stages.find((s) => s.defaultFor === slot) ?? stages.at(-1);
    if (home) {
      stageId = home.id;
    } else {
      stageId = newId();
      stages = [{ id: stageId, name: defaultStageName(slot), description: '', defaultFor: slot }];
    }
  }
  return { stages, services: [...model.services, { id: service.id, kind: service.kind, stageId }] };
}

export function removeService(model: PipelineModel, serviceId: string): PipelineModel {
  if (!model.services.some((s) => s.id === serviceId)) throw notFound('service', serviceId, 'service_id');
  return { ...model, services: model.services.filter((s) => s.id !== serviceId) };
}

/** The invariants every operation keeps; the property test and the store's writes check them. */
export function invariantViolations(model: PipelineModel): string[] {
  const problems: string[] = [];
  const stageIds = new Set(model.stages.map((s) => s.id));
  if (stageIds.size !== model.stages.length) problems.push('duplicate stage id');
  if (new Set(model.stages.map((s) => s.name)).size !== model.stages.length) problems.push('duplicate stage name');
  const serviceIds = new Set<string>();
  for (const service of model.services) {
    if (serviceIds.has(service.id)) problems.push(`service ${service.id} placed twice`);
    serviceIds.add(service.id);
    if (!stageIds.has(service.stageId)) problems.push(`service ${service.id} in unknown stage ${service.stageId}`);
  }
  return problems;
}
