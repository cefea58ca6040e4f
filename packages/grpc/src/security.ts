// Who is calling: TLS on every server, mutual TLS between Stageline's own services (the identity is
// the verified client certificate's CN, under O=stageline-service), bearer tokens for everyone else.
// One place decides, before any handler runs; handlers read the caller with `principalOf(call)`.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { DomainError } from '@stageline/errors';

type AuthContext = NonNullable<ReturnType<grpc.ServerUnaryCall<unknown, unknown>['getAuthContext']>>;

/** PEM files: the CA that signs every Stageline certificate, and this process's own certificate and key. */
export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

/** The organisation every service certificate names; a certificate without it is never a service. */
export const SERVICE_ORGANIZATION = 'stageline-service';

export type Role = 'ROLE_VIEWER' | 'ROLE_DEPLOYER' | 'ROLE_ADMIN';
const RANK: Record<Role, number> = { ROLE_VIEWER: 1, ROLE_DEPLOYER: 2, ROLE_ADMIN: 3 };
export const roleAllows = (held: Role, needed: Role): boolean => RANK[held] >= RANK[needed];

export type Principal =
  | { kind: 'service'; service: string }
  | {
      kind: 'token';
      tokenId: string;
      tokenName: string;
      role: Role;
      /** Projects the token may see and act on; empty: every project. */
      projects: readonly string[];
    };

/** How the audit trail names a principal: `token:<name> (<id>)` or `service:<name>`. */
export function describePrincipal(p: Principal): string {
  return p.kind === 'service' ? `service:${p.service}` : `token:${p.tokenName} (${p.tokenId})`;
}

/** Turns a bearer token into its principal; undefined when unknown, revoked or expired. */
export type TokenVerifier = (token: string) => Promise<Extract<Principal, { kind: 'token' }> | undefined>;

/**
 * Who may call a service's methods. `services`: the service identities (mTLS) allowed on every method.
 * `roles`: the role a token needs per method name (lowerCamel, as in the ts-proto server); a method
 * absent from `roles` is refused to tokens. Nothing else gets through.
 */
export interface Access {
  services?: readonly string[];
  roles?: Readonly<Record<string, Role>>;
}

const unauthenticated = (message: string) => new DomainError('UNAUTHENTICATED', message);
const permissionDenied = (message: string) => new DomainError('PERMISSION_DENIED', message);

/** The verified service identity of a call, if its client presented a certificate signed by our CA. */
export function serviceIdentityOf(call: { getAuthContext(): AuthContext | null }): string | undefined {
  // grpc-js fills the peer certificate only when the TLS handshake verified it against the server's CA.
  const subject = call.getAuthContext()?.sslPeerCertificate?.subject;
  if (subject === undefined || subject.O !== SERVICE_ORGANIZATION || typeof subject.CN !== 'string') return undefined;
  return subject.CN;
}

function bearerOf(metadata: grpc.Metadata): string | undefined {
  const values = metadata.get('authorization');
  if (values.length === 0) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(String(values[0]));
  if (match?.[1] === undefined) throw unauthenticated('the authorization header must be "Bearer <token>"');
  return match[1];
}

/** Decides one call: the principal, or UNAUTHENTICATED / PERMISSION_DENIED naming what was missing. */
export async function authorize(
  call: { metadata: grpc.Metadata; getAuthContext(): AuthContext | null },
  /** `name`: the implementation's key (lowerCamel), which `roles` uses; `rpc`: the proto's name, for messages. */
  method: { service: string; name: string; rpc: string },
  access: Access,
  verifyToken: TokenVerifier | undefined,
): Promise<Principal> {
  const needed = access.roles?.[method.name];
  const token = bearerOf(call.metadata);
  // The common public call first: a token for a method that takes tokens (no certificate to parse).
  if (needed !== undefined && token !== undefined) {
    const principal = verifyToken === undefined ? undefined : await verifyToken(token);
    if (principal === undefined) throw unauthenticated('the token is unknown, revoked or expired');
    if (!roleAllows(principal.role, needed)) {
      throw permissionDenied(
        `${method.service}/${method.rpc} needs ${needed}; the token "${principal.tokenName}" has ${principal.role}`,
      );
    }
    return principal;
  }
  const service = serviceIdentityOf(call);
  if (service !== undefined && access.services?.includes(service)) return { kind: 'service', service };
  if (service !== undefined) {
    throw permissionDenied(`${method.service}/${method.rpc} does not accept the service identity "${service}"`);
  }
  if (needed !== undefined) throw unauthenticated('a token is required: send "authorization: Bearer <token>"');
  if (token !== undefined) throw permissionDenied(`${method.service}/${method.rpc} is internal: no token may call it`);
  throw unauthenticated(`${method.service} is internal: it takes only Stageline's own services (mutual TLS)`);
}

