/**
 * loadModel(): a HuggingFace causal language model (GPT-2, GPT-NeoX/Pythia, Llama, Qwen2, Gemma,
 * Gemma2) from a local folder, the HF cache or the hub, run by the native forward with hook
 * capture and splicing. Module names are transformers' names relative to the base model, which
 * is how sparsify names hookpoints (`h.0.mlp`, `layers.3`, `embed_tokens`, ...).
 */
import { joinRows, scratchBytesPerToken, sequencesPerCall } from './forward-chunks.js';
import { MappedFiles } from './mapped-files.js';
import { assertRegularFile } from '../regular-file.js';
import { jsonErrorSummary } from '../json-error.js';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

import { ConfigError, DeviceError, DTypeError, DisposedError, FileFormatError, ShapeError, ValueError } from '../errors.js';
import { resolveLocalOrHub } from '../hub.js';
import type { CudaModelHandle } from '../addon-types.js';
import { cudaProbe, native, nativePath } from '../native.js';
import { Tensor, type DType, type Device } from '../tensor.js';
import { parseModelConfig, type ModelFamily, type NativeSpec } from './config.js';
import { looksLikeTlName, tlAliases, tlUnavailable, type TlAlias } from './tl-names.js';
import { checkpointIndex, loadWeights } from './weights.js';

/** Files fetched from the hub for a model (config, weights, tokenizer). */
export const MODEL_FILE_PATTERNS: readonly string[] = [
  'config.json',
  'generation_config.json',
  '*.safetensors',
  'model.safetensors.index.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.json',
  'merges.txt',
  'tokenizer.model',
];

export interface LoadModelOptions {
  /**
   * 'cpu' (default): the native CPU forward. 'cuda': the weights are also uploaded to the GPU
   * (bf16 GEMM operands) and forward() runs there, returning captured tensors (and logits) that
   * live on the device (`tensor.device === 'cuda'`). Needs the CUDA build of the addon and a
   * device, else DeviceError (code ERR_SPARSIFY_CUDA_UNAVAILABLE). 'auto': 'cuda' when the
   * loaded addon sees a device, else 'cpu'.
   */
  device?: Device | 'auto';
  /** Convert the weight matrices to this dtype once at load (default: keep the file's dtype). */
  dtype?: Exclude<DType, 'int32'>;
  /** Hub revision (branch, tag or commit) when pathOrRepo is a repo id. */
  revision?: string;
  /** HF cache folder (default: HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Hub access token (default: $HF_TOKEN). */
  token?: string;
  /** Hub URL (default: $HF_ENDPOINT or https://huggingface.co). */
  endpoint?: string;
  /** Serve from the HF cache only (default: $HF_HUB_OFFLINE). */
  offline?: boolean;
}

export interface HookpointInfo {
  name: string;
  /** Output features (the last dimension of the module's output). */
  width: number;
}

export interface ForwardOptions {
  /** Module names whose outputs are captured (exact names; see resolveHookpoints for patterns). */
  hookpoints?: readonly string[];
  /** Also capture each hookpoint's input (a transcoder's input: for `h.0.mlp`, the MLP input). */
  captureInputs?: boolean;
  /** Compute logits [B, T, V]. Default: true when no hookpoints are asked for, else false. */
  logits?: boolean;
  /** Replace a module's output by this tensor [B*T, width] for everything downstream. */
  splice?: Map<string, Tensor>;
  /**
   * Start at decoder block `layer` from `hidden` [B*T, hidden_size], the residual stream entering
   * it (that block's captured input, e.g. `capturedInputs.get('layers.3')`): the embeddings and
   * the blocks below are skipped, so several spliced variants of one batch share that prefix.
   * Modules below `layer` can then be neither captured nor spliced.
   */
  resume?: { layer: number; hidden: Tensor };
}

export interface ForwardOutput {
  /**
   * Hookpoint -> output [B*T, width] (float32). A spliced module's entry is its own output, before
   * the splice. On a model loaded with device 'cuda' these are device tensors.
   */
  captured: Map<string, Tensor>;
  /** Hookpoint -> input [B*T, in_width] (when captureInputs; embeddings, whose input is ids, are absent). */
  capturedInputs?: Map<string, Tensor>;
  /** [B, T, V] float32 (when logits); a device tensor on a 'cuda' model. */
  logits?: Tensor;
  /** Decoder blocks actually run (the forward stops after the deepest requested hookpoint). */
  layersRun: number;
}

interface NativeModule {
  name: string;
  width: number;
  inWidth: number;
  layer: number;
}

