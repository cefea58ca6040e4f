import { DomainError } from '@stageline/errors';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { KindName } from '../src/domain/kinds.ts';
import {
  createStage,
  deleteStage,
  initialPipeline,
  invariantViolations,
  moveService,
  moveStage,
  type PipelineModel,
  placeService,
  removeService,
  servicePositions,
  servicesOf,
  updateStage,
} from '../src/domain/pipeline.ts';

function ids(prefix: string): () => string {
  let n = 0;
  return () => `${prefix}${++n}`;
}

const names = (m: PipelineModel) => m.stages.map((s) => s.name);

describe('pipeline model', () => {
  it('starts with the four default stages in order', () => {
    const m = initialPipeline(ids('s'));
    expect(names(m)).toEqual(['DEFAULT DATABASE', 'DEFAULT JOB', 'DEFAULT CONTAINER', 'DEFAULT APPLICATION']);
  });

  it('puts each kind in its default stage, even after the stage was renamed and moved', () => {
    let m = initialPipeline(ids('s'));
    m = updateStage(m, { stageId: 's2', name: 'migrations' });
    m = moveStage(m, 's2', 3);
    const kinds: KindName[] = ['DATABASE', 'LIFECYCLE_JOB', 'CRON_JOB', 'CONTAINER', 'APPLICATION'];
    for (const [i, kind] of kinds.entries()) m = placeService(m, { id: `v${i}`, kind }, '', ids('x'));
    expect(m.services.map((s) => s.stageId)).toEqual(['s1', 's2', 's2', 's3', 's4']);
  });

  it('falls back to the last stage, then recreates the default stage when none is left', () => {
    let m = initialPipeline(ids('s'));
    m = deleteStage(m, 's1');
    m = placeService(m, { id: 'db', kind: 'DATABASE' }, '', ids('x'));
    expect(m.services[0]?.stageId).toBe('s4');
    let empty: PipelineModel = { stages: [], services: [] };
    empty = placeService(empty, { id: 'db', kind: 'DATABASE' }, '', ids('new'));
    expect(empty.stages).toEqual([{ id: 'new1', name: 'DEFAULT DATABASE', description: '', defaultFor: 'DATABASE' }]);
    expect(empty.services[0]?.stageId).toBe('new1');
  });

  it('creates a stage at a position, or last', () => {
    let m = initialPipeline(ids('s'));
    m = createStage(m, { id: 'a', name: 'smoke tests', description: 'after deploy' });
    m = createStage(m, { id: 'b', name: 'infra', description: '', position: 0 });
    expect(names(m)).toEqual([
      'infra',
      'DEFAULT DATABASE',
      'DEFAULT JOB',
      'DEFAULT CONTAINER',
      'DEFAULT APPLICATION',
      'smoke tests',
    ]);
  });

  it('refuses a duplicate stage name, a bad position and deleting a non-empty stage without a target', () => {
    const m = placeService(initialPipeline(ids('s')), { id: 'db', kind: 'DATABASE' }, '', ids('x'));
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof DomainError ? [e.code, e.field] : e;
      }
      return 'no error';
    };
    expect(err(() => createStage(m, { id: 'z', name: 'DEFAULT JOB', description: '' }))).toEqual([
      'ALREADY_EXISTS',
      'name',
    ]);
    expect(err(() => createStage(m, { id: 'z', name: 'x', description: '', position: 5 }))).toEqual([
      'INVALID_ARGUMENT',
      'position',
    ]);
    expect(err(() => moveStage(m, 's1', 4))).toEqual(['INVALID_ARGUMENT', 'position']);
    expect(err(() => deleteStage(m, 's1'))).toEqual(['FAILED_PRECONDITION', 'move_services_to_stage_id']);
    expect(err(() => deleteStage(m, 's1', 'nope'))).toEqual(['NOT_FOUND', 'move_services_to_stage_id']);
    expect(err(() => moveService(m, 'db', 'nope'))).toEqual(['NOT_FOUND', 'stage_id']);
    expect(err(() => moveService(m, 'ghost', 's2'))).toEqual(['NOT_FOUND', 'service_id']);
    expect(err(() => createStage(m, { id: 'z', name: ' ', description: '' }))).toEqual(['INVALID_ARGUMENT', 'name']);
    expect(err(() => createStage(m, { id: 'z', name: 'a\u0007b', description: '' }))).toEqual([
      'INVALID_ARGUMENT',
      'name',
    ]);
  });

  it('moves the services of a deleted stage to the target', () => {
    let m = initialPipeline(ids('s'));
    m = placeService(m, { id: 'db', kind: 'DATABASE' }, '', ids('x'));
    m = deleteStage(m, 's1', 's3');
    expect(servicesOf(m, 's3').map((s) => s.id)).toEqual(['db']);
    expect(m.stages).toHaveLength(3);
  });

  it("keeps each stage's services in order: added last, moved last, a deleted stage's after the target's", () => {
    let m = initialPipeline(ids('s'));
    const add = (id: string, kind: KindName, stageId = '') => {
      m = placeService(m, { id, kind }, stageId, ids('x'));
    };
    const inStage = (stageId: string) => servicesOf(m, stageId).map((s) => s.id);
    // Added in an order that is neither alphabetical nor grouped by stage.
    add('z-web', 'CONTAINER');
    add('m-migrate', 'LIFECYCLE_JOB');
    add('a-app', 'APPLICATION', 's3');
    add('q-nightly', 'CRON_JOB');
    add('b-db', 'DATABASE');
    add('c-cache', 'DATABASE');
    expect(inStage('s2')).toEqual(['m-migrate', 'q-nightly']);
    expect(inStage('s3')).toEqual(['z-web', 'a-app']);

    // Moved to another stage: last there; moved to its own stage: unchanged (the same value).
    m = moveService(m, 'm-migrate', 's3');
    expect(inStage('s3')).toEqual(['z-web', 'a-app', 'm-migrate']);
    expect(inStage('s2')).toEqual(['q-nightly']);
    expect(moveService(m, 'z-web', 's3')).toBe(m);

    // A deleted stage's services go after the target's own, in the order they had.
    m = deleteStage(m, 's1', 's3');
    expect(inStage('s3')).toEqual(['z-web', 'a-app', 'm-migrate', 'b-db', 'c-cache']);
    m = removeService(m, 'a-app');
    expect(inStage('s3')).toEqual(['z-web', 'm-migrate', 'b-db', 'c-cache']);
    expect(Object.fromEntries(servicePositions(m))).toEqual({
      'q-nightly': 0,
      'z-web': 0,
      'm-migrate': 1,
      'b-db': 2,
      'c-cache': 3,
    });
  });
});

