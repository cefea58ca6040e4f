import { DomainError } from '@stageline/errors';
import { describe, expect, it } from 'vitest';
import { busPrefixFromEnv, createSubjects, STREAM_KEYS } from '../src/index.ts';

const fieldOf = (fn: () => unknown): { code: string; field: string | undefined } => {
  try {
    fn();
  } catch (e) {
    if (e instanceof DomainError) return { code: e.code, field: e.field };
    throw e;
  }
  throw new Error('expected a DomainError');
};

describe('createSubjects', () => {
  it('builds the documented subjects and stream names for the default prefix', () => {
    const s = createSubjects();
    expect(s.prefix).toBe('stageline');
    expect(s.streamPrefix).toBe('STAGELINE');
    expect(s.requests('env1')).toBe('stageline.requests.env1');
    expect(s.buildJobs('d1')).toBe('stageline.jobs.build.d1');
    expect(s.deployJobs('d1')).toBe('stageline.jobs.deploy.d1');
    expect(s.buildResults('d1')).toBe('stageline.results.build.d1');
    expect(s.deployResults('d1')).toBe('stageline.results.deploy.d1');
    expect(s.environmentEvents('env1')).toBe('stageline.events.environments.env1');
    expect(s.runEvents('env1', 'd1')).toBe('stageline.events.runs.env1.d1');
    expect(s.logs('d1', 'svc1')).toBe('stageline.logs.d1.svc1');
    expect(s.dlq('stageline.jobs.build.d1')).toBe('stageline.dlq.stageline.jobs.build.d1');
    expect(s.streams).toEqual({
      requests: 'STAGELINE_REQUESTS',
      buildJobs: 'STAGELINE_BUILD_JOBS',
      deployJobs: 'STAGELINE_DEPLOY_JOBS',
      results: 'STAGELINE_RESULTS',
      events: 'STAGELINE_EVENTS',
      logs: 'STAGELINE_LOGS',
      dlq: 'STAGELINE_DLQ',
    });
    expect(s.streamSubjects.results).toEqual(['stageline.results.build.*', 'stageline.results.deploy.*']);
    expect(s.streamSubjects.events).toEqual(['stageline.events.environments.*', 'stageline.events.runs.*.*']);
    expect(s.streamSubjects.dlq).toEqual(['stageline.dlq.>']);
    expect(s.filters.logs).toBe('stageline.logs.*.*');
    expect(s.runEventsFilter({ deploymentId: 'd1' })).toBe('stageline.events.runs.*.d1');
    expect(s.runEventsFilter({ environmentId: 'e1' })).toBe('stageline.events.runs.e1.*');
    expect(s.logsFilter('d1')).toBe('stageline.logs.d1.*');
    expect(s.logsFilter('d1', 'svc')).toBe('stageline.logs.d1.svc');
    expect(s.consumerName('build-workers')).toBe('STAGELINE_build-workers');
  });

  it('derives everything from another prefix', () => {
    const s = createSubjects('t_ab-12');
    expect(s.streams.buildJobs).toBe('T_AB-12_BUILD_JOBS');
    expect(s.requests('e')).toBe('t_ab-12.requests.e');
    expect(s.dlq(s.requests('e'))).toBe('t_ab-12.dlq.t_ab-12.requests.e');
    for (const k of STREAM_KEYS) {
      expect(s.streams[k].startsWith('T_AB-12_')).toBe(true);
      for (const subject of s.streamSubjects[k]) expect(subject.startsWith('t_ab-12.')).toBe(true);
    }
  });

  it.each(['', 'Stageline', 'a.b', 'a*', 'a>', 'a b', 'é'])('refuses the prefix %j', (prefix) => {
    expect(fieldOf(() => createSubjects(prefix))).toEqual({ code: 'INVALID_ARGUMENT', field: 'prefix' });
  });

  const bad = ['', 'a.b', '*', 'a*', '>', 'a>', 'a b', 'a\tb', 'a\nb', ' '];
  it.each(bad)('refuses the id %j, naming the field', (id) => {
    const s = createSubjects('stageline');
    expect(fieldOf(() => s.requests(id))).toEqual({ code: 'INVALID_ARGUMENT', field: 'environment_id' });
    expect(fieldOf(() => s.buildJobs(id))).toEqual({ code: 'INVALID_ARGUMENT', field: 'deployment_id' });
    expect(fieldOf(() => s.deployJobs(id)).field).toBe('deployment_id');
    expect(fieldOf(() => s.buildResults(id)).field).toBe('deployment_id');
    expect(fieldOf(() => s.deployResults(id)).field).toBe('deployment_id');
    expect(fieldOf(() => s.environmentEvents(id)).field).toBe('environment_id');
    expect(fieldOf(() => s.runEvents(id, 'd')).field).toBe('environment_id');
    expect(fieldOf(() => s.runEvents('e', id)).field).toBe('deployment_id');
    expect(fieldOf(() => s.logs(id, 's')).field).toBe('deployment_id');
    expect(fieldOf(() => s.logs('d', id)).field).toBe('service_id');
  });

  it.each(['', 'a..b', 'a.*', 'a.>', 'a b', '.a', 'a.'])('refuses %j as a dead-letter source subject', (subject) => {
    expect(fieldOf(() => createSubjects().dlq(subject))).toEqual({ code: 'INVALID_ARGUMENT', field: 'subject' });
  });

  it('refuses a durable name the server would not take', () => {
    expect(fieldOf(() => createSubjects().consumerName('a.b'))).toEqual({ code: 'INVALID_ARGUMENT', field: 'durable' });
  });
});

describe('busPrefixFromEnv', () => {
  it('defaults to stageline and reads STAGELINE_BUS_PREFIX', () => {
    expect(busPrefixFromEnv({})).toBe('stageline');
    expect(busPrefixFromEnv({ STAGELINE_BUS_PREFIX: '' })).toBe('stageline');
    expect(busPrefixFromEnv({ STAGELINE_BUS_PREFIX: 'team_a' })).toBe('team_a');
    expect(fieldOf(() => busPrefixFromEnv({ STAGELINE_BUS_PREFIX: 'a.b' }))).toEqual({
      code: 'INVALID_ARGUMENT',
      field: 'STAGELINE_BUS_PREFIX',
    });
  });
});
