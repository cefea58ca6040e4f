// One validated configuration object from the environment; a bad value stops the start with its name.

export interface ControlConfig {
  grpcListen: string;
  natsUrl: string;
  databaseUrl: string;
  busPrefix: string;
  logLevel: string;
  plannerAddress: string;
}

function read(env: NodeJS.ProcessEnv, name: string, fallback: string, check?: (v: string) => boolean): string {
  const value = env[name] ?? fallback;
  if (value === '' || (check && !check(value))) {
    throw new Error(`configuration: ${name}=${JSON.stringify(value)} is not valid`);
  }
  return value;
}

const hostPort = (v: string) => /^[^\s:]+:\d{1,5}$/.test(v) || /^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(v);

export function loadConfig(env: NodeJS.ProcessEnv = process.env): ControlConfig {
  return {
    grpcListen: read(env, 'GRPC_LISTEN', '127.0.0.1:50051', hostPort),
    natsUrl: read(env, 'NATS_URL', 'nats://127.0.0.1:4222'),
    databaseUrl: read(env, 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/stageline', (v) =>
      /^postgres(ql)?:\/\//.test(v),
    ),
    busPrefix: read(env, 'STAGELINE_BUS_PREFIX', 'stageline', (v) => /^[a-z0-9_-]+$/.test(v)),
    logLevel: read(env, 'LOG_LEVEL', 'info'),
    plannerAddress: read(env, 'STAGELINE_PLANNER_ADDRESS', '127.0.0.1:50052', hostPort),
  };
}