// Operations drawn at random, each referring to stages and services by index so that most hit
// something that exists; operations the model refuses must leave the model unchanged.
type Op =
  | { op: 'create'; name: number; position: number | undefined }
  | { op: 'move'; stage: number; position: number }
  | { op: 'delete'; stage: number; target: number | undefined }
  | { op: 'rename'; stage: number; name: number }
  | { op: 'add'; kind: KindName; stage: number | undefined }
  | { op: 'moveService'; service: number; stage: number }
  | { op: 'removeService'; service: number };

const kindArb = fc.constantFrom<KindName>('DATABASE', 'LIFECYCLE_JOB', 'CRON_JOB', 'CONTAINER', 'APPLICATION');
const small = fc.nat({ max: 9 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('create' as const), name: small, position: fc.option(small, { nil: undefined }) }),
  fc.record({ op: fc.constant('move' as const), stage: small, position: small }),
  fc.record({ op: fc.constant('delete' as const), stage: small, target: fc.option(small, { nil: undefined }) }),
  fc.record({ op: fc.constant('rename' as const), stage: small, name: small }),
  fc.record({ op: fc.constant('add' as const), kind: kindArb, stage: fc.option(small, { nil: undefined }) }),
  fc.record({ op: fc.constant('moveService' as const), service: small, stage: small }),
  fc.record({ op: fc.constant('removeService' as const), service: small }),
);

const stageIdAt = (m: PipelineModel, i: number) => m.stages[i % Math.max(1, m.stages.length)]?.id ?? 'missing';
const serviceIdAt = (m: PipelineModel, i: number) => m.services[i % Math.max(1, m.services.length)]?.id ?? 'missing';

