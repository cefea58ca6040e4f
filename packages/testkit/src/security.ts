// The credentials tests use: the same files and the same path as the dev stack (TLS, service
// certificates, an admin token), made by deploy/dev/credentials.sh — no side door production lacks.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, stateDir } from './paths.ts';

export type ServiceIdentity = 'control' | 'planner' | 'build' | 'deploy';

export interface TestSecurity {
  /** STAGELINE_TLS_DIR for the services: ca.pem, <service>.pem, <service>-key.pem. */
  tlsDir: string;
  /** The CA every client verifies servers against. */
  ca: string;
  /** An admin API token (control makes it live at start from `adminTokenFile`). */
  adminToken: string;
  adminTokenFile: string;
  /** STAGELINE_SECRET_KEY_DIR: the installation's secret keys (`<id>.key`, `active`). */
  keyDir: string;
  /** What a spawned service needs: STAGELINE_TLS_DIR, STAGELINE_ADMIN_TOKEN_FILE, STAGELINE_SECRET_KEY_DIR. */
  env: Record<string, string>;
  /** A user's channel: TLS and the admin token (or another token). */
  user(token?: string): { ca: string; token: string };
  /** A Stageline service's channel: mutual TLS with its certificate. */
  service(name: ServiceIdentity): { ca: string; identity: { cert: string; key: string } };
  /** The files a service's own config takes (its certificate, key and the CA). */
  files(name: ServiceIdentity): { ca: string; cert: string; key: string };
}

/** Creates what is missing (idempotent, locked): vitest's global set-up calls it once per run. */
export function ensureTestSecurity(env: NodeJS.ProcessEnv = process.env): void {
  execFileSync('bash', [path.join(repoRoot, 'deploy/dev/credentials.sh'), stateDir(env)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

export function testSecurity(env: NodeJS.ProcessEnv = process.env): TestSecurity {
  const state = stateDir(env);
  const tlsDir = path.join(state, 'tls');
  const adminTokenFile = path.join(state, 'admin.token');
  const keyDir = path.join(state, 'keys');
  let adminToken: string;
  try {
    adminToken = readFileSync(adminTokenFile, 'utf8').trim();
    if (!existsSync(path.join(keyDir, 'active'))) throw new Error('no secret key yet');
  } catch {
    // Not made yet (a test run without the global set-up, a script): make it now.
    ensureTestSecurity(env);
    adminToken = readFileSync(adminTokenFile, 'utf8').trim();
  }
  const ca = path.join(tlsDir, 'ca.pem');
  const files = (name: ServiceIdentity) => ({
    ca,
    cert: path.join(tlsDir, `${name}.pem`),
    key: path.join(tlsDir, `${name}-key.pem`),
  });
  return {
    tlsDir,
    ca,
    adminToken,
    adminTokenFile,
    keyDir,
    env: { STAGELINE_TLS_DIR: tlsDir, STAGELINE_ADMIN_TOKEN_FILE: adminTokenFile, STAGELINE_SECRET_KEY_DIR: keyDir },
    user: (token = adminToken) => ({ ca, token }),
    service: (name) => {
      const { cert, key } = files(name);
      return { ca, identity: { cert, key } };
    },
    files,
  };
}
