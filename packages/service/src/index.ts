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
  tlsConfig,
  url,
} from './config.ts';
export { runService, type ServiceContext } from './main.ts';