function apply(m: PipelineModel, o: Op, newId: () => string): PipelineModel {
  const stageId = (i: number) => stageIdAt(m, i);
  const serviceId = (i: number) => serviceIdAt(m, i);
  switch (o.op) {
    case 'create':
      return createStage(m, { id: newId(), name: `stage ${o.name}`, description: '', position: o.position });
    case 'move':
      return moveStage(m, stageId(o.stage), o.position);
    case 'delete':
      return deleteStage(m, stageId(o.stage), o.target === undefined ? undefined : stageId(o.target));
    case 'rename':
      return updateStage(m, { stageId: stageId(o.stage), name: `renamed ${o.name}` });
    case 'add':
      return placeService(m, { id: newId(), kind: o.kind }, o.stage === undefined ? '' : stageId(o.stage), newId);
    case 'moveService':
      return moveService(m, serviceId(o.service), stageId(o.stage));
    case 'removeService':
      return removeService(m, serviceId(o.service));
  }
}

describe('pipeline model invariants (property)', () => {
  it('keeps orders dense and every service in exactly one existing stage', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const newId = ids('id');
        let m = initialPipeline(newId);
        let services = 0;
        for (const o of ops) {
          const before = m;
          try {
            m = apply(m, o, newId);
            if (o.op === 'add') services++;
            if (o.op === 'removeService') services--;
          } catch (e) {
            expect(e).toBeInstanceOf(DomainError);
            expect(m).toBe(before);
          }
          expect(invariantViolations(m)).toEqual([]);
          // Dense orders as the API reports them: a stage's order is its index.
          expect(m.stages.map((_, i) => i)).toEqual([...m.stages.keys()]);
          // Every service sits in exactly one stage, and none was lost or duplicated.
          const perStage = m.stages.flatMap((s) => servicesOf(m, s.id).map((v) => v.id));
          expect(new Set(perStage).size).toBe(perStage.length);
          expect(perStage.length).toBe(services);
        }
      }),
      { numRuns: 300 },
    );
  });

  // A reference kept apart from the model: each stage's services as a plain list, updated by the rule
  // alone (a service enters a stage last; one that stays in its stage keeps its place).
  it("keeps each stage's services in the order the rule gives, with dense positions", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const newId = ids('id');
        let m = initialPipeline(newId);
        let expected = new Map(m.stages.map((s) => [s.id, [] as string[]]));
        for (const o of ops) {
          const before = m;
          try {
            m = apply(m, o, newId);
          } catch {
            continue;
          }
          const next = new Map([...expected].map(([k, v]) => [k, [...v]]));
          const without = (id: string) => {
            for (const [stage, list] of next)
              next.set(
                stage,
                list.filter((x) => x !== id),
              );
          };
          switch (o.op) {
            case 'add': {
              const added = m.services.find((s) => !before.services.some((b) => b.id === s.id))!;
              if (!next.has(added.stageId)) next.set(added.stageId, []);
              next.get(added.stageId)!.push(added.id);
              break;
            }
            case 'moveService': {
              const id = serviceIdAt(before, o.service);
              const to = stageIdAt(before, o.stage);
              if (!next.get(to)!.includes(id)) {
                without(id);
                next.get(to)!.push(id);
              }
              break;
            }
            case 'delete': {
              const deleted = stageIdAt(before, o.stage);
              const moved = next.get(deleted)!;
              next.delete(deleted);
              if (o.target !== undefined) next.get(stageIdAt(before, o.target))!.push(...moved);
              break;
            }
            case 'removeService':
              without(serviceIdAt(before, o.service));
              break;
            default:
              for (const s of m.stages) if (!next.has(s.id)) next.set(s.id, []);
          }
          expected = next;
          expect(new Map(m.stages.map((s) => [s.id, servicesOf(m, s.id).map((v) => v.id)]))).toEqual(expected);
          const positions = servicePositions(m);
          for (const list of expected.values()) {
            expect(list.map((id) => positions.get(id))).toEqual([...list.keys()]);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
