// Every child process the harness spawns, so ctrl-C or a crash never orphans one.
import type { ChildProcess } from 'node:child_process';

const owned = new Set<ChildProcess>();

/** Register a child for cleanup; it drops out of the set when it exits. */
export function track<T extends ChildProcess>(child: T): T {
  owned.add(child);
  child.once('exit', () => owned.delete(child));
  return child;
}

/** SIGTERM a child, escalating to SIGKILL if it has not exited after `graceMs`. */
export function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Stop every child still running; safe to call more than once. */
export async function stopAll(): Promise<void> {
  await Promise.all([...owned].map((c) => stopChild(c)));
}

/** Make SIGINT/SIGTERM tear down the children (a `kill` of the harness alone would not reach them). */
export function installSignalCleanup(after?: () => void): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: stopping child processes`);
      void stopAll().finally(() => {
        after?.();
        process.exit(130);
      });
    });
  }
}
