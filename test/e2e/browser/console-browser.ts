// Debian's Chromium for the console's browser tests, driven by playwright-core (never a browser
// download), headless, in a network namespace of its own (chromium-netns.sh says why) reaching the
// console at the same https://127.0.0.1:PORT through a Unix socket.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
export const CHROMIUM = process.env.STAGELINE_CHROMIUM ?? '/usr/bin/chromium';

export interface IsolatedBrowser {
  browser: Browser;
  close(): Promise<void>;
}

export async function launchChromium(consoleUrl: string): Promise<IsolatedBrowser> {
  const { hostname, port } = new URL(consoleUrl);
  const dir = mkdtempSync(join(tmpdir(), 'stageline-chromium-'));
  const socket = join(dir, 'console.sock');
  const relay = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(socket, resolve));
  const browser = await chromium.launch({
    executablePath: here('./chromium-netns.sh'),
    headless: true,
    args: ['--no-sandbox'],
    env: {
      ...process.env,
      STAGELINE_CHROMIUM: CHROMIUM,
      STAGELINE_BROWSER_NODE: process.execPath,
      STAGELINE_BROWSER_FORWARDER: here('./forward.ts'),
      STAGELINE_BROWSER_SOCKET: socket,
      STAGELINE_BROWSER_PORT: port,
    },
  });
  return {
    browser,
    async close() {
      await browser.close();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
