/**
 * The feature browser page (compiled to dist/web/app.js by `tsc -b`; no dependencies, no
 * requests beyond this server's API). Views, by URL hash: #/latents, #/feature/<coder>/<i>,
 * #/prompt, #/training. Every string from the data goes into the DOM as text (textContent),
 * never as markup, so a token such as `<script>` shows as itself.
 */

interface Example { row: number; pos: number; act: number; start: number; tokens: number[]; values: number[] }
interface Feature {
  index: number; frac_nonzero: number; count: number; max_act: number; mean_act: number;
  top: Example[];
  quantiles: { lo: number; hi: number; contains: number; count: number; examples: Example[] }[];
  histogram: { min: number; max: number; counts: number[] };
  logits: { pos: { token: number; value: number }[]; neg: { token: number; value: number }[] };
}
interface Index {
  model: string; dataset: string; rows: number; ctx_len: number; tokens: number; run: string | null; has_metrics: boolean;
  hookpoints: { name: string; hookpoint: string; num_latents: number; k: number; transcode: boolean; dead: number }[];
}
interface Latents { hookpoint: string; num_latents: number; count: number[]; frac_nonzero: number[]; max_act: number[]; mean_act: number[] }
interface PromptResult { tokens: number[]; strings: string[]; truncated: boolean; latents: Record<string, { index: number; act: number }[][]> }

const main = document.getElementById('main')!;
const select = document.getElementById('hookpoint') as HTMLSelectElement;
let index: Index;
let vocab: string[] = [];
const latentCache = new Map<string, Latents>();
const listState = { search: '', sort: 'index', filter: 'all' };
let lastPrompt: { text: string; result: PromptResult; selected: number } | undefined;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return e;
}

async function api<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, init);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ?? res.statusText);
  return body as T;
}

const fmt = (x: number, d = 3) => (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : x.toFixed(d));
const pct = (x: number) => `${(x * 100).toFixed(3)}%`;
/** What a token looks like on the page: newlines and tabs made visible. */
const shown = (s: string) => s.replace(/\n/g, '↵').replace(/\t/g, '⇥');
const tokenText = (id: number) => shown(vocab[id] ?? `<${id}>`);

function coder(): string {
  return select.value || index.hookpoints[0].name;
}

async function latents(name: string): Promise<Latents> {
  if (!latentCache.has(name)) latentCache.set(name, await api<Latents>(`/api/latents?hookpoint=${encodeURIComponent(name)}`));
  return latentCache.get(name)!;
}

function setActive(id: string) {
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === id);
}

async function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  try {
    if (parts[0] === 'feature' && parts.length >= 3) {
      if (parts[1] !== select.value && index.hookpoints.some((h) => h.name === parts[1])) select.value = parts[1];
      setActive('nav-latents');
      await showFeature(parts.slice(1, -1).join('/'), Number(parts[parts.length - 1]));
    } else if (parts[0] === 'prompt') {
      setActive('nav-prompt');
      showPrompt();
    } else if (parts[0] === 'training') {
      setActive('nav-training');
      await showTraining();
    } else {
      setActive('nav-latents');
      await showLatents();
    }
  } catch (e) {
    main.replaceChildren(el('p', { class: 'error' }, String((e as Error).message)));
  }
}

// ---------------------------------------------------------------- latent list

