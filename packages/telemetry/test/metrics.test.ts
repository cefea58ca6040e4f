// Labels of bounded cardinality: a subject's family never carries an id; slots are read at scrape time.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { registry, scrape, subjectFamily, trackSlots } from '../src/index.ts';

const FAMILIES = new Set([
  'requests',
  'jobs.build',
  'jobs.deploy',
  'results.build',
  'results.deploy',
  'events.runs',
  'events.environments',
  'logs',
  'dlq',
  'control',
]);

describe('subjectFamily', () => {
  it('names the kind of a subject, never the ids in it', () => {
    const id = fc.uuid();
    const subjects = fc.oneof(
      id.map((e) => `stageline.requests.${e}`),
      fc.tuple(fc.constantFrom('build', 'deploy'), id).map(([k, d]) => `stageline.jobs.${k}.${d}`),
      fc.tuple(fc.constantFrom('build', 'deploy'), id).map(([k, d]) => `stageline.results.${k}.${d}`),
      fc.tuple(id, id).map(([e, d]) => `stageline.events.runs.${e}.${d}`),
      id.map((e) => `stageline.events.environments.${e}`),
      fc.tuple(id, id).map(([d, s]) => `stageline.logs.${d}.${s}`),
      id.map((d) => `stageline.dlq.stageline.jobs.build.${d}`),
      id.map((d) => `stageline.control.cancel.${d}`),
    );
    fc.assert(
      fc.property(subjects, (subject) => {
        const family = subjectFamily(subject);
        expect(FAMILIES.has(family), `${subject} → ${family}`).toBe(true);
      }),
    );
  });
});

describe('worker slots', () => {
  it('reads busy and free slots of each tracked loop at scrape time, and forgets a loop once untracked', async () => {
    let busy = 2;
    const untrack = trackSlots({ consumer: 'test-workers', slots: () => ({ busy, free: 7 - busy }) });
    expect((await scrape()).body).toContain('stageline_worker_slots{consumer="test-workers",state="busy"} 2');
    busy = 5;
    const text = (await scrape()).body;
    expect(text).toContain('stageline_worker_slots{consumer="test-workers",state="busy"} 5');
    expect(text).toContain('stageline_worker_slots{consumer="test-workers",state="free"} 2');
    untrack();
    expect((await scrape()).body).not.toContain('consumer="test-workers"');
    expect(registry.contentType).toMatch(/^text\/plain/);
  });
});
