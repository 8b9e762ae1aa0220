// Entry point of the demo-database child process (see demo-db-process.ts).
// Reports where it listens over IPC, stops when told or when its parent goes.

import { startDemoDatabase } from './demo-db.js';

const send = (m: unknown) => process.send?.(m);

try {
  const db = await startDemoDatabase({
    host: '127.0.0.1',
    port: 0,
    onFatal: (err) => {
      send({ type: 'fatal', message: String((err as Error)?.message ?? err) });
      process.exit(1);
    },
  });
  const stop = () => void db.stop().finally(() => process.exit(0));
  process.on('message', (m) => { if (m === 'stop') stop(); });
  process.on('disconnect', stop); // the parent is gone: nobody else can reach this database
  send({ type: 'ready', host: db.host, port: db.port, database: db.database, user: db.user });
} catch (err) {
  send({ type: 'fatal', message: (err as Error).message });
  process.exit(1);
}
