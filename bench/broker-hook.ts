/**
 * Preloaded into the broker process of bench/mqtt-bus.ts (`node --expose-gc -r broker-hook.js
 * dist/src/cli.js run ...`): answers the bench over the IPC channel with the process's memory after
 * a forced full GC, or writes a V8 heap snapshot. Not used by the daemon in production.
 *
 *   { id, cmd: 'mem' }                  -> { id, mem: process.memoryUsage(), gc: boolean }
 *   { id, cmd: 'stats' }                -> { id, mem: process.memoryUsage(), gc: false }  (no GC: sampling under load)
 *   { id, cmd: 'snapshot', file }       -> { id, file }   (v8.writeHeapSnapshot)
 *
 * The channel is unref'd so that it never keeps the daemon alive after its own clean stop.
 */
import { writeHeapSnapshot } from 'node:v8';

interface Request {
  id: number;
  cmd: 'mem' | 'stats' | 'snapshot';
  file?: string;
}

if (process.send) {
  const send = process.send.bind(process);
  process.on('message', (m: Request) => {
    if (m.cmd === 'snapshot') {
      send({ id: m.id, file: writeHeapSnapshot(m.file) });
      return;
    }
    if (m.cmd === 'stats') {
      send({ id: m.id, mem: process.memoryUsage(), gc: false });
      return;
    }
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) {
      // twice: the first full GC can leave objects that only a second one (after weak callbacks) frees
      gc();
      gc();
    }
    send({ id: m.id, mem: process.memoryUsage(), gc: gc !== undefined });
  });
  process.channel?.unref();
}
