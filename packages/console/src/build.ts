// Builds the browser app into dist/: one bundled script and one stylesheet, no external request.
// The generated protos are bundled for their message types and JSON codecs; their grpc-js client
// (Node only) is replaced by a stub, since the browser talks to control's JSON gateway instead.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { consoleAssetsDir } from './index.ts';

const app = (path: string) => fileURLToPath(new URL(`../app/${path}`, import.meta.url));

export async function buildConsole(outDir: string = consoleAssetsDir): Promise<void> {
  await rm(outDir, { recursive: true, force: true });
  await mkdir(`${outDir}/assets`, { recursive: true });
  await build({
    entryPoints: { console: app('main.tsx') },
    outdir: `${outDir}/assets`,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: true,
    jsx: 'automatic',
    jsxImportSource: 'preact',
    alias: { '@grpc/grpc-js': app('grpc-stub.ts') },
    loader: { '.css': 'css' },
    logLevel: 'warning',
  });
  await writeFile(
    `${outDir}/index.html`,
    `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Stageline</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="/assets/console.css" />
    <script type="module" src="/assets/console.js"></script>
  </head>
  <body>
    <div id="app"></div>
  </body>
</html>
`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildConsole(process.argv[2]);
  console.error(`console: built ${process.argv[2] ?? consoleAssetsDir}`);
}
