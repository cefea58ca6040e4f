// A build job's secret env values travel sealed (issue 20) and are opened right before the build.
import { randomBytes } from 'node:crypto';
import { bus } from '@stageline/proto';
import { memorySecrets, seal } from '@stageline/secrets';
import { describe, expect, it } from 'vitest';
import { openBuildJob } from '../src/app/open-job.ts';

const k1 = { id: 'k1', bytes: randomBytes(32) };

describe('sealed build jobs', () => {
  it('open the secret env values only', () => {
    const job = bus.BuildJob.fromPartial({
      jobId: 'j1',
      service: {
        id: 's1',
        envVars: [
          { key: 'MODE', value: 'sl:v1:looks:like-one', secret: false },
          { key: 'NPM_TOKEN', value: seal(k1, 'npm-123'), secret: true },
        ],
      },
    });
    expect(openBuildJob(memorySecrets([k1]), job).service!.envVars).toEqual([
      { key: 'MODE', value: 'sl:v1:looks:like-one', secret: false },
      { key: 'NPM_TOKEN', value: 'npm-123', secret: true },
    ]);
  });

  it('name the variable and the key it lacks', () => {
    const job = bus.BuildJob.fromPartial({
      service: { envVars: [{ key: 'NPM_TOKEN', value: seal(k1, 'npm-123'), secret: true }] },
    });
    expect(() => openBuildJob(memorySecrets([{ id: 'k2', bytes: randomBytes(32) }]), job)).toThrow(
      'env var NPM_TOKEN: secret sealed under key k1, which this process does not have',
    );
  });
});
