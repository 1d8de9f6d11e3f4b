import { api } from '../api.js';
import { h, replace, short } from '../dom.js';

// Peers by name: nodes do not tell each other their names, so a peer is shown by the name this node's operator
// gave it when connecting it (or the governance member of its key), else by a short id. Connecting again with
// another name renames it; an empty name forgets it.
export function render(main, state) {
  const list = h('div', { id: 'peer-list' });
  const msg = h('p', { class: 'msg', role: 'status', id: 'connect-msg' });
  const addr = h('input', { id: 'peer-addr', name: 'addr', size: 70, required: true,
                            placeholder: '/ip4/192.0.2.1/tcp/4001/p2p/12D3KooW…' });
  const name = h('input', { id: 'peer-name', name: 'name', size: 24, maxlength: 64, placeholder: 'Fablab Nord' });
  const button = h('button', { type: 'submit' }, 'Connect');
  main.append(h('h1', {}, 'Peers'),
    h('form', { class: 'inline', id: 'connect', onsubmit: async (e) => {
      e.preventDefault();
      button.disabled = true; msg.className = 'msg'; msg.textContent = 'Connecting…';
      const body = { addr: addr.value.trim() };
      if (name.value.trim()) body.name = name.value.trim();
      try {
        const r = await api('POST', '/api/v1/peers', body);
        msg.textContent = `Connected to ${r.peer_id}${r.name ? `, shown as “${r.name}”` : ''}.`;
        addr.value = ''; name.value = '';
      } catch (err) { msg.className = 'msg error'; msg.textContent = err.message; }
      button.disabled = false;
    } }, h('label', {}, 'Peer address (multiaddr ending in /p2p/<peer id>)', addr),
    h('label', {}, 'Name to show (optional)', name), button),
    msg, h('h2', {}, 'Connected'), list);
  return function update(s, keys) {
    if (!keys.includes('peers')) return;
    const peers = s.peers || [];
    replace(list, peers.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Peer'), h('th', {}, 'Peer id'),
      h('th', {}, 'Addresses'))),
      h('tbody', {}, peers.map((p) => h('tr', { 'data-peer': p.peer_id },
        h('td', { class: 'peer-name' }, p.name ? h('strong', {}, p.name) : h('span', { class: 'mono' }, short(p.peer_id))),
        h('td', { class: 'mono' }, p.peer_id),
        h('td', {}, (p.addrs || []).map((a) => h('div', { class: 'mono' }, a))))))) :
      h('p', { class: 'muted' }, 'No peer is connected.'));
  };
}
