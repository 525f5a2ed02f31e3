// A node:test reporter that writes one JSON line per finished test (file, name, outcome, skip
// reason) to its destination; scripts/test.mjs reads them to print the combined summary of its
// passes (which tests ran where, and which were skipped in every pass they were part of).
export default async function* summaryReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const d = event.data;
    if (d.details?.type === 'suite') continue;
    const skip = d.skip !== undefined && d.skip !== false ? String(d.skip === true ? '' : d.skip) : undefined;
    yield `${JSON.stringify({ file: d.file ?? '', name: d.name, nesting: d.nesting, outcome: event.type === 'test:fail' ? 'fail' : skip !== undefined ? 'skip' : 'pass', skip })}\n`;
  }
}
