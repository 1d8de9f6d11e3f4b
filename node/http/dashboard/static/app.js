// The dashboard's entry point: hash routes (#/overview, #/datasets, #/datasets/<id>, ...), the live state
// pushed by the server, and sign-out. Plain ES modules loaded by the browser as they are: no build step.

import { live, signOut } from './api.js';
import { replace } from './dom.js';
import * as overview from './pages/overview.js';
import * as datasets from './pages/datasets.js';
import * as dataset from './pages/dataset.js';
import * as governance from './pages/governance.js';
import * as peers from './pages/peers.js';
import * as operations from './pages/operations.js';

const PAGES = { overview, datasets, dataset, governance, peers, operations };
const state = {};
let current = null;  // { name, update }

function route() {
  const [name, ...rest] = (window.location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  const key = name === 'datasets' && rest.length ? 'dataset' : name;
  const page = PAGES[key] || overview;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const main = document.getElementById('page');
  replace(main);
  const update = page.render(main, state, rest.map(decodeURIComponent));
  current = { name: key, update };
  if (update) update(state, Object.keys(state));
}

function onState(changed) {
  Object.assign(state, changed);
  if (changed.status && changed.status.name) {
    document.getElementById('node-name').textContent = `Communs node “${changed.status.name}”`;
    document.title = `${changed.status.name} · Communs node`;
  }
  if (current && current.update) current.update(state, Object.keys(changed));
}

function onLink(up) {
  const el = document.getElementById('live');
  el.textContent = up ? 'live' : 'node unreachable, reconnecting…';
  el.className = `live ${up ? 'on' : 'off'}`;
}

document.getElementById('signout').addEventListener('click', () => signOut());
window.addEventListener('hashchange', route);
route();
live(onState, onLink);
