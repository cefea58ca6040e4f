// Inside Chromium's network namespace (chromium-netns.sh): 127.0.0.1:$STAGELINE_BROWSER_PORT →
// the Unix socket $STAGELINE_BROWSER_SOCKET, which the test relays to the console. Exits with
// Chromium (its parent).
import net from 'node:net';

const socket = process.env.STAGELINE_BROWSER_SOCKET ?? '';
const port = Number(process.env.STAGELINE_BROWSER_PORT);
const parent = process.ppid;

net
  .createServer((client) => {
    const upstream = net.connect(socket);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  })
  .listen(port, '127.0.0.1');
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 1000).unref();
// The server keeps the process alive until Chromium goes.