const principals = new WeakMap<object, Principal>();

export function rememberPrincipal(call: object, principal: Principal): void {
  principals.set(call, principal);
}

/** The caller, as the server authenticated it (every registered method is authorized before it runs). */
export function principalOf(call: object): Principal {
  const principal = principals.get(call);
  if (principal === undefined) throw new DomainError('INTERNAL', 'call was not authorized: no principal');
  return principal;
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read the ${what} ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * Server credentials: TLS with this process's certificate. Client certificates are asked for and
 * verified against the CA, but not required at the handshake: health must stay open to probes and
 * users come with tokens instead — every other method refuses a caller it cannot place (`authorize`).
 * Plaintext is never accepted.
 */
export function serverCredentials(tls: TlsFiles): grpc.ServerCredentials {
  // Read now, synchronously: a missing file fails start-up with its name, and the very first
  // handshake finds the certificates ready (grpc-js's file watcher loads them asynchronously, and
  // a client arriving first was cut off). Handed over in a microtask: grpc-js registers the server's
  // watcher only after it asks the provider, so an answer given at once would be lost. Rotating
  // certificates means restarting the process.
  const ca = read(tls.ca, 'CA certificate');
  const certificate = read(tls.cert, 'certificate');
  const privateKey = read(tls.key, 'private key');
  const provider: grpc.experimental.CertificateProvider = {
    addCaCertificateListener: (listener) => queueMicrotask(() => listener({ caCertificate: ca })),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (listener) => queueMicrotask(() => listener({ certificate, privateKey })),
    removeIdentityCertificateListener: () => {},
  };
  // grpc-js names these parameters the other way round; positionally: identity, CA, require.
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

/**
 * A client's channel: TLS verifying the server against `ca`; with `identity`, mutual TLS as that
 * service; with `token`, every call carries `authorization: Bearer <token>`.
 */
export interface ClientSecurity {
  ca: string;
  identity?: { cert: string; key: string };
  token?: string;
}

export interface Channel {
  credentials: grpc.ChannelCredentials;
  options: grpc.ClientOptions;
}

export function clientChannel(address: string, security: ClientSecurity): Channel {
  const host = hostOf(address);
  const ca = read(security.ca, 'CA certificate');
  const verify = isIP(host)
    ? // An IP target: check the certificate's IP SAN ourselves, and send a name for SNI, since TLS
      // forbids IP addresses there (Node warns on every connection otherwise).
      { checkServerIdentity: (_name: string, cert: PeerCertificate) => checkServerIdentity(host, cert) }
    : {};
  let credentials = grpc.credentials.createSsl(
    ca,
    security.identity === undefined ? null : read(security.identity.key, 'private key'),
    security.identity === undefined ? null : read(security.identity.cert, 'certificate'),
    verify,
  );
  if (security.token !== undefined) {
    const header = `Bearer ${security.token}`;
    credentials = grpc.credentials.combineChannelCredentials(
      credentials,
      grpc.credentials.createFromMetadataGenerator((_params, callback) => {
        const metadata = new grpc.Metadata();
        metadata.set('authorization', header);
        callback(null, metadata);
      }),
    );
  }
  return { credentials, options: isIP(host) ? { 'grpc.ssl_target_name_override': 'stageline' } : {} };
}

/** `127.0.0.1:50051` → `127.0.0.1`, `[::1]:50051` → `::1`, `dns:///control:50051` → `control`. */
function hostOf(address: string): string {
  const target = address.replace(/^[a-z]+:(\/\/[^/]*\/)?/i, '');
  const bracketed = /^\[([^\]]+)\]/.exec(target);
  if (bracketed?.[1] !== undefined) return bracketed[1];
  const colon = target.lastIndexOf(':');
  return colon < 0 ? target : target.slice(0, colon);
}

/** `connect(control.EnvironmentServiceClient, address, security)`: a client over `clientChannel`. */
export function connect<C>(
  Client: new (address: string, credentials: grpc.ChannelCredentials, options?: Partial<grpc.ClientOptions>) => C,
  address: string,
  security: ClientSecurity,
): C {
  const channel = clientChannel(address, security);
  return new Client(address, channel.credentials, channel.options);
}