export class LanguageModel implements Disposable {
  /** The parsed config.json. */
  readonly config: Readonly<Record<string, unknown>>;
  /** config.architectures[0], e.g. "LlamaForCausalLM". */
  readonly architecture: string;
  readonly family: ModelFamily;
  readonly numLayers: number;
  readonly hiddenSize: number;
  readonly vocabSize: number;
  readonly maxPositions: number;
  /** dtype of the weight matrices as used by the forward. */
  readonly dtype: DType;
  /** Local folder the model was loaded from. */
  readonly path: string;
  readonly spec: Readonly<NativeSpec>;
  /** Where forward() runs and where its outputs live. */
  readonly device: Device;
  #native: { forward: Function; modules: () => NativeModule[]; dispose: () => void } | undefined;
  /** The GPU copy (cudaModelCreate's CudaModel) when device is 'cuda'. */
  #cuda: CudaModelHandle | undefined;
  #tensors: Tensor[];
  #mapped: MappedFiles | undefined;
  #modules: NativeModule[];
  #byName: Map<string, NativeModule>;

  /** @internal use loadModel */
  constructor(args: {
    config: Record<string, unknown>;
    architecture: string;
    family: ModelFamily;
    spec: NativeSpec;
    path: string;
    dtype: DType;
    handle: { forward: Function; modules: () => NativeModule[]; dispose: () => void };
    tensors: Tensor[];
    cuda?: CudaModelHandle;
    mapped?: MappedFiles;
  }) {
    this.#mapped = args.mapped;
    this.config = args.config;
    this.architecture = args.architecture;
    this.family = args.family;
    this.spec = args.spec;
    this.numLayers = args.spec.layers;
    this.hiddenSize = args.spec.hidden;
    this.vocabSize = args.spec.vocab;
    this.maxPositions = args.spec.maxPos;
    this.path = args.path;
    this.dtype = args.dtype;
    this.#native = args.handle;
    this.#cuda = args.cuda;
    this.device = args.cuda ? 'cuda' : 'cpu';
    this.#tensors = args.tensors;
    this.#modules = args.handle.modules();
    this.#byName = new Map(this.#modules.map((m) => [m.name, m]));
  }

  /** Every capturable module with its output width, in transformers' module order. */
  hookpoints(): HookpointInfo[] {
    return this.#modules.map((m) => ({ name: m.name, width: m.width }));
  }

