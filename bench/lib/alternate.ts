/**
 * Times ours and a Python reference alternately (one run each, repeated) so both sides see the same
 * machine load, and reports medians. A reference that fails mid-way is dropped with its reason; its
 * medians are then absent ("not measured"), never filled from elsewhere.
 */
import { loadavg } from 'node:os';

import { median } from './machine.js';
import type { PyServer } from './py-server.js';

export interface RefSide {
  ref?: PyServer;
  note: string;
}

export interface Alternated {
  /** Median wall seconds of ours. */
  ours: number;
  /** Median wall seconds of the reference; undefined when it did not run every repetition. */
  ref?: number;
  oursRuns: number[];
  refRuns: number[];
  /** 1-minute load average after the last repetition. */
  load: number;
}

// The reference's OpenMP threads spin for a while after a call; let them stop before ours runs.
const settle = () => new Promise((r) => setTimeout(r, 250));

/** Sends one timing request; on failure records the reason in `side` and drops the reference. */
async function refOnce(side: RefSide, req: Record<string, unknown>): Promise<number[] | undefined> {
  if (!side.ref) return undefined;
  try {
    const r = (await side.ref.request(req)).seconds as number[];
    await settle();
    return r;
  } catch (e) {
    side.note = (e as Error).message;
    side.ref.close();
    side.ref = undefined;
    return undefined;
  }
}

/**
 * One warm-up of each side, then `reps` rounds of (ours once, reference once). `request` is the
 * reference's timing request without reps/warmup (undefined: ours only).
 */
export async function alternate(reps: number, ours: () => Promise<void>, side: RefSide, request?: Record<string, unknown>): Promise<Alternated> {
  const useRef = request !== undefined;
  await ours();
  if (useRef) await refOnce(side, { ...request, reps: 0, warmup: 1 });
  const oursRuns: number[] = [];
  const refRuns: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    await ours();
    oursRuns.push(Number(process.hrtime.bigint() - t0) / 1e9);
    if (useRef) refRuns.push(...((await refOnce(side, { ...request, reps: 1 })) ?? []));
  }
  return {
    ours: median(oursRuns),
    ref: useRef && side.ref && refRuns.length === reps ? median(refRuns) : undefined,
    oursRuns,
    refRuns,
    load: loadavg()[0],
  };
}