async function showLatents() {
  const name = coder();
  const L = await latents(name);
  const search = el('input', { type: 'search', placeholder: 'latent index', id: 'search', value: listState.search });
  const sort = el('select', { id: 'sort' }, el('option', { value: 'index' }, 'index'), el('option', { value: 'density' }, 'density (high first)'), el('option', { value: 'max' }, 'max activation (high first)'));
  const filter = el('select', { id: 'filter' }, el('option', { value: 'all' }, 'all'), el('option', { value: 'alive' }, 'firing'), el('option', { value: 'dead' }, 'dead (never fire)'), el('option', { value: 'dense' }, 'dense (> 10%)'));
  sort.value = listState.sort;
  filter.value = listState.filter;
  const body = el('tbody');
  const count = el('span');
  const render = () => {
    listState.search = search.value.trim();
    listState.sort = sort.value;
    listState.filter = filter.value;
    let ids = Array.from({ length: L.num_latents }, (_, i) => i);
    if (listState.search) ids = ids.filter((i) => String(i).startsWith(listState.search));
    if (listState.filter === 'alive') ids = ids.filter((i) => L.count[i] > 0);
    if (listState.filter === 'dead') ids = ids.filter((i) => L.count[i] === 0);
    if (listState.filter === 'dense') ids = ids.filter((i) => L.frac_nonzero[i] > 0.1);
    if (listState.sort === 'density') ids.sort((a, b) => L.frac_nonzero[b] - L.frac_nonzero[a] || a - b);
    if (listState.sort === 'max') ids.sort((a, b) => L.max_act[b] - L.max_act[a] || a - b);
    count.textContent = `${ids.length} of ${L.num_latents} latents${ids.length > 500 ? ' (first 500 shown)' : ''}`;
    body.replaceChildren(
      ...ids.slice(0, 500).map((i) => {
        const tr = el('tr', { class: 'latent' + (L.count[i] === 0 ? ' dead' : ''), 'data-latent': String(i) },
          el('td', {}, String(i)), el('td', {}, pct(L.frac_nonzero[i])), el('td', {}, fmt(L.max_act[i])), el('td', {}, fmt(L.mean_act[i])), el('td', {}, String(L.count[i])));
        tr.addEventListener('click', () => (location.hash = `#/feature/${encodeURIComponent(name)}/${i}`));
        return tr;
      }),
    );
  };
  search.addEventListener('input', render);
  sort.addEventListener('change', render);
  filter.addEventListener('change', render);
  const table = el('table', { id: 'latents' }, el('thead', {}, el('tr', {}, el('th', {}, 'latent'), el('th', {}, 'density'), el('th', {}, 'max act'), el('th', {}, 'mean act'), el('th', {}, 'firings'))), body);
  main.replaceChildren(el('div', { class: 'controls' }, el('label', {}, 'search ', search), el('label', {}, 'sort ', sort), el('label', {}, 'show ', filter), count), table);
  render();
}

// ---------------------------------------------------------------- feature page

function context(ex: Example, max: number): HTMLElement {
  const div = el('div', { class: 'context' }, el('span', { class: 'act' }, `${fmt(ex.act)}  row ${ex.row} pos ${ex.pos}`));
  ex.tokens.forEach((t, j) => {
    const v = ex.values[j];
    const span = el('span', { class: 'tok' + (ex.start + j === ex.pos ? ' q' : ''), title: `${JSON.stringify(vocab[t] ?? `<${t}>`)}  id ${t}  act ${fmt(v)}` }, tokenText(t));
    if (v > 0) span.style.background = `rgba(255, 120, 0, ${Math.min(1, 0.15 + (0.85 * v) / (max || 1)).toFixed(3)})`;
    div.append(span);
  });
  return div;
}

function barChart(counts: number[], lo: number, hi: number, width = 420, height = 120): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height + 20));
  svg.setAttribute('class', 'chart');
  const top = Math.max(1, ...counts);
  const w = width / counts.length;
  counts.forEach((c, j) => {
    const r = document.createElementNS(ns, 'rect');
    const h = (c / top) * height;
    r.setAttribute('x', String(j * w));
    r.setAttribute('y', String(height - h));
    r.setAttribute('width', String(Math.max(1, w - 1)));
    r.setAttribute('height', String(h));
    r.setAttribute('fill', '#e67e22');
    const t = document.createElementNS(ns, 'title');
    t.textContent = `${fmt(lo + ((j + 0.5) * (hi - lo)) / counts.length)}: ${c}`;
    r.append(t);
    svg.append(r);
  });
  for (const [x, label, anchor] of [[2, fmt(lo), 'start'], [width - 2, fmt(hi), 'end']] as const) {
    const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', String(x));
    t.setAttribute('y', String(height + 14));
    t.setAttribute('text-anchor', anchor);
    t.textContent = label;
    svg.append(t);
  }
  return svg;
}

function logitTable(title: string, rows: { token: number; value: number }[], cls: string): HTMLElement {
  return el('table', { class: 'logits' }, el('thead', {}, el('tr', {}, el('th', {}, title), el('th', {}, 'value'))),
    el('tbody', {}, ...rows.map((r) => el('tr', {}, el('td', {}, JSON.stringify(vocab[r.token] ?? `<${r.token}>`)), el('td', { class: cls }, fmt(r.value))))));
}

