// The one generator of Stageline's nats-server configuration (NATS 2.9): one account with JetStream,
// one user per identity with the allow lists of auth.ts, no anonymous user. Built as data, then
// rendered; a cluster (`natsClusterConfigs`) is the same server configuration per node, plus a
// `cluster` block: a server name, a route listener, routes to the other nodes and a route password.
import { BUS_IDENTITIES, type BusCredentials, type BusIdentity, busPermissions } from './auth.ts';
import type { Subjects } from './subjects.ts';

export interface NatsServerConfigOptions {
  subjects: Subjects;
  /** Password per identity (user name = identity). Identities left out get no user. */
  users: Partial<Record<BusIdentity, BusCredentials>>;
  host: string;
  /** -1: the server picks a free port (tests; see `portsFileDir`). */
  port: number;
  /** JetStream's store directory. */
  storeDir: string;
  serverName?: string;
  /** Where the server writes `nats-server_<pid>.ports` (the port it took). */
  portsFileDir?: string;
  logFile?: string;
  pidFile?: string;
  /** A cluster of servers: its name, this node's route listener, the other nodes' routes and their password. */
  cluster?: NatsClusterBlock;
}

export interface NatsClusterBlock {
  name: string;
  host: string;
  port: number;
  /** `nats-route://<user>:<password>@host:port` of every other node. */
  routes: readonly string[];
  /** Routes authenticate: a server without this user and password cannot join the cluster. */
  routeUser: BusCredentials;
}

/** One node of a cluster: where its clients and its routes connect, and its own files. */
export interface NatsClusterNode {
  /** Unique in the cluster (JetStream's meta group names servers). */
  name: string;
  /** Address clients and the other nodes reach this node at. */
  host: string;
  port: number;
  clusterPort: number;
  storeDir: string;
  logFile?: string;
  pidFile?: string;
  portsFileDir?: string;
}

export interface NatsClusterOptions {
  subjects: Subjects;
  users: Partial<Record<BusIdentity, BusCredentials>>;
  /** The cluster's name (`stageline` by default). */
  name?: string;
  /** Three nodes for R3 streams (a majority survives one lost node); at least two. */
  nodes: readonly NatsClusterNode[];
  routeUser: BusCredentials;
}

/**
 * Each node's configuration of a JetStream cluster: the single server's users and permissions on every
 * node, each routed to all the others with the route password. Streams get their replicas from
 * `STAGELINE_STREAM_REPLICAS` (3 here), not from the server.
 */
export function natsClusterConfigs(options: NatsClusterOptions): NatsServerConfigOptions[] {
  if (options.nodes.length < 2) throw new Error('a cluster needs at least two nodes');
  const names = new Set(options.nodes.map((n) => n.name));
  if (names.size !== options.nodes.length) throw new Error('cluster nodes need distinct names');
  const { user, password } = options.routeUser;
  const route = (n: NatsClusterNode) =>
    `nats-route://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${n.host}:${n.clusterPort}`;
  return options.nodes.map((node) => ({
    subjects: options.subjects,
    users: options.users,
    host: node.host,
    port: node.port,
    storeDir: node.storeDir,
    serverName: node.name,
    ...(node.logFile !== undefined ? { logFile: node.logFile } : {}),
    ...(node.pidFile !== undefined ? { pidFile: node.pidFile } : {}),
    ...(node.portsFileDir !== undefined ? { portsFileDir: node.portsFileDir } : {}),
    cluster: {
      name: options.name ?? 'stageline',
      host: node.host,
      port: node.clusterPort,
      routes: options.nodes.filter((n) => n !== node).map(route),
      routeUser: options.routeUser,
    },
  }));
}

/** The account every Stageline identity belongs to. */
export const STAGELINE_ACCOUNT = 'STAGELINE';

type ConfValue = string | number | boolean | readonly ConfValue[] | { readonly [key: string]: ConfValue };

// Strings are always quoted: an unquoted `$JS.API.>` would be read as a variable reference.
function render(value: ConfValue, indent: string): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => `${inner}${render(v, inner)}`).join('\n')}\n${indent}]`;
  }
  const entries = Object.entries(value as Record<string, ConfValue>);
  return `{\n${entries.map(([k, v]) => `${inner}${k}: ${render(v, inner)}`).join('\n')}\n${indent}}`;
}

export function natsServerConfigObject(options: NatsServerConfigOptions): Record<string, ConfValue> {
  const users = BUS_IDENTITIES.flatMap((identity) => {
    const credentials = options.users[identity];
    if (credentials === undefined) return [];
    const { publish, subscribe } = busPermissions(options.subjects, identity);
    return [
      {
        user: credentials.user,
        password: credentials.password,
        permissions: { publish: { allow: publish }, subscribe: { allow: subscribe } },
      },
    ];
  });
  const config: Record<string, ConfValue> = {
    server_name: options.serverName ?? 'stageline',
    host: options.host,
    port: options.port,
    jetstream: { store_dir: options.storeDir },
    // Users only in this account: a client without a user and password is refused (no no_auth_user).
    accounts: { [STAGELINE_ACCOUNT]: { jetstream: 'enabled', users } },
  };
  if (options.portsFileDir !== undefined) config.ports_file_dir = options.portsFileDir;
  if (options.logFile !== undefined) config.log_file = options.logFile;
  if (options.pidFile !== undefined) config.pid_file = options.pidFile;
  if (options.cluster !== undefined) {
    config.cluster = {
      name: options.cluster.name,
      host: options.cluster.host,
      port: options.cluster.port,
      authorization: { user: options.cluster.routeUser.user, password: options.cluster.routeUser.password },
      routes: [...options.cluster.routes],
    };
  }
  return config;
}

/** The configuration file's text (holds passwords: write it 0600). */
export function natsServerConfig(options: NatsServerConfigOptions): string {
  const body = Object.entries(natsServerConfigObject(options))
    .map(([k, v]) => `${k}: ${render(v, '')}`)
    .join('\n');
  return `# Stageline's NATS server: generated by packages/bus/src/nats-config.ts, do not edit.\n${body}\n`;
}
