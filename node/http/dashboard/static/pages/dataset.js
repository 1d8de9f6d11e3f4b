import { api } from '../api.js';
import { h, replace, bytes, progress, short, when, peerName, STATE_WORDS } from '../dom.js';

export function render(main, state, [id]) {
  const head = h('div', {});
  const live = h('div', { id: 'ds-progress' });
  const versions = h('div', {});
  const files = h('div', {});
  const sources = h('div', {});
  // Verify: re-hash this version's chunks stored here (POST .../verification answers when done; meanwhile the
  // live feed carries its progress in `verifying`).
  const verifyMsg = h('div', { id: 'verify-msg', class: 'msg', role: 'status' });
  const verifyButton = h('button', { type: 'button', id: 'verify', onclick: () => verify() }, 'Verify stored chunks');
  main.append(h('p', {}, h('a', { href: '#/datasets' }, '← all datasets')), head, live,
    h('h2', {}, 'Integrity'), h('p', { class: 'muted' }, 'Re-hash every chunk of this version stored here; a damaged ',
      'one is quarantined and fetched again from peers that hold the dataset.'), verifyButton, verifyMsg,
    h('h2', {}, 'Versions'), versions, h('h2', {}, 'Files'), files, h('h2', {}, 'Sources and holders'), sources);

  let verifying = false;
  async function verify() {
    const target = doc ? doc.id : id;
    verifying = true; verifyButton.disabled = true;
    verifyMsg.className = 'msg busy'; verifyMsg.setAttribute('aria-busy', 'true');
    replace(verifyMsg, 'Verifying…');
    try {
      const r = await api('POST', `/api/v1/datasets/${encodeURIComponent(target)}/verification`);
      verifyMsg.className = `msg ${r.ok ? 'ok' : 'error'}`;
      replace(verifyMsg, h('p', { class: 'verdict' }, r.summary),
        r.files && r.files.length ? h('ul', { class: 'findings' }, r.files.map((f) => h('li', {},
          h('span', { class: 'mono' }, f.path), ` — chunk `, h('span', { class: 'mono', title: f.chunk }, short(f.chunk)),
          ` ${f.problem === 'corrupt' ? 'was corrupt (quarantined)' : 'is missing'}`))) : null,
        h('p', { class: 'muted' }, `${r.chunks_done} chunks, ${bytes(r.bytes_done)} re-hashed in ${r.seconds} s.`));
      if (!r.ok) load();
    } catch (e) {
      verifyMsg.className = 'msg error';
      replace(verifyMsg, e.message);
    }
    verifyMsg.removeAttribute('aria-busy');
    verifying = false; verifyButton.disabled = false;
  }

  function drawVerifying(s) {
    if (!verifying || !doc) return;
    const v = (s.verifying || []).find((x) => x.id === doc.id);
    if (!v) return;
    replace(verifyMsg, 'Verifying: ', progress(v.bytes_done, v.bytes_total, 'verification progress'),
      ` ${v.chunks_done} of ${v.chunks_total - v.not_here} chunks, ${bytes(v.bytes_done)} of ${bytes(v.bytes_total)}`);
  }

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
    try {  // the nodes holding this version complete, from their signed claims (named where known)
      doc.holders = (await api('GET', `/api/v1/datasets/${encodeURIComponent(doc.id)}/holders`)).holders;
    } catch (_) { /* shown without holders */ }
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
    const hasHolders = Array.isArray(holders) && holders.length > 0;
    replace(sources,
      f && f.sources && f.sources.length ? h('ul', {}, f.sources.map((x) => h('li', {}, peerName(x.peer_id, s.peers), ` — ${x.state}`))) : null,
      hasHolders ? [h('p', {}, 'Holding a complete copy:'), h('ul', { id: 'holders' }, holders.map((x) => h('li', {},
        typeof x === 'string' ? peerName(x, s.peers) : peerName(x.peer_id, s.peers, x.name))))] : null,
      !(f && f.sources && f.sources.length) && !hasHolders ? h('p', { class: 'muted' },
        doc && doc.state === 'own' ? 'Published by this node.' : 'No copy is being fetched now; the publisher and peers that announced it are the sources.') : null);
  }
  load();
  let wasActive = false;
  return function update(s, keys) {
    if (keys.includes('verifying')) drawVerifying(s);
    if (!keys.includes('replication')) return;
    const r = s.replication || { active: [] };
    const active = r.active.some((x) => x.id === id);
    if (wasActive && !active) load(); else drawLive(s);
    wasActive = active;
  };
}
