import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useControl } from './control.ts';
import { stageline } from './run.ts';

// stageline admin rotate-key against a real control, on a key directory of this file's own.

const keyDir = mkdtempSync(join(tmpdir(), 'stageline-cli-keys-'));
writeFileSync(join(keyDir, 'k-cli.key'), randomBytes(32).toString('base64'), { mode: 0o600 });
writeFileSync(join(keyDir, 'active'), 'k-cli\n', { mode: 0o600 });
const control = useControl({ STAGELINE_SECRET_KEY_DIR: keyDir });
const dir = mkdtempSync(join(tmpdir(), 'stageline-cli-admin-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(keyDir, { recursive: true, force: true });
});

const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  HOME: dir,
  STAGELINE_CONFIG: join(dir, 'no-config.yaml'),
  STAGELINE_CA: control.security.ca,
  STAGELINE_TOKEN_FILE: control.security.adminTokenFile,
  ...extra,
});
const cli = (args: string[], extra?: NodeJS.ProcessEnv) =>
  stageline(['--address', control.address, ...args], env(extra));

describe('stageline admin rotate-key', () => {
  it('makes a new active key (an admin only) and says what was sealed again, never a key', async () => {
    const created = await cli(['token', 'create', 'rotator', '--role', 'deployer']);
    expect(created.code).toBe(0);
    const refused = await cli(['admin', 'rotate-key'], { STAGELINE_TOKEN: created.stdout.trim() });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('RotateSecretKey needs ROLE_ADMIN');

    const human = await cli(['admin', 'rotate-key']);
    expect(human.code).toBe(0);
    const active = readFileSync(join(keyDir, 'active'), 'utf8').trim();
    expect(human.stdout).toContain(`secret key ${active} is now active; control sealed 0 stored values again`);
    expect(human.stdout).toContain(`keys still readable: k-cli, ${active}`);

    const json = await cli(['admin', 'rotate-key', '-o', 'json']);
    expect(json.code).toBe(0);
    const response = JSON.parse(json.stdout) as { keyId: string; keyIds: string[] };
    expect(response.keyId).toBe(readFileSync(join(keyDir, 'active'), 'utf8').trim());
    expect(response.keyIds).toHaveLength(3);
    const key = readFileSync(join(keyDir, `${response.keyId}.key`), 'utf8').trim();
    expect(json.stdout + human.stdout).not.toContain(key);
  });
});
