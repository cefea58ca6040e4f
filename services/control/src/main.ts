import { createLogger } from '@stageline/log';
import { loadConfig } from './config.ts';
import { startControl } from './service.ts';

// Wiring only: config → logger → the service; drain on SIGTERM/SIGINT.
const config = loadConfig();
const log = createLogger({ service: 'control', level: config.logLevel });
const control = await startControl(config, log);

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    control.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: e }, 'unclean stop');
        process.exit(1);
      },
    );
  });
}
