/**
 * What went wrong in a JSON.parse, without the text: V8's messages quote the input near the
 * error, and an error message must never echo a file's contents (the file may not be ours:
 * a symlink in a hand-made cache can point anywhere).
 */
export function jsonErrorSummary(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (typeof code === 'string') return `cannot read (${code})`;
  const msg = (e as Error)?.message ?? '';
  const pos = /position (\d+)/.exec(msg)?.[1];
  const line = /line (\d+) column (\d+)/.exec(msg);
  if (line) return `invalid JSON at line ${line[1]} column ${line[2]}`;
  if (pos !== undefined) return `invalid JSON at byte ${pos}`;
  if (/end of (JSON )?input/i.test(msg)) return 'invalid JSON: unexpected end of input';
  return 'invalid JSON';
}