  /**
   * The TransformerLens hook names this model answers to (model/tl-names.ts), each an alias of an
   * HF module's output or input, with its width; usable wherever a hookpoint name is.
   */
  tlHookpoints(): (TlAlias & { width: number })[] {
    return this.#tlAliases().map((a) => {
      const m = this.#module(a.module);
      return { ...a, width: a.source === 'output' ? m.width : m.inWidth };
    });
  }

  /** The input width of a hookpoint (0 for embeddings, whose input is token ids). */
  inputWidth(name: string): number {
    const a = this.#alias(name);
    if (a?.source === 'input') throw new ValueError(`'${name}' is the input of '${a.module}': it has no input of its own to capture`);
    return this.#module(a?.module ?? name).inWidth;
  }

  /** Output width of a hookpoint (of a TransformerLens name: the width of the tensor it names). */
  width(name: string): number {
    const a = this.#alias(name);
    if (!a) return this.#module(name).width;
    const m = this.#module(a.module);
    return a.source === 'output' ? m.width : m.inWidth;
  }

  /** The HF module a hookpoint name stands for, and whether it is that module's output or input. */
  moduleOf(name: string): { module: string; source: 'output' | 'input' } {
    const a = this.#alias(name);
    this.#module(a?.module ?? name);
    return a ? { module: a.module, source: a.source } : { module: name, source: 'output' };
  }

  #tl: Map<string, TlAlias> | undefined;
  #tlAliases(): TlAlias[] {
    this.#tl ??= new Map(tlAliases(this.family, this.numLayers, this.spec.parallelResidual).map((a) => [a.name, a]));
    return [...this.#tl.values()];
  }

  /** The alias behind a TransformerLens name (undefined for HF module names); refuses names with no HF tensor. */
  #alias(name: string): TlAlias | undefined {
    if (this.#byName.has(name) || !looksLikeTlName(name)) return undefined;
    this.#tlAliases();
    const a = this.#tl!.get(name);
    if (a) return a;
    const why = tlUnavailable(this.family, name, this.spec.parallelResidual);
    if (why) throw new ValueError(`hookpoint ${why}`);
    return undefined;
  }

  /** The decoder blocks: `h.0..` (GPT-2) or `layers.0..`; sparsify's default hookpoints. */
  layerNames(): string[] {
    const list = this.family === 'gpt2' ? 'h' : 'layers';
    return Array.from({ length: this.numLayers }, (_, i) => `${list}.${i}`);
  }

  /** The module that holds `name`'s layer index (-1 for embeddings and the final norm). */
  layerOf(name: string): number {
    return this.#module(this.#alias(name)?.module ?? name).layer;
  }

  #module(name: string): NativeModule {
    const m = this.#byName.get(name);
    if (!m) throw new ValueError(unknownHookpoint(name, this));
    return m;
  }

  /**
   * One native call for the whole batch: runs the layers (stopping after the deepest requested
   * hookpoint unless logits are asked for) on a worker thread and returns native tensors (device
   * tensors when the model was loaded with device 'cuda'; tokens may then live on either device).
   */
  async forward(tokens: Tensor, opts: ForwardOptions = {}): Promise<ForwardOutput> {
    const h = this.#native;
    if (!h) throw new DisposedError('model has been disposed');
    if (!(tokens instanceof Tensor)) throw new DTypeError('forward: tokens must be an int32 Tensor [batch, seq]');
    if (tokens.dtype !== 'int32') throw new DTypeError(`forward: tokens must be int32, got ${tokens.dtype}`);
    if (tokens.shape.length !== 2) throw new ShapeError(`forward: tokens must be [batch, seq], got [${tokens.shape.join(', ')}]`);
    if (!this.#cuda) this.#mapped?.check();
    if (opts.hookpoints !== undefined && !Array.isArray(opts.hookpoints))
      throw new ValueError(`forward: hookpoints must be an array of module names, got ${JSON.stringify(opts.hookpoints)}${typeof opts.hookpoints === 'string' ? ` (use [${JSON.stringify(opts.hookpoints)}])` : ''}`);
    const requested = [...(opts.hookpoints ?? [])];
    // TransformerLens names become the HF module outputs / inputs they alias.
    const target = new Map(requested.map((n) => [n, this.#alias(n) ?? { name: n, module: n, source: 'output' as const }]));
    for (const t of target.values()) this.#module(t.module);
    const hookpoints = [...new Set([...target.values()].filter((t) => t.source === 'output').map((t) => t.module))];
    const wantLogits = opts.logits ?? requested.length === 0;
    if (opts.captureInputs)
      for (const [n, t] of target) if (t.source === 'input') throw new ValueError(`forward: captureInputs: '${n}' is itself the input of '${t.module}'`);
    // Embeddings take token/position ids: they have no activation input and are left out.
    const inputs = [
      ...new Set([
        ...(opts.captureInputs ? hookpoints.filter((n) => this.#module(n).inWidth > 0) : []),
        ...[...target.values()].filter((t) => t.source === 'input').map((t) => t.module),
      ]),
    ];
    const splice: [string, Tensor["handle"]][] = [];
    if (opts.splice !== undefined) {
      if (!(opts.splice instanceof Map)) throw new ValueError('forward: splice must be a Map<hookpoint, Tensor>');
      const [B, T] = tokens.shape;
      for (const [key, t] of opts.splice) {
        const a = this.#alias(key);
        if (a?.source === 'input') throw new ValueError(`forward: cannot splice '${key}': it is the input of '${a.module}', not a module output`);
        const name = a?.module ?? key;
        const m = this.#module(name);
        if (!(t instanceof Tensor)) throw new ValueError(`forward: splice['${name}'] is not a Tensor`);
        if (t.dtype === 'int32') throw new DTypeError(`forward: splice['${name}'] must be a float tensor, got int32`);
        if (t.numel !== B * T * m.width || t.shape[t.shape.length - 1] !== m.width)
          throw new ShapeError(`forward: splice['${name}'] has shape [${t.shape.join(', ')}], expected [${B * T}, ${m.width}]`);
        splice.push([name, t.handle]);
      }
    }
    let resume: { layer: number; hidden: unknown } | undefined;
    if (opts.resume !== undefined) {
      const { layer, hidden } = opts.resume;
      if (!Number.isInteger(layer) || layer < 0 || layer >= this.numLayers)
        throw new ValueError(`forward: resume.layer must be a decoder block index in [0, ${this.numLayers}), got ${layer}`);
      if (!(hidden instanceof Tensor)) throw new ValueError('forward: resume.hidden is not a Tensor');
      if (hidden.dtype !== 'float32') throw new DTypeError(`forward: resume.hidden must be float32, got ${hidden.dtype}`);
      const [B, T] = tokens.shape;
      if (hidden.numel !== B * T * this.hiddenSize || hidden.shape[hidden.shape.length - 1] !== this.hiddenSize)
        throw new ShapeError(`forward: resume.hidden has shape [${hidden.shape.join(', ')}], expected [${B * T}, ${this.hiddenSize}]`);
      resume = { layer, hidden: hidden.handle };
    }
    if (!this.#cuda && splice.length === 0 && opts.resume === undefined) {
      const [B, T] = tokens.shape;
      const n = sequencesPerCall(scratchBytesPerToken(this.spec), T);
      if (B > n) return this.#forwardInChunks(tokens, opts, n);
    }
    const request = { outputs: hookpoints, inputs, splice, logits: wantLogits, ...(resume ? { resume } : {}) };
    let r;
    if (this.#cuda) {
      // Token ids are validated on the host (range checks) before the GPU job starts.
      const host = tokens.device === 'cpu' ? tokens : await tokens.to('cpu');
      try {
        r = await this.#cuda.forward(host.handle, request);
      } finally {
        if (host !== tokens) host.dispose();
      }
    } else {
      r = await h.forward(tokens.handle, request);
    }
    // Each requested name gets its own tensor (a clone when two names alias the same module).
    const used = new Set<unknown>();
    const own = (h: unknown) => {
      const t = new Tensor(h as never);
      if (!used.has(h)) {
        used.add(h);
        return t;
      }
      return t.clone();
    };
    const captured = new Map<string, Tensor>();
    for (const [n, t] of target) {
      const h = t.source === 'output' ? r.outputs[t.module] : r.inputs[t.module];
      if (h !== undefined) captured.set(n, own(h));
    }
    const out: ForwardOutput = { captured, layersRun: r.layersRun };
    if (opts.captureInputs) {
      out.capturedInputs = new Map();
      for (const [n, t] of target) if (r.inputs[t.module] !== undefined && this.#module(t.module).inWidth > 0) out.capturedInputs.set(n, own(r.inputs[t.module]));
    }
    if (r.logits) out.logits = new Tensor(r.logits);
    return out;
  }

  /** A batch too large for the scratch budget: whole sequences, `n` per native call (forward-chunks.ts). */
  async #forwardInChunks(tokens: Tensor, opts: ForwardOptions, n: number): Promise<ForwardOutput> {
    const [B, T] = tokens.shape;
    const ids = tokens.toInt32Array();
    const parts: ForwardOutput[] = [];
    try {
      for (let b = 0; b < B; b += n) {
        const chunk = Tensor.from(ids.subarray(b * T, Math.min(B, b + n) * T), [Math.min(B, b + n) - b, T]);
        try {
          parts.push(await this.forward(chunk, opts));
        } finally {
          chunk.dispose();
        }
      }
    } catch (e) {
      for (const p of parts) for (const t of [...p.captured.values(), ...(p.capturedInputs?.values() ?? []), ...(p.logits ? [p.logits] : [])]) t.dispose();
      throw e;
    }
    const join = (pick: (p: ForwardOutput) => Map<string, Tensor>) =>
      new Map([...pick(parts[0]).keys()].map((k) => [k, joinRows(parts.map((p) => pick(p).get(k)!))]));
    const out: ForwardOutput = { captured: join((p) => p.captured), layersRun: parts[parts.length - 1].layersRun };
    if (opts.captureInputs) out.capturedInputs = join((p) => p.capturedInputs!);
    if (parts[0].logits) out.logits = joinRows(parts.map((p) => p.logits!));
    return out;
  }

  /** Frees the weights now (a running forward keeps what it uses until it ends). */
  dispose(): void {
    if (!this.#native) return;
    this.#cuda?.dispose();
    this.#cuda = undefined;
    this.#native.dispose();
    this.#native = undefined;
    this.#mapped?.close();
    this.#mapped = undefined;
    for (const t of this.#tensors) t.dispose();
    this.#tensors = [];
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

function unknownHookpoint(name: string, model: LanguageModel): string {
  const scored = model
    .hookpoints()
    .map((h) => ({ n: h.name, d: editDistance(name, h.name) }))
    .filter((x) => x.d <= Math.max(3, Math.floor(name.length / 3)))
    .sort((x, y) => x.d - y.d)
    .slice(0, 3);
  if (/[*?[]/.test(name))
    return `hookpoint '${name}' is a pattern; forward() takes exact module names: expand patterns with resolveHookpoints(model, { hookpoints: ['${name}'] })`;
  return (
    `unknown hookpoint '${name}' for ${model.architecture}` +
    (scored.length ? ` (did you mean ${scored.map((x) => `'${x.n}'`).join(', ')}?)` : ' (see model.hookpoints())')
  );
}

function roundTo(dtype: DType, x: number): number {
  if (dtype === 'float32') return Math.fround(x);
  const t = Tensor.from(new Float32Array([x]), [1], { dtype });
  const v = t.toFloat32Array()[0];
  t.dispose();
  return v;
}

/** Loads config.json and the safetensors weights (memory-mapped) and builds the native model. */
export async function loadModel(pathOrRepo: string, opts: LoadModelOptions = {}): Promise<LanguageModel> {
  if (typeof pathOrRepo !== 'string' || !pathOrRepo) throw new ValueError('loadModel: pathOrRepo must be a non-empty string');
  if (opts.device !== undefined && !['cpu', 'cuda', 'auto'].includes(opts.device))
    throw new DeviceError(`loadModel: device must be 'cpu', 'cuda' or 'auto', got ${JSON.stringify(opts.device)}`);
  const device = resolveDevice(opts.device ?? 'cpu');
  if (opts.dtype !== undefined && !['float32', 'bfloat16', 'float16'].includes(opts.dtype))
    throw new DTypeError(`loadModel: dtype must be float32, bfloat16 or float16, got ${JSON.stringify(opts.dtype)}`);
  const dir = await resolveLocalOrHub(pathOrRepo, {
    revision: opts.revision,
    cacheDir: opts.cacheDir,
    token: opts.token,
    endpoint: opts.endpoint,
    offline: opts.offline,
    allowPatterns: MODEL_FILE_PATTERNS,
  });
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw new FileFormatError(`${dir}: has no config.json`);
  let config: Record<string, unknown>;
  assertRegularFile(cfgPath, 'a model config');
  try {
    config = JSON.parse(readFileSync(cfgPath, 'utf-8'));
  } catch (e) {
    throw new ConfigError(`${cfgPath}: ${jsonErrorSummary(e)}`);
  }
  const parsed = parseModelConfig(config);
  const { weights, tensors, dtype } = await loadWeights(dir, parsed, opts.dtype);
  const spec = { ...parsed.spec };
  // Gemma multiplies by sqrt(hidden) cast to the embedding's dtype.
  if (spec.embedScale) spec.embedScale = roundTo(weights.embed.dtype, spec.embedScale);
  const handleOf = (t: Tensor | undefined) => t?.handle;
  const nativeWeights = {
    embed: handleOf(weights.embed),
    posEmbed: handleOf(weights.posEmbed),
    lmHead: handleOf(weights.lmHead),
    finalW: handleOf(weights.finalW),
    finalB: handleOf(weights.finalB),
    layers: weights.layers.map((l) => Object.fromEntries(Object.entries(l).map(([k, t]) => [k, t.handle]))),
  };
  let handle;
  try {
    handle = new (native().NativeModel)(spec, nativeWeights);
  } catch (e) {
    for (const t of tensors) t.dispose();
    if (e instanceof Error) e.message = `${dir}: ${e.message}`;
    throw e;
  }
  let cuda: CudaModelHandle | undefined;
  if (device === 'cuda') {
    try {
      cuda = await native().cudaModelCreate(handle);
    } catch (e) {
      handle.dispose();
      for (const t of tensors) t.dispose();
      if (e instanceof Error) e.message = `${dir}: ${e.message}`;
      throw e;
    }
  }
  const mapped = new MappedFiles(checkpointIndex(dir).values());
  return new LanguageModel({ config, architecture: parsed.architecture, family: parsed.family, spec, path: dir, dtype, handle, tensors, cuda, mapped });
}

/** 'auto' -> 'cuda' when the loaded addon is the CUDA build and sees a device; checks 'cuda' up front. */
function resolveDevice(d: Device | 'auto'): Device {
  const probe = cudaProbe();
  if (d === 'auto') return probe && probe.devices > 0 ? 'cuda' : 'cpu';
  if (d === 'cuda' && !probe) {
    const e = new DeviceError(
      `loadModel: device 'cuda' needs the CUDA build of the native addon, but the loaded addon (${nativePath()}) is the CPU build ` +
        '(the loader picks the CUDA build only when it sees a GPU; SPARSIFY_DEVICE=cuda forces it)',
    );
    e.code = 'ERR_SPARSIFY_CUDA_UNAVAILABLE';
    throw e;
  }
  return d;
}
