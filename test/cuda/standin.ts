/**
 * A CPU STAND-IN of the CUDA build's resident-state bindings (cudaSae*, cudaEncoder*,
 * cudaTotalVariance, cudaGatherRows, cudaModel*), built from the CPU kernels (saeStep, saeEncode, optimStep, optimLerp, ...)
 * with the argument conventions of native/bindings/cuda/*.cpp. Installing it makes the loaded
 * CPU addon claim to be a CUDA build with one device, so the TypeScript `device: 'cuda'` paths
 * (SparseCoder, optimizers, Trainer, CLI) run on this machine against CPU arithmetic.
 *
 * This tests the JS wiring and bookkeeping ONLY: it says nothing about the CUDA kernels, which
 * have never run (see docs/cuda.md). Tests using it must say so in their names.
 */
import { native, Tensor } from '@sparsify/core';

type H = Tensor['handle'];
type Key = 'encW' | 'encB' | 'W_dec' | 'b_dec' | 'W_skip';
interface State {
  /** W_skip only with skip_connection (a fifth parameter slot, as in sae_state.cu). */
  w: Partial<Record<Key, Tensor>> & Record<'encW' | 'encB' | 'W_dec' | 'b_dec', Tensor>;
  g: Partial<Record<Key, Tensor>> & Record<'encW' | 'encB' | 'W_dec' | 'b_dec', Tensor>;
  m?: Tensor[];
  v?: Tensor[];
  z?: Tensor[];
  /** int32 [M]: the latents selected by trackFired steps (cudaSaeTakeFired). */
  fired?: Tensor;
  cfg: { k: number; groupmax: boolean; transcode: boolean; normalizeDecoder: boolean };
  disposed?: boolean;
}
const ORDER4 = ['encW', 'encB', 'W_dec', 'b_dec'] as const;
/** The state's parameter slots in native order (wEnc, bEnc, wDec, bDec, wSkip?). */
const order = (s: State): Key[] => (s.w.W_skip ? [...ORDER4, 'W_skip'] : [...ORDER4]);

let installed = false;

