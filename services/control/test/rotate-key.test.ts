// `stageline admin rotate-key` (issue 20): AccessService.RotateSecretKey makes a new active key in the
// installation's key directory and seals control's stored secret values again under it, online.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { callUnary, connect, isServiceError } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { KeyRing, keyIdOf } from '@stageline/secrets';
import { testSecurity } from '@stageline/testkit';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { useControl } from './harness.ts';

// A key directory of this file's own: rotating it touches no other test.
const keyDir = mkdtempSync(path.join(tmpdir(), 'stageline-keys-'));
writeFileSync(path.join(keyDir, 'k-first.key'), randomBytes(32).toString('base64'), { mode: 0o600 });
writeFileSync(path.join(keyDir, 'active'), 'k-first\n', { mode: 0o600 });

const ctl = useControl({ secretKeys: { dir: keyDir } });
const security = testSecurity();

async function storedSecret(serviceId: string): Promise<string> {
  const db = new pg.Client({ connectionString: ctl.env.databaseUrl });
  await db.connect();
  try {
    return (await db.query('select secrets from control.service where id = $1', [serviceId])).rows[0].secrets.TOKEN;
  } finally {
    await db.end();
  }
}

describe('rotating the secret key', () => {
  it('an admin makes a new active key; every stored value is sealed again under it and still opens', async () => {
    const { environment } = await callUnary(
      ctl.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({ project: 'keys', name: 'rotate' }),
    );
    const { service } = await callUnary(
      ctl.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: environment!.id,
        service: {
          name: 'web',
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          source: { $case: 'container', value: { image: 'docker.io/library/nginx', tag: '1.27' } },
          envVars: [{ key: 'TOKEN', value: 'rotate-me', secret: true }],
        },
      }),
    );
    const before = await storedSecret(service!.id);
    expect(keyIdOf(before)).toBe('k-first');

    const access = connect(control.AccessServiceClient, ctl.address, security.user());
    try {
      const { token: deployer } = await callUnary(access, 'createToken', {
        name: 'deployer-rotate',
        role: control.Role.ROLE_DEPLOYER,
        projects: [],
        ttlSeconds: '0',
      });
      const asDeployer = connect(control.AccessServiceClient, ctl.address, security.user(deployer));
      const refused = await callUnary(asDeployer, 'rotateSecretKey', {}).catch((e: unknown) => e);
      asDeployer.close();
      expect(isServiceError(refused) && refused.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(keyIdOf(await storedSecret(service!.id))).toBe('k-first');

      const rotated = await callUnary(access, 'rotateSecretKey', {});
      expect(rotated.keyId).toMatch(/^k\d{14}-[0-9a-f]{4}$/);
      expect(rotated.resealed).toBe(1);
      expect(rotated.keyIds).toEqual(['k-first', rotated.keyId].sort());
      expect(readFileSync(path.join(keyDir, 'active'), 'utf8').trim()).toBe(rotated.keyId);
      expect(statSync(path.join(keyDir, `${rotated.keyId}.key`)).mode & 0o777).toBe(0o600);

      const after = await storedSecret(service!.id);
      expect(keyIdOf(after)).toBe(rotated.keyId);
      expect(KeyRing.load({ dir: keyDir }).open(after)).toBe('rotate-me');
      // The old key still opens what is in flight.
      expect(KeyRing.load({ dir: keyDir }).open(before)).toBe('rotate-me');
    } finally {
      access.close();
    }
  });
});