async function showFeature(name: string, i: number) {
  const { feature: f } = await api<{ feature: Feature }>(`/api/feature?hookpoint=${encodeURIComponent(name)}&index=${i}`);
  const h = index.hookpoints.find((x) => x.name === name)!;
  const prev = el('a', { href: `#/feature/${encodeURIComponent(name)}/${Math.max(0, i - 1)}` }, '← prev');
  const next = el('a', { href: `#/feature/${encodeURIComponent(name)}/${Math.min(h.num_latents - 1, i + 1)}` }, 'next →');
  const parts: Node[] = [
    el('div', { class: 'controls' }, el('a', { href: '#/latents' }, 'all latents'), prev, next),
    el('h2', { id: 'feature-title' }, `${name} · latent ${f.index}${h.transcode ? ' (transcoder)' : ''}`),
    el('div', { class: 'stats' },
      el('div', {}, el('b', {}, pct(f.frac_nonzero)), 'density'),
      el('div', {}, el('b', {}, fmt(f.max_act)), 'max act'),
      el('div', {}, el('b', {}, fmt(f.mean_act)), 'mean act (firing)'),
      el('div', {}, el('b', {}, String(f.count)), 'firings')),
  ];
  if (f.count === 0) parts.push(el('p', { class: 'dead' }, 'This latent never fired on the evaluated tokens.'));
  const histo = el('div', {}, el('h3', {}, 'activation histogram (firing tokens)'), barChart(f.histogram.counts, f.histogram.min, f.histogram.max));
  const logits = el('div', { class: 'panels' });
  if (f.logits.pos.length) logits.append(logitTable('promoted tokens', f.logits.pos, 'pos'), logitTable('suppressed tokens', f.logits.neg, 'neg'));
  else logits.append(el('p', {}, 'no logit effects (the hookpoint is not in the residual width, or the model has no unembedding)'));
  parts.push(el('div', { class: 'panels' }, histo, el('div', {}, el('h3', {}, 'logit effects'), logits)));
  parts.push(el('h2', {}, `top activations (${f.top.length})`), ...f.top.map((ex) => context(ex, f.max_act)));
  for (const g of f.quantiles) {
    if (!g.examples.length) continue;
    parts.push(el('h3', {}, `interval ${fmt(g.lo)} – ${fmt(g.hi)} · contains ${pct(g.contains)}`), ...g.examples.map((ex) => context(ex, f.max_act)));
  }
  main.replaceChildren(...parts);
}

// ---------------------------------------------------------------- prompt view

function showPrompt() {
  const text = el('textarea', { id: 'prompt-text', placeholder: 'Type a text; each token shows its strongest latents.' });
  text.value = lastPrompt?.text ?? '';
  const run = el('button', { id: 'prompt-run' }, 'Run');
  const out = el('div', { id: 'prompt-out' });
  const render = () => {
    if (!lastPrompt) return;
    const { result } = lastPrompt;
    const name = coder();
    const per = result.latents[name] ?? [];
    const toks = el('div', { class: 'context', id: 'prompt-tokens' });
    result.tokens.forEach((t, j) => {
      const best = per[j]?.[0];
      const span = el('span', { class: 'tok' + (j === lastPrompt!.selected ? ' sel' : ''), title: best ? `latent ${best.index}: ${fmt(best.act)}` : 'no latent fires' }, shown(result.strings[j]));
      if (best) span.style.background = `rgba(255, 120, 0, ${Math.min(1, 0.15 + best.act / 10).toFixed(3)})`;
      span.addEventListener('click', () => {
        lastPrompt!.selected = j;
        render();
      });
      toks.append(span);
    });
    const j = lastPrompt.selected;
    const list = el('div', { class: 'latlist', id: 'prompt-latents' },
      el('h3', {}, `token ${j}: ${JSON.stringify(result.strings[j] ?? '')} — top latents of ${name}`),
      ...(per[j] ?? []).map((l) => el('a', { href: `#/feature/${encodeURIComponent(name)}/${l.index}`, 'data-latent': String(l.index) }, `#${l.index} ${fmt(l.act)}`)));
    out.replaceChildren(toks, list, ...(result.truncated ? [el('p', {}, 'The text was cut to the model context.')] : []));
  };
  run.addEventListener('click', async () => {
    run.disabled = true;
    out.replaceChildren(el('p', {}, 'Running…'));
    try {
      const result = await api<PromptResult>('/api/prompt', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: text.value, top: 8 }) });
      lastPrompt = { text: text.value, result, selected: 0 };
      render();
    } catch (e) {
      out.replaceChildren(el('p', { class: 'error' }, String((e as Error).message)));
    } finally {
      run.disabled = false;
    }
  });
  main.replaceChildren(el('h2', {}, 'prompt'), text, el('div', { class: 'controls' }, run), out);
  render();
}

