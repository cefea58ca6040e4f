// @stageline/console: the web console's browser app (app/), built by build.ts into dist/, which
// control serves (STAGELINE_CONSOLE_LISTEN).
import { fileURLToPath } from 'node:url';

/** Where the built app is: index.html and assets/. Set-up builds it (`node packages/console/src/build.ts`). */
export const consoleAssetsDir: string = fileURLToPath(new URL('../dist', import.meta.url));
