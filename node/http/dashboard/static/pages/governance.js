import { api } from '../api.js';
import { h, replace, when, short } from '../dom.js';

export function render(main) {
  const policy = h('div', { id: 'policy' }), members = h('div', { id: 'members' });
  const proposals = h('div', { id: 'proposals' }), audit = h('div', { id: 'audit' });
  main.append(h('h1', {}, 'Governance'),
    h('p', { class: 'muted' }, 'Members vote with their own keys (communs vote); this page shows what is decided.'),
    h('h2', {}, 'Policy in force'), policy, h('h2', {}, 'Members'), members,
    h('h2', {}, 'Proposals'), proposals, h('h2', {}, 'Governance log'), audit);

  async function section(el, path, draw) {
    try { draw(await api('GET', path)); } catch (e) { replace(el, h('p', { class: 'msg error' }, e.message)); }
  }
  function load() {
    section(policy, '/api/v1/policy', (p) => replace(policy,
      h('p', {}, `Version ${p.version ?? p.policy_version ?? '—'}`, p.enacted_at ? `, enacted ${when(p.enacted_at)}` : ''),
      Array.isArray(p.summary) ? h('ul', {}, p.summary.map((t) => h('li', {}, t)))
        : h('p', {}, String(p.summary || '')),
      h('details', {}, h('summary', {}, 'as TOML'), h('pre', {}, p.toml || ''))));
    section(members, '/api/v1/members', (m) => replace(members, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Peer id'))),
      h('tbody', {}, (m.members || []).map((x) => h('tr', {}, h('td', {}, x.name), h('td', { class: 'mono' }, x.peer_id)))))));
    section(proposals, '/api/v1/proposals', (list) => replace(proposals, list.length ? h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Proposal'), h('th', {}, 'By'), h('th', {}, 'Closes'), h('th', {}, 'Tally'))),
      h('tbody', {}, list.slice().sort((a, b) => b.closes - a.closes).map((p) => h('tr', {},
        h('td', {}, p.summary || p.kind, h('div', { class: 'muted mono' }, short(p.id))),
        h('td', {}, p.proposer_name || short(p.proposer)),
        h('td', {}, when(p.closes), p.enacted ? h('div', { class: 'ok' }, 'enacted') : null),
        h('td', {}, tally(p.tally), h('div', { class: 'muted' }, `${(p.ballots || []).length} ballot(s)`)))))) :
      h('p', { class: 'muted' }, 'No proposal yet.')));
    section(audit, '/api/v1/governance/audit', (a) => replace(audit,
      h('p', { class: a.ok ? 'ok' : 'bad' }, a.ok ? 'Last audit: the log verifies.' : 'Last audit: the log does NOT verify.'),
      h('p', {}, a.summary || '', ` (${a.entries} entries)`),
      h('p', {}, h('a', { href: '/api/v1/governance/log', download: 'governance.log' }, 'Download the governance log'),
        ' (verify it anywhere with communs audit).')));
  }
  load();
  return function update(s, keys) { if (keys.includes('governance')) load(); };
}

function tally(t) {
  if (!t || typeof t !== 'object') return '—';
  const parts = Object.entries(t).filter(([, v]) => typeof v !== 'object').map(([k, v]) => `${k}: ${v}`);
  return parts.join(' · ');
}
