import { api } from '../api.js';
import { h, replace, bytes, progress, short, STATE_WORDS } from '../dom.js';

const SHOWN = 200;  // rows drawn at once: a node may know tens of thousands of datasets

export function render(main, state) {
  let all = [];
  const stateSel = h('select', { id: 'f-state' }, h('option', { value: '' }, 'any state'),
    Object.entries(STATE_WORDS).map(([k, v]) => h('option', { value: k }, v)));
  const licSel = h('select', { id: 'f-licence' }, h('option', { value: '' }, 'any licence'));
  const search = h('input', { id: 'f-search', type: 'search', placeholder: 'title, id or publisher' });
  const count = h('p', { id: 'ds-count', class: 'muted', role: 'status' });
  const body = h('tbody', {});
  main.append(h('h1', {}, 'Datasets'),
    h('form', { class: 'inline', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('label', {}, 'State', stateSel), h('label', {}, 'Licence', licSel), h('label', {}, 'Search', search)),
    count,
    h('table', { id: 'datasets' }, h('thead', {}, h('tr', {}, h('th', {}, 'Title'), h('th', {}, 'Licence'),
      h('th', {}, 'Size'), h('th', {}, 'State'), h('th', {}, 'Copies'))), body));

  function draw() {
    const st = stateSel.value, lic = licSel.value, q = search.value.trim().toLowerCase();
    const active = new Map(((state.replication || {}).active || []).map((f) => [f.id, f]));
    const rows = all.filter((d) => (!st || d.state === st) && (!lic || d.licence === lic) &&
      (!q || `${d.title} ${d.id} ${d.dataset} ${d.publisher}`.toLowerCase().includes(q)));
    count.textContent = `${rows.length} of ${all.length} datasets` + (rows.length > SHOWN ? ` (first ${SHOWN} shown)` : '');
    replace(body, rows.slice(0, SHOWN).map((d) => {
      const f = active.get(d.id);
      return h('tr', { 'data-id': d.id },
        h('td', {}, h('a', { href: `#/datasets/${encodeURIComponent(d.id)}` }, d.title || short(d.id)),
          h('div', { class: 'muted' }, `version ${d.version} · by `, h('span', { class: 'mono' }, short(d.publisher)))),
        h('td', {}, d.licence),
        h('td', {}, bytes(d.size)),
        h('td', { class: 'state' }, STATE_WORDS[d.state] || d.state,
          d.reason ? h('div', { class: 'muted' }, d.reason) : null,
          f ? h('div', {}, progress(f.bytes_done, f.bytes_total, `copy of ${d.title}`)) : null),
        h('td', {}, d.copies !== undefined ? String(d.copies) : '—'));
    }));
  }

  async function load() {
    all = await api('GET', '/api/v1/datasets');
    const lics = [...new Set(all.map((d) => d.licence))].sort();
    const keep = licSel.value;
    replace(licSel, h('option', { value: '' }, 'any licence'), lics.map((l) => h('option', { value: l }, l)));
    licSel.value = lics.includes(keep) ? keep : '';
    draw();
  }
  for (const el of [stateSel, licSel]) el.addEventListener('change', draw);
  search.addEventListener('input', draw);
  load();

  return function update(s, keys) {
    if (keys.includes('datasets') || keys.includes('publishing')) load();
    else if (keys.includes('replication')) {
      const before = new Set(all.filter((d) => d.state === 'in-progress').map((d) => d.id));
      const now = new Set(((s.replication || {}).active || []).map((f) => f.id));
      if ([...now].some((id) => !before.has(id)) || [...before].some((id) => !now.has(id))) load(); else draw();
    }
  };
}
