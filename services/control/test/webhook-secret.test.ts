// The webhook secret (auto-deploy): returned once by RotateWebhookSecret (admin only), stored sealed,
// sealed again by `admin rotate-key`, and what deliveries to /hooks/<environment_id> are checked with.
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { callUnary, connect, isServiceError } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { KeyRing, keyIdOf } from '@stageline/secrets';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { useControl } from './harness.ts';

const keyDir = mkdtempSync(path.join(tmpdir(), 'stageline-keys-'));
writeFileSync(path.join(keyDir, 'k-first.key'), randomBytes(32).toString('base64'), { mode: 0o600 });
writeFileSync(path.join(keyDir, 'active'), 'k-first\n', { mode: 0o600 });

const ctl = useControl({ secretKeys: { dir: keyDir }, console: true });

async function stored(environmentId: string): Promise<string> {
  const db = new pg.Client({ connectionString: ctl.env.databaseUrl });
  await db.connect();
  try {
    return (await db.query('select secret from control.webhook_secret where environment_id = $1', [environmentId]))
      .rows[0].secret;
  } finally {
    await db.end();
  }
}

function deliver(environmentId: string, body: string, headers: Record<string, string>): Promise<number> {
  const ca = readFileSync(ctl.security.ca, 'utf8');
  return new Promise((resolve, reject) => {
    const req = request(new URL(`/hooks/${environmentId}`, ctl.consoleUrl), { method: 'POST', ca, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const sign = (secret: string, body: string) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

describe('the webhook secret', () => {
  it('is shown once, stored sealed, resealed by rotate-key, and checks deliveries; admins only', async () => {
    const { environment } = await callUnary(
      ctl.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({ project: 'hooks', name: 'secret' }),
    );
    const environmentId = environment!.id;
    const body = JSON.stringify({ event: 'ping' });
    // No secret yet: every delivery is refused.
    expect(await deliver(environmentId, body, { 'x-stageline-signature': sign('', body) })).toBe(401);

    const { secret, path: hookPath } = await callUnary(ctl.environments, 'rotateWebhookSecret', { environmentId });
    expect(hookPath).toBe(`/hooks/${environmentId}`);
    const sealed = await stored(environmentId);
    expect(sealed).not.toContain(secret);
    expect(keyIdOf(sealed)).toBe('k-first');
    expect(await deliver(environmentId, body, { 'x-stageline-signature': sign(secret, body) })).toBe(202);
    expect(await deliver(environmentId, body, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': secret })).toBe(202);

    // Never in a read.
    const got = await callUnary(ctl.environments, 'getEnvironment', { environmentId });
    expect(JSON.stringify(control.GetEnvironmentResponse.toJSON(got))).not.toContain(secret);

    const access = connect(control.AccessServiceClient, ctl.address, ctl.security.user());
    try {
      const { token: deployer } = await callUnary(access, 'createToken', {
        name: 'deployer-hooks',
        role: control.Role.ROLE_DEPLOYER,
        projects: [],
        ttlSeconds: '0',
      });
      const asDeployer = connect(control.EnvironmentServiceClient, ctl.address, ctl.security.user(deployer));
      const refused = await callUnary(asDeployer, 'rotateWebhookSecret', { environmentId }).catch((e: unknown) => e);
      asDeployer.close();
      expect(isServiceError(refused) && refused.code).toBe(grpc.status.PERMISSION_DENIED);

      const rotated = await callUnary(access, 'rotateSecretKey', {});
      const after = await stored(environmentId);
      expect(keyIdOf(after)).toBe(rotated.keyId);
      expect(KeyRing.load({ dir: keyDir }).open(after)).toBe(secret);
      expect(await deliver(environmentId, body, { 'x-stageline-signature': sign(secret, body) })).toBe(202);
    } finally {
      access.close();
    }

    const missing = await callUnary(ctl.environments, 'rotateWebhookSecret', {
      environmentId: '0190a0a0-0000-7000-8000-000000000000',
    }).catch((e: unknown) => e);
    expect(isServiceError(missing) && missing.code).toBe(grpc.status.NOT_FOUND);
  });
});
