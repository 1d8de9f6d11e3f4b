import { h, replace, bytes, duration, progress, short, peerName } from '../dom.js';
import { lineChart } from '../charts.js';

export function render(main, state) {
  const node = h('dl', { id: 'node' });
  const disk = h('div', { id: 'disk' });
  const peers = h('p', { id: 'peer-count' });
  const warnings = h('ul', { id: 'warnings', class: 'warnings' });
  const repl = h('div', { id: 'replication' });
  const charts = h('div', { class: 'grid' });
  main.append(
    h('h1', {}, 'Overview'),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-node' }, h('h2', { id: 'h-node' }, 'This node'), node),
      h('section', { class: 'card', 'aria-labelledby': 'h-disk' }, h('h2', { id: 'h-disk' }, 'Storage'), disk,
        h('h2', {}, 'Peers'), peers),
      h('section', { class: 'card', 'aria-labelledby': 'h-warn' }, h('h2', { id: 'h-warn' }, 'Warnings'), warnings)),
    h('h2', {}, 'Replication now'), repl,
    h('h2', {}, 'The last hour'), charts);

  let uptimeTimer = null;
  function drawNode(s) {
    const st = s.status || {};
    const up = st.started_at ? duration(Date.now() / 1000 - st.started_at) : '—';
    replace(node,
      h('dt', {}, 'Name'), h('dd', {}, st.name || '—'),
      h('dt', {}, 'Peer id'), h('dd', { class: 'mono' }, st.peer_id || '—'),
      h('dt', {}, 'Addresses'), h('dd', {}, (st.listen_addrs || []).map((a) => h('div', { class: 'mono' }, a))),
      h('dt', {}, 'Federation'), h('dd', {}, st.federation || '—'),
      h('dt', {}, 'Version'), h('dd', { id: 'version' }, st.version || '—'),
      h('dt', {}, 'Up for'), h('dd', { id: 'uptime' }, up));
  }
  uptimeTimer = setInterval(() => { if (!node.isConnected) clearInterval(uptimeTimer); else drawNode(state); }, 5000);

  return function update(s, keys) {
    if (keys.includes('status') || keys.includes('version')) drawNode(s);
    if (keys.includes('disk') || keys.includes('datasets')) {
      const d = s.disk || {};
      const counts = s.datasets || {};
      replace(disk,
        h('p', {}, `${bytes(d.used)} stored`, d.quota ? ` of a ${bytes(d.quota)} quota` : ' (no quota set)'),
        d.quota ? progress(d.used, d.quota, 'storage used against the quota') : null,
        h('p', {}, Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(' · ') || 'no datasets'));
    }
    if (keys.includes('peers')) {
      const list = s.peers || [];
      replace(peers, `${list.length} connected`, list.length ? ': ' : '',
        list.slice(0, 5).map((p, i) => [i ? ', ' : '', peerName(p.peer_id, list)]), list.length > 5 ? ', …' : '');
    }
    if (keys.includes('warnings')) {
      const w = s.warnings || [];
      replace(warnings, w.length ? w.map((t) => h('li', {}, t)) : h('li', { class: 'ok' }, 'Nothing needs attention.'));
    }
    if (keys.includes('replication')) {
      const r = s.replication || { active: [], waiting: [] };
      replace(repl, r.active.length || r.waiting.length ? h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Dataset'), h('th', {}, 'Progress'), h('th', {}, 'Throughput'),
          h('th', {}, 'Sources'))),
        h('tbody', {},
          r.active.map((f) => h('tr', { 'data-id': f.id },
            h('td', {}, h('a', { href: `#/datasets/${encodeURIComponent(f.id)}` }, f.title || short(f.id))),
            h('td', {}, progress(f.bytes_done, f.bytes_total, `copy of ${f.title}`),
              h('div', { class: 'muted' }, `${bytes(f.bytes_done)} of ${bytes(f.bytes_total)}`)),
            h('td', {}, f.elapsed_s > 0 ? `${bytes(f.bytes_done / f.elapsed_s)}/s` : '—'),
            h('td', {}, (f.sources || []).map((x) => h('div', {}, peerName(x.peer_id, s.peers), ` (${x.state})`))))),
          r.waiting.map((w) => h('tr', { 'data-id': w.id },
            h('td', {}, h('a', { href: `#/datasets/${encodeURIComponent(w.id)}` }, w.title || short(w.id))),
            h('td', {}, progress(w.bytes_done, w.bytes_total, `copy of ${w.title}`)),
            h('td', {}, 'waiting'), h('td', {}, w.reason || ''))))) :
        h('p', { class: 'muted' }, 'Nothing is being copied to this node right now.'));
    }
    if (keys.includes('history')) {
      const hs = s.history || { stored: [], throughput: [] };
      replace(charts,
        h('figure', { class: 'card' }, h('figcaption', {}, 'Replication throughput (bytes per second)'),
          lineChart(hs.throughput, { label: 'Replication throughput over the last hour', format: (v) => `${bytes(v)}/s` })),
        h('figure', { class: 'card' }, h('figcaption', {}, 'Bytes stored'),
          lineChart(hs.stored.length ? [...hs.stored, [Date.now() / 1000, hs.stored[hs.stored.length - 1][1]]] : [], { label: 'Bytes stored over the last hour', format: bytes })));
    }
  };
}
