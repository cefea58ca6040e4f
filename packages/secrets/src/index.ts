export {
  ENVELOPE_PREFIX,
  isSealed,
  KEY_BYTES,
  KEY_ID,
  keyIdOf,
  open,
  SecretError,
  type SecretKey,
  seal,
} from './envelope.ts';
export { KeyRing, type KeySource, keySourceFromEnv, memorySecrets, newKeyId, type Secrets } from './keyring.ts';
export {
  openEnvVars,
  openValues,
  type Resealed,
  reseal,
  resealDeep,
  sealEnvVars,
  sealValues,
} from './values.ts';
