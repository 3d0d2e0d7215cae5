/** The read-only status page at GET /_sim/ (refreshes every 5 s; the same data is JSON at /_sim/state). */
import { escapeHtml as h } from './http-util';
import type { SimState } from './state';
import { isKnownChange } from './types';

export function renderStatusPage(s: SimState): string {
  const storeRows = Object.entries(s.stats.stores)
    .map(
      ([id, st]) => `<tr><td>${h(id)}</td><td>${st.events}</td><td>${st.duplicates}</td><td>${st.rejected}</td><td>${st.batches}</td>
<td>${st.contiguous_seq} / ${st.max_seq}${st.epochs.length > 1 ? ` (epoch ${h(st.epoch ?? '')}, ${st.epochs.length} epochs)` : ''}</td><td>${h(Object.entries(st.by_kind).map(([k, n]) => `${k}: ${n}`).join(', '))}</td>
<td>${st.out_of_order_devices.length === 0 ? 'none' : h(st.out_of_order_devices.map((d) => `${d.device_id} (${d.out_of_order}, ${d.last ?? ''})`).join('; '))}</td>
<td>${st.acks.applied} / ${st.acks.stale} / ${st.acks.invalid}</td></tr>`,
    )
    .join('\n');
  const events = s.lastEvents
    .map(
      (e) => `<tr><td>${h(e.received_at)}</td><td>${h(e.store_id)}</td><td>${e.seq}</td><td>${h(e.device_id)}</td><td>${h(e.kind)}</td>
<td>${e.priority}</td><td><code>${h(JSON.stringify(e.payload).slice(0, 160))}</code></td></tr>`,
    )
    .join('\n');
  const changes = s.lastChanges
    .map((c) =>
      !isKnownChange(c)
        ? `<tr><td>${h(c.published_at)}</td><td>${h(c.type)} (not in this contract)</td><td></td><td>v${c.version}</td><td>${h(c.change_id)}</td><td>${h(c.store_id ?? 'all')}</td></tr>`
        : c.type === 'product'
        ? `<tr><td>${h(c.published_at)}</td><td>product</td><td>${h(c.gtin)}</td><td>v${c.version}</td><td>${h(c.name)}${
            c.net_content ? `, ${c.net_content.amount} ${h(c.net_content.unit)}` : ''
          }</td><td>${h(c.store_id ?? 'all')}</td></tr>`
        : c.type === 'price'
        ? `<tr><td>${h(c.published_at)}</td><td>price</td><td>${h(c.gtin)}</td><td>v${c.version}</td><td>${(c.price / 100).toFixed(2)} ${h(c.currency)}${
            c.promotion ? ` (was ${(c.promotion.was_price / 100).toFixed(2)})` : ''
          }</td><td>${h(c.store_id ?? 'all')}</td></tr>`
        : `<tr><td>${h(c.published_at)}</td><td>slot</td><td>${h(c.gtin ?? '(cleared)')}</td><td>v${c.version}</td><td>${h(c.shelf)}/${c.slot}, ${
            c.unit_weight_g ?? '-'
          } g</td><td>${h(c.store_id)}</td></tr>`,
    )
    .join('\n');
  const acks = s.lastAcks
    .map((a) => `<tr><td>${h(a.received_at)}</td><td>${h(a.store_id)}</td><td>${h(a.change_id)}</td><td>${h(a.status)}</td><td>${h(a.applied_at)}</td><td>${a.times}</td></tr>`)
    .join('\n');
  const r = s.stats.requests;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>shelfgate central simulator</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}th{background:#eee}code{font-size:12px}</style></head>
<body><h1>Central simulator</h1>
<p>${h(s.url)} &middot; ${r.total} requests &middot; feed head ${s.stats.changes.head} &middot; open connections ${s.stats.connections.open}
(${s.stats.connections.long_polls} long-polls, ${s.stats.connections.sse} SSE) &middot; <a href="/_sim/state">JSON</a></p>
<p>Faults: <code>${h(JSON.stringify(s.faults))}</code> &middot; injected: <code>${h(JSON.stringify(r.faults_injected))}</code></p>
<h2>Stores</h2>
<table><tr><th>store</th><th>events</th><th>duplicates</th><th>rejected</th><th>batches</th><th>contiguous / max seq</th><th>by kind</th><th>devices out of order</th><th>acks applied / stale / invalid</th></tr>
${storeRows || '<tr><td colspan="9">nothing received yet</td></tr>'}</table>
<h2>Last events</h2>
<table><tr><th>received</th><th>store</th><th>seq</th><th>device</th><th>kind</th><th>prio</th><th>payload</th></tr>
${events || '<tr><td colspan="7">none</td></tr>'}</table>
<h2>Changes published (latest first)</h2>
<table><tr><th>published</th><th>type</th><th>gtin</th><th>version</th><th>value</th><th>store</th></tr>
${changes || '<tr><td colspan="6">none</td></tr>'}</table>
<h2>Acknowledgements (latest first)</h2>
<table><tr><th>received</th><th>store</th><th>change</th><th>status</th><th>applied at</th><th>times</th></tr>
${acks || '<tr><td colspan="6">none</td></tr>'}</table>
</body></html>
`;
}
