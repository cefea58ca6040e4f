// `unchangedRelease`: a DEPLOY leaves the live revision alone only when nothing it would apply differs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Intended, type Release, type ReleaseKind, unchangedRelease } from '../src/domain/release.ts';

const DIGEST = `@sha256:${'a'.repeat(64)}`;

function release(over: Partial<Release> = {}): Release {
  return {
    id: 'r1',
    serviceId: 's',
    serviceName: 'web',
    environmentId: 'e',
    revision: 1,
    deploymentId: 'd1',
    jobId: 'job-1',
    runtime: 'local',
    namespace: 'ns',
    kubeContext: '',
    image: `127.0.0.1:5000/web${DIGEST}`,
    digest: DIGEST.slice(1),
    version: 'v1',
    configHash: 'h1',
    chartPath: '/charts/e/s/1',
    status: 'DEPLOYED',
    message: '',
    hostPorts: [],
    endpoints: [],
    readinessTimeoutSeconds: 30,
    runtimeRevision: 0,
    kind: 'CONTAINER',
    schedule: '',
    createdAt: new Date(0),
    updatedAt: new Date(0),
    ...over,
  };
}

function intended(over: Partial<Intended> = {}): Intended {
  return {
    jobId: 'job-2',
    runtime: 'local',
    namespace: 'ns',
    kubeContext: '',
    kind: 'CONTAINER',
    image: `127.0.0.1:5000/web${DIGEST}`,
    configHash: 'h1',
    ...over,
  };
}

describe('unchangedRelease', () => {
  it('keeps the DEPLOYED revision when image, configuration and target are the same', () => {
    const live = release({ revision: 3, id: 'r3' });
    const history = [live, release({ revision: 2, id: 'r2', status: 'SUPERSEDED' })];
    expect(unchangedRelease(history, intended()).live).toBe(live);
  });

  it('applies when any one thing it would apply differs', () => {
    const fields = fc.constantFrom('runtime', 'namespace', 'kubeContext', 'image', 'configHash', 'kind');
    fc.assert(
      fc.property(fields, fc.string({ minLength: 1, maxLength: 8 }), (field, suffix) => {
        const base = intended();
        const changed: Intended =
          field === 'image'
            ? { ...base, image: `127.0.0.1:5000/other-${suffix.replace(/[^a-z]/g, 'x')}${DIGEST}` }
            : field === 'kind'
              ? { ...base, kind: 'APPLICATION' as ReleaseKind }
              : { ...base, [field]: `${String(base[field])}-${suffix}` };
        const verdict = unchangedRelease([release()], changed);
        expect(verdict.live).toBeUndefined();
        expect(verdict.reason).toMatch(/changed$/);
      }),
    );
  });

  it('applies when the live revision is not DEPLOYED, a rollout is half-done, or this job began one', () => {
    for (const status of ['STOPPED'] as const) {
      expect(unchangedRelease([release({ status })], intended()).reason).toBe('revision 1 is STOPPED');
    }
    expect(unchangedRelease([release({ status: 'FAILED' })], intended()).reason).toBe('nothing is deployed');
    expect(unchangedRelease([], intended()).reason).toBe('nothing is deployed');
    const halfDone = [release({ revision: 2, id: 'r2', status: 'DEPLOYING', jobId: 'job-x' }), release()];
    expect(unchangedRelease(halfDone, intended()).reason).toBe('a rollout was left half-done');
    expect(unchangedRelease([release({ jobId: 'job-2' })], intended()).reason).toBe(
      'this job already began a revision',
    );
  });

  it('always runs jobs, and applies images named by a tag (a tag can move)', () => {
    for (const kind of ['LIFECYCLE_JOB', 'CRON_JOB'] as const) {
      expect(unchangedRelease([release({ kind })], intended({ kind })).live).toBeUndefined();
    }
    const tagged = intended({ image: '127.0.0.1:5000/web:1.0' });
    expect(unchangedRelease([release({ image: tagged.image })], tagged).reason).toBe(
      'the image is not pinned by digest',
    );
  });
});
