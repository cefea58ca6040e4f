// A deploy job's secrets travel sealed (issue 20): opened right before the job runs, outputs sealed on
// the way out; a job whose key this process lacks fails with a message naming the variable and the key.
import { randomBytes } from 'node:crypto';
import { bus, control } from '@stageline/proto';
import { isSealed, keyIdOf, memorySecrets, seal } from '@stageline/secrets';
import { describe, expect, it } from 'vitest';
import { openDeployJob, withSealedSecrets } from '../src/app/sealed-jobs.ts';
import { recordingContext } from './support.ts';

const ctx = () => recordingContext({ jobId: 'j1', deploymentId: 'd1', serviceId: 's1' });

const k1 = { id: 'k1', bytes: randomBytes(32) };
const secrets = memorySecrets([k1]);

const job = (envValue: string, injected: string) =>
  bus.DeployJob.fromPartial({
    jobId: 'j1',
    action: control.Action.ACTION_DEPLOY,
    service: {
      id: 's1',
      name: 'web',
      envVars: [
        { key: 'MODE', value: 'production', secret: false },
        { key: 'API_TOKEN', value: envValue, secret: true },
      ],
    },
    injectedEnv: { DB_PASSWORD: injected },
  });

describe('sealed deploy jobs', () => {
  it('open the secret env values and the injected values, and leave the rest alone', () => {
    const opened = openDeployJob(secrets, job(seal(k1, 'tok-123'), seal(k1, 'pw-456')));
    expect(opened.service!.envVars).toEqual([
      { key: 'MODE', value: 'production', secret: false },
      { key: 'API_TOKEN', value: 'tok-123', secret: true },
    ]);
    expect(opened.injectedEnv).toEqual({ DB_PASSWORD: 'pw-456' });
  });

  it('hand the job its values in clear and seal every output it hands on', async () => {
    let seen: bus.DeployJob | undefined;
    const result = await withSealedSecrets(
      secrets,
      job(seal(k1, 'tok-123'), seal(k1, 'pw-456')),
      ctx(),
      async (opened) => {
        seen = opened;
        return bus.JobFinished.fromPartial({ succeeded: true, outputs: { WEB_URL: 'postgresql://u:pw@h/d' } });
      },
    );
    expect(seen!.service!.envVars[1]!.value).toBe('tok-123');
    expect(isSealed(result.outputs.WEB_URL!)).toBe(true);
    expect(keyIdOf(result.outputs.WEB_URL!)).toBe('k1');
    expect(secrets.open(result.outputs.WEB_URL!)).toBe('postgresql://u:pw@h/d');
  });

  it('fail, naming the variable and the key, when a value cannot be opened; a value in clear is refused', async () => {
    const other = { id: 'k-elsewhere', bytes: randomBytes(32) };
    const handle = async () => bus.JobFinished.fromPartial({ succeeded: true });
    const missingKey = await withSealedSecrets(secrets, job(seal(other, 'x'), seal(k1, 'y')), ctx(), handle);
    expect(missingKey).toMatchObject({
      succeeded: false,
      state: control.ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR,
      message:
        "the job's secrets cannot be opened: env var API_TOKEN: secret sealed under key k-elsewhere, which this process does not have",
    });
    const inClear = await withSealedSecrets(secrets, job(seal(k1, 'x'), 'pw-in-clear'), ctx(), handle);
    expect(inClear.message).toBe(
      "the job's secrets cannot be opened: DB_PASSWORD: not a sealed secret value (expected sl:v1:<key id>:<data>)",
    );
    expect(inClear.message).not.toContain('pw-in-clear');
  });

  it("redact the job's secrets from every line, step message and outcome message the job reports", async () => {
    const recorded = ctx();
    const result = await withSealedSecrets(
      secrets,
      job(seal(k1, 'tok-123'), seal(k1, 'pw-456')),
      recorded,
      async (_opened, c) => {
        await c.stepStarted(control.StepKind.STEP_KIND_DEPLOYMENT, 'starting with tok-123');
        c.output('web | my token is tok-123, my db pw-456, url postgres://u:other@h/d');
        await c.stepFinished(
          control.Step.fromPartial({ kind: control.StepKind.STEP_KIND_DEPLOYMENT, message: 'failed: exited: pw-456' }),
        );
        return bus.JobFinished.fromPartial({ succeeded: false, message: 'container exited: tok-123' });
      },
    );
    const everything = JSON.stringify([recorded.steps, recorded.lines, result.message]);
    expect(everything).not.toMatch(/tok-123|pw-456|other/);
    expect(recorded.lines).toContain('web | my token is ***, my db ***, url postgres://u:***@h/d');
    expect(result.message).toBe('container exited: ***');
  });
});
