export {
  ENVELOPE_PREFIX,
  FINGERPRINT_PREFIX,
  fingerprint,
  fingerprintKeyId,
  isSealed,
  KEY_BYTES,
  KEY_ID,
  keyIdOf,
  open,
  plaintextBytes,
  SecretError,
  type SecretKey,
  seal,
} from './envelope.ts';
export { KeyRing, type KeySource, keySourceFromEnv, memorySecrets, newKeyId, type Secrets } from './keyring.ts';
export { type Redact, redactor } from './redact.ts';
export { type ColumnSweep, resealRecord, resealValue, type SqlRun, sweepColumn } from './sweep.ts';
export {
  openEnvVars,
  openValues,
  type Resealed,
  reseal,
  resealDeep,
  sealEnvVars,
  sealValues,
} from './values.ts';
export { type KeyWatch, watchActiveKey } from './watch.ts';
