// Wiring only: config → logger → the service; runService drains it on SIGTERM/SIGINT.
import { runService } from '@stageline/service';
import { loadConfig } from './config.ts';
import { startControl } from './service.ts';

await runService('control', loadConfig, async ({ config, log, onClose }) => {
  const control = await startControl(config, log);
  onClose('control', () => control.stop());
});
