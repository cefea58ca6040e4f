import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { useStack } from './stack.ts';

// The public API from another language: a Python client that knows only the protos (compiled here
// with protoc) drives control end to end (issue 2, point 5), over TLS with an API token, as any user.

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
// Debian's interpreter: it is the one setup.sh gives python3-grpcio and python3-protobuf.
const PYTHON = '/usr/bin/python3';
const SETUP_HINT =
  'run deploy/dev/setup.sh (it installs protobuf-compiler, libprotobuf-dev, python3-grpcio and python3-protobuf)';

// protoc's well-known types, from libprotobuf-dev.
const TIMESTAMP_PROTO = '/usr/include/google/protobuf/timestamp.proto';

const stack = useStack({ services: ['control', 'planner'] });
let generated = '';

async function requireTool(argv: [string, ...string[]], what: string): Promise<void> {
  const [file, ...args] = argv;
  try {
    await run(file, args);
  } catch (e) {
    throw new Error(`${what} is missing (${(e as Error).message.trim()}): ${SETUP_HINT}`);
  }
}

// Checked inside the test, not in a hook: a machine without them must show a failed test, not a skipped one.
async function generatePython(): Promise<string> {
  await requireTool(['protoc', '--version'], 'protoc');
  await requireTool([PYTHON, '-c', 'import grpc, google.protobuf'], `grpcio or protobuf for ${PYTHON}`);
  if (!existsSync(TIMESTAMP_PROTO)) throw new Error(`${TIMESTAMP_PROTO} is missing: ${SETUP_HINT}`);
  generated = mkdtempSync(join(tmpdir(), 'stageline-python-'));
  const protoDir = join(root, 'proto/stageline/control/v1');
  const protos = readdirSync(protoDir)
    .filter((f) => f.endsWith('.proto'))
    .map((f) => `stageline/control/v1/${f}`);
  await run('protoc', ['-I', join(root, 'proto'), '-I', '/usr/include', `--python_out=${generated}`, ...protos]);
  return generated;
}

afterAll(() => {
  if (generated) rmSync(generated, { recursive: true, force: true });
});

const CHECKS = [
  'CreateEnvironment returns the environment with default settings',
  'CreateEnvironment creates the four default stages in order',
  'GetEnvironment returns the environment and its pipeline',
  'ListEnvironments pages with page_size 1 and next_page_token',
  'UpdateEnvironment changes only the settings it is given',
  'AddService SERVICE_KIND_DATABASE without a stage lands in DEFAULT DATABASE',
  'AddService SERVICE_KIND_LIFECYCLE_JOB without a stage lands in DEFAULT JOB',
  'AddService SERVICE_KIND_CRON_JOB without a stage lands in DEFAULT JOB',
  'AddService SERVICE_KIND_CONTAINER without a stage lands in DEFAULT CONTAINER',
  'AddService SERVICE_KIND_APPLICATION without a stage lands in DEFAULT APPLICATION',
  'secret env var values are write-only',
  'UpdateService replaces the definition named by service.id',
  'ListServices lists every service in pipeline order',
  'CreateStage inserts at the given position, including an explicit 0',
  'UpdateStage renames and describes a stage',
  'MoveStage moves a stage and keeps orders dense',
  'MoveService moves a service to another stage',
  'SetServiceSkipped sets and clears the skipped flag',
  'error: DeleteStage of a non-empty stage without a target is FAILED_PRECONDITION',
  "DeleteStage moves a non-empty stage's services to move_services_to_stage_id",
  'RemoveService removes a service from the environment and its stage',
  'CloneEnvironment(preview) copies stages, services, settings and skipped flags',
  'error: a bad environment name is INVALID_ARGUMENT naming the field',
  'error: settings.max_parallel_builds=0, present, is INVALID_ARGUMENT',
  'error: an unknown id is NOT_FOUND',
  'error: an id that is not a UUID is NOT_FOUND too',
  'error: a duplicate name is ALREADY_EXISTS',
];

describe('a Python client built from the protos alone', () => {
  it('manages environments, services, stages and skipped flags, and gets the documented errors', async () => {
    const pythonPath = await generatePython();
    const control = stack.procs.find((p) => p.name === 'control')!;
    const result = await run(PYTHON, [join(root, 'test/e2e/python/control_client.py'), control.address], {
      env: {
        ...process.env,
        PYTHONPATH: pythonPath,
        PYTHONDONTWRITEBYTECODE: '1',
        // The CA control's certificate chains to, and the admin token (read from its file by the script).
        STAGELINE_CA: stack.security.ca,
        STAGELINE_TOKEN_FILE: stack.security.adminTokenFile,
      },
      timeout: 120_000,
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (e: { code?: number | string; stdout?: string; stderr?: string }) => ({
        code: e.code ?? 'unknown',
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      }),
    );
    // On failure the script's own FAIL line (stderr) says which check broke and why.
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    const lines = result.stdout.trim().split('\n');
    expect(lines).toEqual([...CHECKS.map((c) => `ok ${c}`), 'all checks passed']);
  }, 180_000);
});