/** Patches the loaded addon (once per process). Returns the number of stand-in calls so far, per name. */
export function installCudaStandIn(): Map<string, number> {
  const n = native();
  const calls = new Map<string, number>();
  if (installed) return (n as { __standInCalls: Map<string, number> }).__standInCalls;
  installed = true;
  (n as { __standInCalls: Map<string, number> }).__standInCalls = calls;
  const count = (name: string) => calls.set(name, (calls.get(name) ?? 0) + 1);
  const buildInfo = n.buildInfo.bind(n);
  n.buildInfo = () => ({ ...buildInfo(), cuda: true });
  n.cudaProbe = () => ({ devices: 1, runtimeVersion: 13000, name: 'CPU stand-in (not a GPU)' });

  const st = (sae: { _native: State }): State => {
    if (!sae?._native || sae._native.disposed) throw new Error('stand-in: bad or disposed sae');
    return sae._native;
  };
  const f32clone = async (h: H) => {
    const t = new Tensor(h);
    return t.dtype === 'float32' ? t.clone() : await t.to('float32');
  };
  const weights = (s: State) => ({ encW: s.w.encW.handle, encB: s.w.encB.handle, W_dec: s.w.W_dec.handle, b_dec: s.w.b_dec.handle, W_skip: s.w.W_skip?.handle });
  const gradsOf = (s: State) => ({ encW: s.g.encW.handle, encB: s.g.encB.handle, W_dec: s.g.W_dec.handle, b_dec: s.g.b_dec.handle, W_skip: s.g.W_skip?.handle });

  n.cudaSaeCreate = async (p: Record<string, H>, o: Record<string, unknown>) => {
    count('cudaSaeCreate');
    const w: State['w'] = { encW: await f32clone(p.wEnc), encB: await f32clone(p.bEnc), W_dec: await f32clone(p.wDec), b_dec: await f32clone(p.bDec) };
    if (p.wSkip) {
      const ws = await f32clone(p.wSkip);
      if (ws.shape.join() !== `${w.encW.shape[1]},${w.encW.shape[1]}`) throw new Error(`stand-in: wSkip is [${ws.shape}]`);
      w.W_skip = ws;
    }
    const g = Object.fromEntries(Object.entries(w).map(([k, t]) => [k, Tensor.zeros(t.shape)])) as State['g'];
    const cfg = { k: o.k as number, groupmax: o.activation === 'groupmax', transcode: !!o.transcode, normalizeDecoder: o.normalizeDecoder !== false };
    return { _native: { w, g, cfg } as State, numLatents: w.encW.shape[0], dIn: w.encW.shape[1] };
  };
  n.cudaSaeForwardBackward = async (sae: { _native: State }, xh: H, o: Record<string, any>) => {
    count('cudaSaeForwardBackward');
    const s = st(sae);
    let x = new Tensor(xh);
    let y = o.y ? new Tensor(o.y) : undefined;
    let tv = o.totalVariance ?? -1;
    if (o.batchVariance && !(tv > 0)) {
      const all = y ?? x;
      tv = ((await n.trainTotalVariance(all.handle)) * ((o.rowEnd ?? all.shape[0]) - (o.rowBegin ?? 0))) / all.shape[0];
    }
    if (o.rowBegin !== undefined || o.rowEnd !== undefined) {
      x = new Tensor(n.trainRowSlice(x.handle, o.rowBegin ?? 0, o.rowEnd ?? x.shape[0]));
      if (y) y = new Tensor(n.trainRowSlice(y.handle, o.rowBegin ?? 0, o.rowEnd ?? y.shape[0]));
    }
    const backward = o.backward !== false;
    const r = await n.saeStep(weights(s), backward ? gradsOf(s) : undefined, x.handle, y?.handle, {
      k: o.k ?? s.cfg.k,
      groupmax: (o.activation ?? (s.cfg.groupmax ? 'groupmax' : 'topk')) === 'groupmax',
      transcode: s.cfg.transcode,
      multiTopk: !!o.multiTopk,
      deadMask: o.deadMask,
      auxkAlpha: o.auxkAlpha ?? 0,
      lossScale: o.lossScale ?? 1,
      totalVariance: tv,
      didFire: o.trackFired ? (s.fired ??= Tensor.zeros([s.w.encW.shape[0]], { dtype: 'int32' })).handle : o.didFire,
      normalizeDecoder: backward && !s.cfg.transcode && (o.normalizeDecoder ?? s.cfg.normalizeDecoder),
      outputs: true,
    });
    const out: Record<string, unknown> = {
      fvu: r.fvu,
      auxkLoss: r.auxkLoss,
      multiTopkFvu: r.multiTopkFvu,
      numDead: r.numDead,
      totalVariance: r.totalVariance,
    };
    // As the CUDA state: the indices leave the device only with outputs or didFire.
    if (o.outputs || o.didFire) out.indices = r.latentIndices;
    else new Tensor(r.latentIndices).dispose();
    if (o.outputs) Object.assign(out, { acts: r.latentActs, saeOut: r.saeOut });
    else for (const h of [r.latentActs, r.saeOut]) new Tensor(h).dispose();
    return out;
  };
  n.cudaSaeEncode = async (sae: { _native: State }, xh: H, o: Record<string, unknown>) => {
    count('cudaSaeEncode');
    const s = st(sae);
    const groupmax = (o.activation ?? (s.cfg.groupmax ? 'groupmax' : 'topk')) === 'groupmax';
    const r = await n.saeEncode(weights(s), xh, { k: o.k ?? s.cfg.k, groupmax, transcode: s.cfg.transcode, multiTopk: false, preActs: false });
    return { acts: r.acts, indices: r.indices };
  };
  n.cudaSaeDecode = async (sae: { _native: State }, a: H, i: H) => {
    count('cudaSaeDecode');
    const s = st(sae);
    return n.saeDecode(s.w.W_dec.handle, s.w.b_dec.handle, a, i);
  };
  n.cudaSaeApply = async (sae: { _native: State }, o: Record<string, any>) => {
    count(`cudaSaeApply:${o.optimizer}`);
    const s = st(sae);
    const project = o.project ?? (!s.cfg.transcode && s.cfg.normalizeDecoder);
    const entries = order(s).map((k, i) => {
      const base = { param: s.w[k]!.handle, grad: s.g[k]!.handle, project: k === 'W_dec' && project, lr: o.lr };
      if (o.optimizer === 'signum') {
        s.z ??= [];
        s.z[i] ??= s.w[k]!.clone();
        return { ...base, kind: 'signum', state: [s.z[i].handle], momentum: o.beta ?? 0.95, ckp1: o.c };
      }
      s.m ??= [];
      s.m[i] ??= Tensor.zeros(s.w[k]!.shape);
      if (o.optimizer === 'muon' && s.w[k]!.shape.length === 2) {
        // Muon on the 2-D parameters, the momentum buffer in m (as muon.cu).
        return { ...base, kind: 'muon', state: [s.m[i].handle], momentum: o.momentum ?? 0.95, nesterov: o.nesterov ?? true, weightDecay: o.weightDecay ?? 0.1, nsSteps: o.nsSteps ?? 5 };
      }
      s.v ??= [];
      s.v[i] ??= Tensor.zeros(s.w[k]!.shape);
      const lr = o.optimizer === 'muon' ? o.vectorLr : o.lr; // muon's Adam half has its own lr
      return { ...base, kind: 'adam', lr, state: [s.m[i].handle, s.v[i].handle], beta1: o.beta1 ?? 0.9, beta2: o.beta2 ?? 0.999, eps: o.eps ?? 1e-8, step: o.step };
    });
    await n.optimStep(entries);
  };
  n.cudaSaeRead = async (sae: { _native: State }, o: Record<string, unknown> = {}) => {
    count('cudaSaeRead');
    const s = st(sae);
    const out: Record<string, H> = { wEnc: s.w.encW.clone().handle, bEnc: s.w.encB.clone().handle, wDec: s.w.W_dec.clone().handle, bDec: s.w.b_dec.clone().handle };
    if (s.w.W_skip) out.wSkip = s.w.W_skip.clone().handle;
    if (o.grads) {
      Object.assign(out, { gradWEnc: s.g.encW.clone().handle, gradBEnc: s.g.encB.clone().handle, gradWDec: s.g.W_dec.clone().handle, gradBDec: s.g.b_dec.clone().handle });
      if (s.g.W_skip) out.gradWSkip = s.g.W_skip.clone().handle;
    }
    return out;
  };
  n.cudaSaeReadState = async (sae: { _native: State }) => {
    count('cudaSaeReadState');
    const s = st(sae);
    const out: Record<string, (H | undefined)[]> = {};
    for (const key of ['m', 'v', 'z'] as const) if (s[key]?.some(Boolean)) out[key] = order(s).map((_, i) => s[key]![i]?.clone().handle);
    return out;
  };
  n.cudaSaeLoadState = async (sae: { _native: State }, o: Record<string, any>) => {
    count('cudaSaeLoadState');
    const s = st(sae);
    if (o.resetOptimizer) {
      for (const key of ['m', 'v', 'z'] as const) for (const t of s[key] ?? []) t?.dispose();
      s.m = s.v = s.z = undefined;
    }
    const names: Record<string, Key> = { wEnc: 'encW', bEnc: 'encB', wDec: 'W_dec', bDec: 'b_dec', wSkip: 'W_skip' };
    for (const [key, h] of Object.entries((o.params ?? {}) as Record<string, H | undefined>)) {
      if (!h) continue;
      if (!s.w[names[key]]) throw new Error(`stand-in: params.${key} for a state without it`);
      s.w[names[key]]!.dispose();
      s.w[names[key]] = await f32clone(h);
    }
    for (const key of ['m', 'v', 'z'] as const) {
      if (!o[key]) continue;
      s[key] ??= [];
      const arr = o[key] as (H | undefined)[];
      if (arr.length !== 4 && arr.length !== order(s).length) throw new Error(`stand-in: state.${key} has ${arr.length} entries`);
      arr.forEach((h, i) => {
        if (h) s[key]![i] = new Tensor(h).clone();
      });
    }
    if (o.zeroGrads) n.zeroTensors(order(s).map((k) => s.g[k]!.handle));
  };
  n.cudaSaeTakeFired = async (sae: { _native: State }) => {
    count('cudaSaeTakeFired');
    const s = st(sae);
    const out = s.fired ? s.fired.clone() : Tensor.zeros([s.w.encW.shape[0]], { dtype: 'int32' });
    if (s.fired) n.zeroTensors([s.fired.handle]);
    return out.handle;
  };
  n.cudaSaeLerp = async (sae: { _native: State }, weight: number) => {
    count('cudaSaeLerp');
    const s = st(sae);
    const pairs = order(s).map((k, i) => ({ param: s.w[k]!.handle, z: s.z?.[i]?.handle })).filter((p) => p.z);
    if (pairs.length) await n.optimLerp(pairs, weight);
  };
  n.cudaSaeDispose = (sae: { _native: State }) => {
    const s = sae?._native;
    if (!s || s.disposed) return;
    s.disposed = true;
    for (const t of [...Object.values(s.w), ...Object.values(s.g), ...(s.m ?? []), ...(s.v ?? []), ...(s.z ?? []), s.fired]) t?.dispose();
  };
  n.cudaEncoderCreate = async (w: H, b: H, bDec?: H) => {
    count('cudaEncoderCreate');
    return { _native: { encW: new Tensor(w).clone(), encB: new Tensor(b).clone(), b_dec: bDec ? new Tensor(bDec).clone() : undefined } };
  };
  n.cudaEncoderEncode = async (enc: { _native: Record<string, Tensor | undefined> }, xh: H, o: Record<string, unknown>) => {
    count('cudaEncoderEncode');
    const e = enc._native;
    const D = e.encW!.shape[1];
    const bd = e.b_dec ?? Tensor.zeros([D]);
    const r = await n.saeEncode({ encW: e.encW!.handle, encB: e.encB!.handle, b_dec: bd.handle }, xh, {
      k: o.k, groupmax: o.activation === 'groupmax', transcode: !e.b_dec, multiTopk: false, preActs: false,
    });
    if (!e.b_dec) bd.dispose();
    return { acts: r.acts, indices: r.indices };
  };
  n.cudaEncoderDispose = (enc: { _native: Record<string, Tensor | undefined> }) => {
    for (const t of Object.values(enc?._native ?? {})) t?.dispose();
  };
  n.cudaTotalVariance = async (y: H) => {
    count('cudaTotalVariance');
    return n.trainTotalVariance(y);
  };
  n.cudaGatherRows = async (x: H, idx: H) => {
    count('cudaGatherRows');
    return n.trainGatherRows(x, idx);
  };
  // The model "on cuda" runs the CPU forward of the same native model (its outputs are host tensors).
  n.cudaModelCreate = async (model: { forward: (t: H, r: unknown) => Promise<unknown> }) => {
    count('cudaModelCreate');
    return { _standinModel: model };
  };
  n.cudaModelForward = async (m: { _standinModel: { forward: (t: H, r: unknown) => Promise<unknown> } }, tokens: H, request: unknown) => {
    count('cudaModelForward');
    return m._standinModel.forward(tokens, request);
  };
  n.cudaModelDispose = () => {};
  return calls;
}
