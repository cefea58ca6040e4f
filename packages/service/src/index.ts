export {
  busPrefix,
  type CommonConfig,
  ConfigError,
  commonConfig,
  type Env,
  envReader,
  hostPort,
  integer,
  LOG_LEVELS,
  logLevel,
  registryHost,
  tlsConfig,
  url,
} from './config.ts';
export { busAnswers, type Check, type Health, type HealthOptions, startHealth } from './health.ts';
export { runService, type ServiceContext } from './main.ts';
