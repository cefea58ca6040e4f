// Configuration from the environment: every variable read once, validated, and named when it is wrong.
import { busPrefixFromEnv, natsServers, streamReplicasFromEnv } from '@stageline/bus';

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

export const LOG_LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** A reader of `env` that falls back to `defaults` for unset or blank variables. */
export function envReader<K extends string>(env: Env, defaults: Readonly<Record<K, string>>): (name: K) => string {
  return (name) => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? defaults[name] : value;
  };
}

export function hostPort(name: string, value: string): string {
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw new ConfigError(name, `expected host:port (e.g. 127.0.0.1:50051), got "${value}"`);
  return value;
}

/** A registry `host[:port]` (the mirror's push or pull address, an insecure registry). */
export function registryHost(name: string, value: string): string {
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::(\d{1,5}))?$/.exec(value);
  if (!match || Number(match[2] ?? '0') > 65535) {
    throw new ConfigError(name, `expected a registry host[:port] (e.g. 127.0.0.1:5000), got "${value}"`);
  }
  return value;
}

export function url(name: string, value: string, protocols: readonly string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    // Never echo the value: a database URL may carry a password.
    throw new ConfigError(name, 'not a valid URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `expected a ${protocols.join(' or ')} URL, got "${parsed.protocol}"`);
  }
  return value;
}

export function integer(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new ConfigError(name, `expected an integer in ${min}-${max}, got "${value}"`);
  return n;
}

export function logLevel(name: string, value: string): string {
  if (!LOG_LEVELS.includes(value)) throw new ConfigError(name, `one of ${LOG_LEVELS.join(', ')}, got "${value}"`);
  return value;
}

/** `NATS_URL`: one nats:// or tls:// URL, or a comma-separated list of a cluster's servers. */
export function natsUrlList(name: string, value: string): string {
  try {
    return natsServers(value).join(',');
  } catch (e) {
    throw new ConfigError(name, e instanceof Error ? e.message.replace(/^NATS_URL: /, '') : String(e));
  }
}

export function busPrefix(name: string, value: string): string {
  try {
    // The bus's own rule for prefixes, so the two can never disagree.
    return busPrefixFromEnv({ STAGELINE_BUS_PREFIX: value });
  } catch (e) {
    throw new ConfigError(name, e instanceof Error ? e.message.replace(/^STAGELINE_BUS_PREFIX: /, '') : String(e));
  }
}

/** What every Stageline service reads; `grpcListen` defaults differ per service. */
export interface CommonConfig {
  /** host:port the gRPC server binds (port 0: any free port). */
  grpcListen: string;
  /**
   * host:port of the plaintext HTTP probe port (/livez, /readyz). Default: the gRPC host, its port + 100
   * (50051 → 50151), or any free port when the gRPC port is 0.
   */
  healthListen: string;
  /** `NATS_URL`: one server, or a cluster's servers comma-separated. */
  natsUrl: string;
  /** `STAGELINE_NATS_CREDENTIALS`: a file `{"user", "password"}`; unset: an anonymous bus that this service provisions. */
  natsCredentialsFile?: string | undefined;
  databaseUrl: string;
  /** Prefix of every subject, stream and durable: installations and tests can share a NATS server. */
  busPrefix: string;
  logLevel: string;
  /** PEM files: the CA, and this service's certificate and key (its identity to the others). */
  tls: { ca: string; cert: string; key: string };
}

/**
 * TLS is not optional: `STAGELINE_TLS_DIR` holds `ca.pem`, `<identity>.pem` and `<identity>-key.pem`
 * (what `deploy/dev/credentials.sh` writes), and `STAGELINE_TLS_CA`, `STAGELINE_TLS_CERT`, `STAGELINE_TLS_KEY`
 * name files one by one (a production install's mounted secret), each overriding the directory.
 */
export function tlsConfig(env: Env, identity: string): { ca: string; cert: string; key: string } {
  const dir = env.STAGELINE_TLS_DIR?.trim();
  const file = (name: string, inDir: string): string => {
    const value = env[name]?.trim();
    if (value !== undefined && value !== '') return value;
    if (dir === undefined || dir === '') {
      throw new ConfigError(
        name,
        `TLS is required: set STAGELINE_TLS_DIR (a directory with ca.pem, ${identity}.pem and ${identity}-key.pem) or STAGELINE_TLS_CA, STAGELINE_TLS_CERT and STAGELINE_TLS_KEY`,
      );
    }
    return `${dir.replace(/\/+$/, '')}/${inDir}`;
  };
  return {
    ca: file('STAGELINE_TLS_CA', 'ca.pem'),
    cert: file('STAGELINE_TLS_CERT', `${identity}.pem`),
    key: file('STAGELINE_TLS_KEY', `${identity}-key.pem`),
  };
}

/** `identity`: the service's name, which its certificate carries as CN (control, planner, build, deploy). */
export function commonConfig(env: Env, grpcListen: string, identity: string): CommonConfig {
  const read = envReader(env, {
    GRPC_LISTEN: grpcListen,
    NATS_URL: 'nats://127.0.0.1:4222',
    DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/stageline',
    STAGELINE_BUS_PREFIX: 'stageline',
    LOG_LEVEL: 'info',
  });
  const grpc = hostPort('GRPC_LISTEN', read('GRPC_LISTEN'));
  // Read again by the bus when it makes streams and buckets; checked here so a bad value stops the start.
  streamReplicas(env);
  const health = env.HEALTH_LISTEN?.trim();
  return {
    grpcListen: grpc,
    healthListen: hostPort('HEALTH_LISTEN', health === undefined || health === '' ? healthBeside(grpc) : health),
    natsUrl: natsUrlList('NATS_URL', read('NATS_URL')),
    natsCredentialsFile: env.STAGELINE_NATS_CREDENTIALS?.trim() || undefined,
    databaseUrl: url('DATABASE_URL', read('DATABASE_URL'), ['postgres:', 'postgresql:']),
    busPrefix: busPrefix('STAGELINE_BUS_PREFIX', read('STAGELINE_BUS_PREFIX')),
    logLevel: logLevel('LOG_LEVEL', read('LOG_LEVEL')),
    tls: tlsConfig(env, identity),
  };
}

/** `STAGELINE_STREAM_REPLICAS` (1-5, default 1): copies of every stream and bucket. */
function streamReplicas(env: Env): number {
  try {
    return streamReplicasFromEnv(env);
  } catch (e) {
    throw new ConfigError(
      'STAGELINE_STREAM_REPLICAS',
      e instanceof Error ? e.message.replace(/^STAGELINE_STREAM_REPLICAS: /, '') : String(e),
    );
  }
}

/** The default probe port: beside the gRPC one (port + 100), or a free one when gRPC takes a free one. */
function healthBeside(grpcListen: string): string {
  const colon = grpcListen.lastIndexOf(':');
  const port = Number(grpcListen.slice(colon + 1));
  return `${grpcListen.slice(0, colon)}:${port === 0 ? 0 : port + 100 > 65535 ? 0 : port + 100}`;
}
