/**
 * The CPU goals of issue 11 ("CPU backend at the roofline of AVX-512 machines") checked against the
 * JSON the benchmark scripts write in one run (bench/out/<area>.json): each goal is a ratio of ours
 * to the peer measured in that same run, or "not measured" when the peer (or the row) is missing.
 */

export interface Goal {
  goal: string;
  /** ours / peer in this run; undefined: not measured. */
  ratio?: number;
  target: number;
  /** Why there is no ratio. */
  note?: string;
}

type Json = Record<string, unknown>;
type Pair = { ours?: number; sparsify?: number };

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Goals from the scripts' JSON, keyed by area (gemm, sae, model); missing areas give "not measured" rows. */
export function evaluateGoals(data: Record<string, Json | undefined>): Goal[] {
  const goals: Goal[] = [];
  const missing = (area: string) => `bench/${area}.ts did not run or failed`;

  // GEMM >= 100% of torch/MKL f32 on each shape of bench/gemm.ts.
  const gemm = data.gemm;
  const gemmRows = (gemm?.rows as Json[] | undefined) ?? [];
  if (!gemm) goals.push({ goal: 'GEMM f32 vs torch (all shapes)', target: 1, note: missing('gemm') });
  for (const r of gemmRows)
    goals.push({ goal: `GEMM f32 vs torch: ${r.name}`, target: 1, ratio: num(r.ratio_f32), note: num(r.ratio_f32) === undefined ? String(gemm?.refNote || 'torch not measured') : undefined });

  // SAE encode >= 1.3x, forward >= 1.5x, training step >= 2.5x (signum; AuxK with 10% dead) vs sparsify.
  const sae = data.sae;
  const saeRows = (sae?.rows as Json[] | undefined) ?? [];
  const saeNote = String(sae?.refNote || 'sparsify not measured');
  const saeGoals: [string, string, number][] = [
    ['encode', 'SAE encode', 1.3],
    ['forward', 'SAE forward', 1.5],
    ['train', 'SAE training step (signum)', 2.5],
    ['trainAuxk', 'SAE training step (signum, AuxK 10% dead)', 2.5],
  ];
  if (!sae) goals.push({ goal: 'SAE encode / forward / training step vs sparsify', target: 1.3, note: missing('sae') });
  for (const [key, label, target] of saeGoals)
    for (const r of saeRows) {
      const p = r[key] as Pair | undefined;
      const ratio = p?.ours && p.sparsify ? p.ours / p.sparsify : undefined;
      goals.push({ goal: `${label} ${r.d}x${r.m}, k ${r.k}`, target, ratio, note: ratio === undefined ? saeNote : undefined });
    }

  // GPT-2-small-shaped LM forward with capture >= 1.5x transformers.
  const model = data.model;
  const lm = ((model?.rows as Json[] | undefined) ?? []).find((r) => String(r.name).startsWith('GPT-2-small'));
  goals.push({
    goal: 'GPT-2-small-shaped LM forward, all blocks captured, vs transformers GPT2Model',
    target: 1.5,
    ratio: num(lm?.ratio),
    note: !model ? missing('model') : !lm ? 'GPT-2-small row not run (--tiny-only or --smoke)' : num(lm.ratio) === undefined ? String(model.refNote || 'transformers not measured') : undefined,
  });

  // bf16 compute mode >= 2x sparsify's f32 encode (the bf16 row of bench/sae.ts: key encodeBf16 or
  // bf16Encode, tokens/s as a number or {ours}).
  for (const r of saeRows.length ? saeRows : [undefined]) {
    const key = r ? Object.keys(r).find((k) => /^(encode_?bf16|bf16_?encode)$/i.test(k)) : undefined;
    const bf = (key ? r![key] : undefined) as number | Pair | undefined;
    const ours = typeof bf === 'number' ? bf : bf?.ours;
    const theirs = (r?.encode as Pair | undefined)?.sparsify;
    goals.push({
      goal: `bf16 encode vs sparsify f32 encode${r ? ` ${r.d}x${r.m}, k ${r.k}` : ''}`,
      target: 2,
      ratio: ours && theirs ? ours / theirs : undefined,
      note: !sae ? missing('sae') : ours === undefined ? 'no bf16 row in bench/sae.ts output' : theirs === undefined ? saeNote : undefined,
    });
  }
  return goals;
}

/** Markdown table of the goals, with an optional second column of ratios (the AVX2 pass). */
export function goalsTable(goals: Goal[], second?: { title: string; goals: Goal[] }): string {
  const cell = (g: Goal | undefined) => (g?.ratio === undefined ? `not measured${g?.note ? ` (${g.note})` : ''}` : `${g.ratio.toFixed(2)}x ${g.ratio >= g.target ? 'met' : 'not met'}`);
  const lines = [
    `| goal | target | measured (ours / peer) |${second ? ` ${second.title} |` : ''}`,
    `|---|---:|---|${second ? '---|' : ''}`,
  ];
  for (const g of goals) {
    const other = second ? ` ${cell(second.goals.find((h) => h.goal === g.goal))} |` : '';
    lines.push(`| ${g.goal} | >= ${g.target}x | ${cell(g)} |${other}`);
  }
  return lines.join('\n');
}
