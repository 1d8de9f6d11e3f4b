import { api } from '../api.js';
import { h, replace, bytes, progress, short, when, STATE_WORDS } from '../dom.js';

export function render(main, state, [id]) {
  const head = h('div', {});
  const live = h('div', { id: 'ds-progress' });
  const versions = h('div', {});
  const files = h('div', {});
  const sources = h('div', {});
  main.append(h('p', {}, h('a', { href: '#/datasets' }, '← all datasets')), head, live,
    h('h2', {}, 'Versions'), versions, h('h2', {}, 'Files'), files, h('h2', {}, 'Sources and holders'), sources);

  let doc = null;
  async function load() {
    try {
      doc = await api('GET', `/api/v1/datasets/${encodeURIComponent(id)}`);
    } catch (e) {
      replace(head, h('h1', {}, 'Dataset'), h('p', { class: 'msg error', role: 'alert' }, e.message));
      return;
    }
    replace(head, h('h1', {}, doc.title || short(doc.id)),
      h('dl', {},
        h('dt', {}, 'State'), h('dd', { id: 'ds-state' }, STATE_WORDS[doc.state] || doc.state, doc.reason ? ` — ${doc.reason}` : ''),
        h('dt', {}, 'Licence'), h('dd', {}, doc.licence),
        h('dt', {}, 'Size'), h('dd', {}, bytes(doc.size)),
        h('dt', {}, 'Publisher'), h('dd', { class: 'mono' }, doc.publisher, doc.publisher_forked ? ' (forked its log!)' : ''),
        h('dt', {}, 'Published'), h('dd', {}, when(doc.created)),
        h('dt', {}, 'Description'), h('dd', {}, doc.description || '—'),
        h('dt', {}, 'Keywords'), h('dd', {}, (doc.keywords || []).join(', ') || '—'),
        h('dt', {}, 'Manifest id'), h('dd', { class: 'mono' }, doc.id),
        h('dt', {}, 'Dataset id'), h('dd', { class: 'mono' }, doc.dataset),
        doc.copies !== undefined ? [h('dt', {}, 'Copies'), h('dd', {}, String(doc.copies))] : null));
    replace(files, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Path'), h('th', {}, 'Size'), h('th', {}, 'Chunks'))),
      h('tbody', {}, (doc.files || []).map((f) => h('tr', {}, h('td', { class: 'mono' }, f.path), h('td', {}, bytes(f.size)),
        h('td', {}, String((f.chunks || []).length)))))));
    const all = await api('GET', '/api/v1/datasets');
    const mine = all.filter((d) => d.dataset === doc.dataset).sort((a, b) => b.version - a.version);
    replace(versions, h('ul', {}, mine.map((d) => h('li', {},
      d.id === doc.id ? h('strong', {}, `version ${d.version}`) : h('a', { href: `#/datasets/${encodeURIComponent(d.id)}` }, `version ${d.version}`),
      ` — ${when(d.created)} — ${STATE_WORDS[d.state] || d.state}`))));
    drawLive(state);
  }

  function drawLive(s) {
    const r = s.replication || { active: [], waiting: [] };
    const f = r.active.find((x) => x.id === id) || r.waiting.find((x) => x.id === id);
    replace(live, f ? [h('p', {}, 'Copying here: ', progress(f.bytes_done, f.bytes_total, 'copy progress'),
      ` ${bytes(f.bytes_done)} of ${bytes(f.bytes_total)}`, f.reason ? ` — waits: ${f.reason}` : '')] : []);
    const holders = doc && (doc.holders || doc.sources);
    replace(sources,
      f && f.sources && f.sources.length ? h('ul', {}, f.sources.map((x) => h('li', { class: 'mono' }, `${x.peer_id} — ${x.state}`))) : null,
      Array.isArray(holders) ? h('ul', {}, holders.map((x) => h('li', { class: 'mono' }, typeof x === 'string' ? x : (x.peer_id || JSON.stringify(x))))) : null,
      !(f && f.sources && f.sources.length) && !Array.isArray(holders) ? h('p', { class: 'muted' },
        doc && doc.state === 'own' ? 'Published by this node.' : 'No copy is being fetched now; the publisher and peers that announced it are the sources.') : null);
  }
  load();
  let wasActive = false;
  return function update(s, keys) {
    if (!keys.includes('replication')) return;
    const r = s.replication || { active: [] };
    const active = r.active.some((x) => x.id === id);
    if (wasActive && !active) load(); else drawLive(s);
    wasActive = active;
  };
}
