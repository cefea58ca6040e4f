// Every service seals its stored values again when the active key changes (a rotation made by control,
// or by hand in the key directory): it looks every few seconds, and once at start.
import type { Secrets } from './keyring.ts';

export interface KeyWatch {
  stop(): Promise<void>;
}

/**
 * Calls `reseal` at the first look and whenever the active key id differs from the one last resealed under. A failed
 * reseal is reported to `onError` and tried again at the next look. Never two at once.
 * `resealedUnder`: the key the caller has just resealed under itself (at start).
 */
export function watchActiveKey(
  secrets: Secrets,
  reseal: (keyId: string) => Promise<unknown>,
  options: { intervalMs?: number; onError?: (e: unknown) => void; resealedUnder?: string } = {},
): KeyWatch {
  let done = options.resealedUnder ?? '';
  let running: Promise<void> = Promise.resolve();
  const look = () => {
    running = running.then(async () => {
      try {
        const active = secrets.activeKeyId();
        if (active === done) return;
        await reseal(active);
        done = active;
      } catch (e) {
        options.onError?.(e);
      }
    });
  };
  const timer = setInterval(look, options.intervalMs ?? 5_000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
