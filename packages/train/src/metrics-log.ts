/**
 * metrics.jsonl: one JSON line per optimizer step. On resume the log is cut back to the
 * checkpoint's step, so steps done after the last save by a killed process (and a line torn by
 * the kill) are not repeated when the resumed run logs them again.
 */
import { assertRegularFile, writeFileAtomic } from '@sparsify/core';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const METRICS_FILE = 'metrics.jsonl';

/** Keeps the lines with `step <= step`; drops torn or foreign lines. Returns how many were dropped. */
export function truncateMetrics(runDir: string, step: number): number {
  const file = join(runDir, METRICS_FILE);
  if (!existsSync(file)) return 0;
  assertRegularFile(file, 'the metrics log');
  const lines = readFileSync(file, 'utf-8').split('\n').filter((l) => l.length > 0);
  const kept = lines.filter((line) => {
    try {
      const s = (JSON.parse(line) as { step?: unknown }).step;
      return typeof s === 'number' && s <= step;
    } catch {
      return false;
    }
  });
  if (kept.length !== lines.length) writeFileAtomic(file, [kept.map((l) => l + '\n').join('')]);
  return lines.length - kept.length;
}
