// shelfgate technician page. No framework, no build: the DOM is built with createElement and
// textContent only (never innerHTML with data). The state comes from /tech/api/state and then live
// from the server-sent events of /tech/api/events; every action is a command of the gateway's
// command registry (POST /api/v1/commands/<name>), run with the logged-in user's role and
// carrying the session's CSRF token.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  let csrf = null;
  let stream = null;
  let lastState = null;

  const el = (tag, props, ...children) => {
    const e = document.createElement(tag);
    if (props) for (const [k, v] of Object.entries(props)) {
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  };
  const ago = (iso) => {
    if (!iso) return '-';
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  };
  const money = (p) => (p && p.price !== null && p.price !== undefined ? `${(p.price / 100).toFixed(2)} ${p.currency || ''}`.trim() : '-');
  const show = (id, on) => { $(id).hidden = !on; };

  function message(text, isError) {
    const m = $('message');
    m.textContent = text;
    m.className = isError ? 'message error' : 'message';
    m.hidden = false;
  }

  async function api(method, url, body) {
    const headers = { accept: 'application/json', 'x-shelfgate-page': 'technician' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (csrf && method !== 'GET') headers['x-shelfgate-csrf'] = csrf;
    const r = await fetch(url, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
    let json = null;
    try { json = await r.json(); } catch { /* empty body */ }
    return { status: r.status, json };
  }

  async function command(name, payload, done) {
    const r = await api('POST', `/api/v1/commands/${encodeURIComponent(name)}`, payload);
    if (r.status === 401) return loggedOut('Your session ended: log in again.');
    if (r.json && r.json.ok) message(done(r.json.data), false);
    else message(`${name} failed: ${r.json && r.json.error ? `${r.json.error.message} (${r.json.error.code})` : `HTTP ${r.status}`}`, true);
  }

  function loggedOut(text) {
    csrf = null;
    if (stream) { stream.close(); stream = null; }
    setLive(false);
    show('app', false);
    show('logout', false);
    $('who').textContent = '';
    show('login-panel', true);
    const e = $('login-error');
    e.textContent = text || '';
    e.hidden = !text;
  }

  function setLive(on) {
    const b = $('live');
    b.textContent = on ? 'live' : 'offline';
    b.className = on ? 'badge on' : 'badge off';
  }

  async function load() {
    const r = await api('GET', '/tech/api/state');
    if (r.status === 401) return loggedOut('');
    if (r.status === 403) return loggedOut(r.json && r.json.error ? r.json.error.message : 'This user may not use the technician page.');
    if (!r.json || !r.json.ok) return loggedOut(`The gateway answered HTTP ${r.status}.`);
    render(r.json.data);
    listen();
  }

  function listen() {
    if (stream) stream.close();
    stream = new EventSource('/tech/api/events');
    stream.addEventListener('open', () => setLive(true));
    stream.addEventListener('state', (ev) => { setLive(true); render(JSON.parse(ev.data)); });
    stream.addEventListener('error', () => {
      setLive(false);
      // a closed stream (the session ended, or the gateway refused it) is not retried by the browser
      if (stream && stream.readyState === EventSource.CLOSED) { stream = null; setTimeout(load, 2000); }
    });
  }

  function render(s) {
    lastState = s;
    csrf = s.csrf;
    show('login-panel', false);
    show('app', true);
    show('logout', true);
    $('who').textContent = `${s.me.username} (${s.me.role})`;
    $('store').textContent = s.status.store_id;
    renderSummary(s);
    renderDevices(s);
    renderShelves(s);
    renderZones(s);
    renderLabels(s);
    show('demo-section', !!s.may.scenario);
  }

  function renderSummary(s) {
    const sy = s.status.sync;
    const facts = [
      ['Version', `shelfgate ${s.status.version}, up ${ago(new Date(Date.now() - s.status.uptime_s * 1000).toISOString())}`],
      ['Devices', `${s.status.devices.online} of ${s.status.devices.total} online`],
      ['Central', sy.transport === 'none' ? 'not configured' : sy.connected ? 'reachable' : 'NOT reachable'],
      ['Backlog', `${sy.backlog_count} event(s)${sy.oldest_event_age_s !== null ? `, oldest ${ago(new Date(Date.now() - sy.oldest_event_age_s * 1000).toISOString())}` : ''}`],
      ['Last success', sy.last_success ? `${ago(sy.last_success)} ago` : 'never'],
    ];
    if (sy.last_error && !sy.connected) facts.push(['Last error', `${sy.last_error.code}: ${sy.last_error.message}`]);
    $('summary').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', null, k), el('dd', { id: `fact-${k.toLowerCase().replace(/ /g, '-')}` }, v)]));
  }

  function renderDevices(s) {
    $('devices-count').textContent = `${s.status.devices.online}/${s.status.devices.total} online`;
    $('devices').tBodies[0].replaceChildren(...s.devices.map((d) =>
      el('tr', { dataset: { device: d.id, state: d.state } },
        el('td', null, d.id),
        el('td', { class: `state-${d.state}` }, d.state),
        el('td', null, ago(d.since)),
        el('td', null, d.state === 'online' ? '-' : (d.last_error || '-')))));
  }

  function renderShelves(s) {
    const byShelf = new Map();
    for (const slot of s.shelves) {
      if (!byShelf.has(slot.shelf_id)) byShelf.set(slot.shelf_id, []);
      byShelf.get(slot.shelf_id).push(slot);
    }
    const open = document.activeElement && document.activeElement.closest && document.activeElement.closest('.learn');
    if (open) return; // do not rebuild under a technician's fingers while a learn form is open
    $('shelves').replaceChildren(...[...byShelf].map(([shelf, slots]) =>
      el('div', { class: 'shelf' }, el('h3', null, shelf), el('div', { class: 'slots' }, slots.map((x) => slotCard(s, x))))));
  }

  function slotCard(s, x) {
    const key = `${x.shelf_id}/${x.slot_id}`;
    const learn = el('form', { class: 'learn inline', hidden: true, onsubmit: (ev) => {
      ev.preventDefault();
      const items = Number(learn.querySelector('input').value);
      command('calibrate.learn', { shelf: x.shelf_id, slot: x.slot_id, items }, (d) => `${key}: unit weight ${d.unit_weight_g} g learned, count ${d.count}`);
      learn.hidden = true;
    } }, el('input', { type: 'number', min: 1, step: 1, required: true, placeholder: 'items now on it', 'aria-label': `items on ${key}` }), el('button', { type: 'submit' }, 'Learn'));
    return el('div', { class: 'slot', dataset: { slot: key } },
      el('div', null, el('strong', null, x.slot_id), ' ', el('span', { class: `state-${x.condition === 'ok' ? 'online' : 'offline'}` }, x.condition)),
      el('div', { class: 'count', dataset: { count: x.count === null ? '' : String(x.count) } }, x.count === null ? '?' : String(x.count)),
      el('div', { class: 'meta', dataset: { weight: x.settled_weight_g === null || x.settled_weight_g === undefined ? '' : String(x.settled_weight_g) } }, `${x.settled_weight_g === null || x.settled_weight_g === undefined ? '-' : `${x.settled_weight_g} g on the scale`}${x.gtin ? ` · ${x.gtin}` : ''}`),
      el('div', { class: 'actions' },
        el('button', { type: 'button', disabled: !s.may.tare, 'aria-label': `tare ${key}`, onclick: () => command('calibrate.tare', { shelf: x.shelf_id, slot: x.slot_id }, (d) => `${key}: tare ${d.tare_g} g, count now ${d.count}`) }, 'Tare'),
        el('button', { type: 'button', disabled: !s.may.learn, 'aria-label': `learn the unit weight of ${key}`, onclick: () => { learn.hidden = !learn.hidden; if (!learn.hidden) learn.querySelector('input').focus(); } }, 'Learn…')),
      learn);
  }

  function renderZones(s) {
    show('zones-section', Array.isArray(s.zones));
    if (!Array.isArray(s.zones)) return;
    $('zones').tBodies[0].replaceChildren(...s.zones.map((z) =>
      el('tr', { dataset: { zone: z.zone_id } },
        el('td', null, z.zone_id), el('td', null, z.location_id), el('td', null, String(z.tags_present)),
        el('td', null, z.counts.map((c) => `${c.gtin || 'other'}: ${c.count}`).join(', ') || '-'))));
  }

  function renderLabels(s) {
    show('labels-section', !!s.labels);
    if (!s.labels) return;
    const sum = s.labels.summary;
    $('labels-summary').textContent = `${sum.labels} label(s); on the current price ${sum.confirmed_current}/${sum.priced} (${(sum.share * 100).toFixed(1)} %); oldest mismatch ${sum.oldest_mismatch_since ? ago(sum.oldest_mismatch_since) : 'none'}; low battery ${sum.low_battery}, lost ${sum.lost}`;
    const f = $('labels-filter').value.trim().toLowerCase();
    const rows = s.labels.labels.filter((l) => !f || l.mac.toLowerCase().includes(f) || (l.location || '').toLowerCase().includes(f) || (l.gtin || '').includes(f));
    $('labels').tBodies[0].replaceChildren(...rows.map((l) =>
      el('tr', { dataset: { mac: l.mac, state: l.state } },
        el('td', null, l.mac), el('td', null, l.location || l.gtin || '-'),
        el('td', { class: `state-${l.state}` }, l.state),
        el('td', { class: l.matches ? '' : 'mismatch' }, money(l.shows)),
        el('td', null, money(l.should_show), l.matches || !l.mismatch_since ? '' : ` (since ${ago(l.mismatch_since)})`),
        el('td', null, l.battery_mv === null ? '-' : `${(l.battery_mv / 1000).toFixed(2)} V${l.conditions.includes('low_battery') ? ' low' : ''}`),
        el('td', null, el('button', { type: 'button', disabled: !s.may.flash, 'aria-label': `flash ${l.mac}`, onclick: () => command('label.flash', { mac: l.mac }, () => `${l.mac}: flashing`) }, 'Flash')))));
    const more = $('labels-more');
    more.hidden = !s.labels.truncated;
    more.textContent = s.labels.truncated ? `Showing ${s.labels.labels.length} of ${sum.labels} labels, those not on their current price first. shelfgate labels --stale lists them all.` : '';
  }

  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await api('POST', '/api/v1/session', { username: $('username').value, password: $('password').value });
    $('password').value = '';
    if (r.json && r.json.ok) { $('login-error').hidden = true; return load(); }
    loggedOut(r.json && r.json.error ? r.json.error.message : `Log-in failed (HTTP ${r.status}).`);
  });
  $('logout').addEventListener('click', async () => { await api('DELETE', '/api/v1/session'); loggedOut('Logged out.'); });
  $('labels-filter').addEventListener('input', () => lastState && renderLabels(lastState));
  $('bind').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const mac = $('bind-mac').value.trim();
    command('label.bind', { mac, shelf: $('bind-shelf').value.trim(), slot: $('bind-slot').value.trim() }, () => `${mac} bound to ${$('bind-shelf').value}/${$('bind-slot').value}`);
  });
  $('scenario').addEventListener('click', () => command('demo.scenario', {}, (d) => `scenario started: ${d && d.description ? d.description : 'shoppers on their way'}`));
  load();
})();
