// @stageline/grpc: how every Stageline service serves and calls gRPC.
export {
  type CallOptions,
  callUnary,
  checkHealth,
  GRPC_RETRY,
  type HealthStatus,
  isRetryableGrpcError,
  RETRYABLE_CODES,
  type RequestOf,
  type ResponseOf,
  type UnaryMethodName,
  type WaitForServingOptions,
  waitForServing,
} from './client.ts';
export { notImplemented, serverStream, unary } from './handlers.ts';
export {
  type Access,
  authorize,
  type Channel,
  type ClientSecurity,
  clientChannel,
  connect,
  describePrincipal,
  type Principal,
  principalOf,
  type Role,
  roleAllows,
  SERVICE_ORGANIZATION,
  serverCredentials,
  serviceIdentityOf,
  type TlsFiles,
  type TokenVerifier,
} from './security.ts';
export {
  type GrpcServer,
  type GrpcServiceRegistration,
  type StartGrpcServerOptions,
  serviceNameOf,
  startGrpcServer,
} from './server.ts';
export {
  domainErrorFromGrpc,
  FIELD_METADATA_KEY,
  fieldOf,
  fieldViolationsOf,
  type GrpcStatus,
  isServiceError,
  STATUS_DETAILS_KEY,
  toGrpcStatus,
} from './status.ts';