// ---------------------------------------------------------------- training curves

function lineChart(title: string, points: [number, number][], width = 520, height = 160): HTMLElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height + 24));
  svg.setAttribute('class', 'chart');
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(0, ...ys), y1 = Math.max(...ys) || 1;
  const px = (x: number) => 40 + ((x - x0) / (x1 - x0 || 1)) * (width - 50);
  const py = (y: number) => 8 + (1 - (y - y0) / (y1 - y0 || 1)) * (height - 16);
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', points.map((p, j) => `${j ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(''));
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', '#2e6db4');
  path.setAttribute('stroke-width', '1.5');
  svg.append(path);
  for (const [x, y, label, anchor] of [[2, py(y1) + 4, fmt(y1), 'start'], [2, py(y0), fmt(y0), 'start'], [40, height + 18, `step ${x0}`, 'start'], [width - 4, height + 18, `step ${x1}`, 'end']] as const) {
    const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', String(x));
    t.setAttribute('y', String(y));
    t.setAttribute('text-anchor', anchor);
    t.textContent = label;
    svg.append(t);
  }
  return el('div', {}, el('h3', {}, title), svg);
}

async function showTraining() {
  const { run, records } = await api<{ run: string | null; records: Record<string, unknown>[] }>('/api/metrics');
  if (!records.length) {
    main.replaceChildren(el('p', {}, run ? `No metrics.jsonl in ${run}.` : 'No run folder (start the server with --run RUN_DIR).'));
    return;
  }
  // Keys naming a coder as a path part (`fvu/h.0`, `eval/h.0/kl_div`) grouped by coder, `eval/all/*` apart; other numeric keys are run-wide.
  const series = new Map<string, [number, number][]>();
  records.forEach((r, j) => {
    const x = typeof r.step === 'number' ? r.step : j;
    for (const [k, v] of Object.entries(r)) if (typeof v === 'number' && k !== 'step' && Number.isFinite(v)) {
      if (!series.has(k)) series.set(k, []);
      series.get(k)!.push([x, v]);
    }
  });
  // Series that stay 0 (auxk before dead latents appear, multi_topk_fvu without Multi-TopK) are left out.
  const hidden = [...series].filter(([, pts]) => pts.every((p) => p[1] === 0)).map(([k]) => k);
  for (const k of hidden) series.delete(k);
  const groups = new Map<string, string[]>();
  const names = [...new Set(index.hookpoints.flatMap((h) => [h.name, h.hookpoint]))].sort((a, b) => b.length - a.length);
  for (const k of series.keys()) {
    const g = names.find((n) => `/${k}/`.includes(`/${n}/`)) ?? (k.startsWith('eval/all/') ? 'all coders' : '(run)');
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(k);
  }
  const parts: Node[] = [el('p', {}, `${run} — ${records.length} records${hidden.length ? `; always 0, not drawn: ${hidden.join(', ')}` : ''}`)];
  // Coders in the output's order, then all coders at once, then the run-wide fields.
  const order = index.hookpoints.map((h) => h.name);
  const rank = (g: string) => (g === '(run)' ? 1e9 : g === 'all coders' ? 1e8 : order.includes(g) ? order.indexOf(g) : 1e7);
  for (const [g, keys] of [...groups].sort((a, b) => rank(a[0]) - rank(b[0]) || a[0].localeCompare(b[0]))) {
    parts.push(el('h2', {}, g), el('div', { class: 'panels' }, ...keys.map((k) => lineChart(k, series.get(k)!))));
  }
  main.replaceChildren(el('div', { id: 'training' }, ...parts));
}

// ---------------------------------------------------------------- start

async function start() {
  index = await api<Index>('/api/index');
  vocab = await api<string[]>('/api/vocab');
  select.replaceChildren(...index.hookpoints.map((h) => el('option', { value: h.name }, `${h.name}${h.transcode ? ' (transcoder)' : ''} · ${h.num_latents}`)));
  document.getElementById('meta')!.textContent = `${index.model.split('/').pop()} · ${index.rows} rows × ${index.ctx_len} tokens`;
  select.addEventListener('change', () => {
    if (location.hash.startsWith('#/feature/')) location.hash = '#/latents';
    else void route();
  });
  window.addEventListener('hashchange', () => void route());
  await route();
  document.body.setAttribute('data-ready', '1');
}

start().catch((e) => main.replaceChildren(el('p', { class: 'error' }, String((e as Error).message))));
export {};
