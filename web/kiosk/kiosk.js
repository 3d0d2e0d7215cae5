// Price checker page: shows what the gateway shows on this kiosk (server-sent events from
// /kiosk/<id>/events: scans, manual entries, live price changes) and looks up typed codes through
// /api/v1/lookup/<code>?kiosk=<id> (the answer then arrives on the event stream too).
// Plain browser JavaScript, no build step, no libraries.
(function () {
  'use strict';
  var parts = location.pathname.split('/').filter(Boolean); // ['kiosk', '<id>']
  var kioskId = decodeURIComponent(parts[1] || '');
  var base = '/kiosk/' + encodeURIComponent(kioskId);
  var showMs = 30000;
  var resetTimer = null;
  var $ = function (id) { return document.getElementById(id); };

  function show(panel) {
    ['idle', 'product', 'unknown', 'invalid'].forEach(function (p) { $(p).hidden = p !== panel; });
    $('screen').setAttribute('data-state', panel);
    clearTimeout(resetTimer);
    if (panel !== 'idle') resetTimer = setTimeout(function () { show('idle'); }, showMs);
  }

  function money(minor, currency) {
    var fmt;
    try {
      fmt = new Intl.NumberFormat(document.documentElement.lang || undefined, { style: 'currency', currency: currency });
    } catch (e) {
      return (minor / 100).toFixed(2) + ' ' + currency;
    }
    var digits = fmt.resolvedOptions().maximumFractionDigits;
    return fmt.format(minor / Math.pow(10, digits));
  }

  function render(a) {
    if (!a.found) {
      $('unknown-detail').textContent = a.gtin ? 'Code ' + a.code + ' is not sold in this store.' : (a.message || '');
      show('unknown');
      return;
    }
    $('name').textContent = a.name || 'Product ' + a.gtin;
    $('gtin').textContent = 'GTIN ' + a.gtin;
    var p = a.price;
    $('price').textContent = p ? money(p.amount, p.currency) : 'No price';
    $('price').setAttribute('data-version', p ? String(p.version) : '');
    var promo = p && p.promotion;
    $('was').hidden = !promo;
    $('promo').hidden = !promo;
    if (promo) {
      $('was').textContent = money(promo.was_price, p.currency);
      $('promo').textContent = 'Offer' + (promo.valid_to ? ' until ' + new Date(promo.valid_to).toLocaleDateString() : '');
    }
    var locs = a.stock.locations;
    if (locs.length === 0) {
      $('where').textContent = 'Not on a shelf at the moment';
    } else {
      var places = locs.map(function (l) { return 'shelf ' + l.shelf + ', slot ' + l.slot; }).join(' · ');
      var n = a.stock.on_shelf;
      $('where').textContent = places + (n === null ? '' : ' — ' + n + ' on the shelf');
    }
    show('product');
  }

  function connect() {
    var es = new EventSource(base + '/events');
    es.addEventListener('hello', function (e) {
      var h = JSON.parse(e.data);
      if (h.name) $('kiosk-name').textContent = h.name;
      if (h.show_s) showMs = h.show_s * 1000;
      $('conn').setAttribute('data-state', 'live');
      $('conn').textContent = 'live';
    });
    es.addEventListener('lookup', function (e) { render(JSON.parse(e.data).answer); });
    es.onerror = function () {
      $('conn').setAttribute('data-state', 'lost');
      $('conn').textContent = 'reconnecting';
      // EventSource retries by itself while the server is reachable
    };
  }

  $('manual').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var code = $('code').value.replace(/\s+/g, '');
    if (!code) return;
    $('code').value = '';
    fetch('/api/v1/lookup/' + encodeURIComponent(code) + '?kiosk=' + encodeURIComponent(kioskId), { credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then(function (r) { return r.json().then(function (body) { return { status: r.status, body: body }; }); })
      .then(function (r) {
        if (r.status === 200) return render(r.body);
        if (r.status === 400) {
          $('invalid-detail').textContent = code + ': check the number (wrong length or check digit).';
          return show('invalid');
        }
        $('invalid-detail').textContent = (r.body && r.body.error && r.body.error.message) || 'The lookup failed (' + r.status + ').';
        show('invalid');
      })
      .catch(function () {
        $('invalid-detail').textContent = 'The store system cannot be reached.';
        show('invalid');
      });
  });

  show('idle');
  connect();
})();
