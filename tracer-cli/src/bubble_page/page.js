// The bubble view: draws one process/thread's bubbles from the embedded JSON (the aggregate,
// never raw events). Vanilla JS and inline SVG: the page opens offline by double click.
(function () {
  'use strict';
  var DATA = JSON.parse(document.getElementById('data').textContent);
  var NS = 'http://www.w3.org/2000/svg';
  var COLORS = {
    'network': '#4e79a7', 'files-streams': '#59a14f', 'crypto': '#edc948',
    'timers-promises': '#f28e2b', 'other': '#9c755f'
  };
  var NAMES = {
    'network': 'network', 'files-streams': 'files and streams', 'crypto': 'crypto',
    'timers-promises': 'timers and promises', 'other': 'other'
  };
  var PARTY = { 'user': 'user code', 'external': 'node_modules', 'node-core': 'node core' };
  var state = { view: 0, range: null, selected: null, search: '' };
  var $ = function (id) { return document.getElementById(id); };

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function h(tag, text, cls) {
    var e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(ms) {
    if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
    if (ms >= 10) return ms.toFixed(0) + ' ms';
    if (ms >= 0.1) return ms.toFixed(1) + ' ms';
    return (ms * 1000).toFixed(0) + ' µs';
  }
  function view() { return DATA.views[state.view]; }

  // Time inside a bubble, over the selected range of the timeline or the whole run.
  function weight(b) {
    if (!state.range) return b.time_ms;
    var s = 0;
    for (var i = state.range[0]; i < state.range[1] && i < b.hist.length; i++) s += b.hist[i];
    return s;
  }
  function matches(b) {
    var q = state.search.toLowerCase();
    if (!q) return true;
    if (b.name.toLowerCase().indexOf(q) >= 0) return true;
    return b.aggregates.some(function (a) {
      return (a.site || '').toLowerCase().indexOf(q) >= 0 || a.type.toLowerCase().indexOf(q) >= 0 ||
        a.stack.some(function (f) { return f.toLowerCase().indexOf(q) >= 0; });
    }) || b.folded.some(function (f) { return f.name.toLowerCase().indexOf(q) >= 0; });
  }

  function layout(v) {
    var byId = {}, kids = {}, roots = [];
    var max = 0;
    v.bubbles.forEach(function (b) { byId[b.id] = b; max = Math.max(max, b.time_ms); });
    v.bubbles.forEach(function (b) {
      if (b.parent != null && byId[b.parent]) (kids[b.parent] = kids[b.parent] || []).push(b);
      else roots.push(b);
    });
    var scale = max > 0 ? 46 / Math.sqrt(max) : 0;
    // Marked bubbles are never specks: a leak can hold no time at all.
    var radius = function (b) { return Math.max(b.marks.length ? 14 : 0, 7 + Math.sqrt(b.time_ms) * scale); };
    var rows = [];
    function measure(b, depth) {
      b._r = radius(b); b._depth = depth;
      rows[depth] = Math.max(rows[depth] || 0, b._r);
      var own = Math.max(2 * b._r + 24, 150), sum = 0;
      (kids[b.id] || []).forEach(function (c) { sum += measure(c, depth + 1); });
      b._w = Math.max(own, sum);
      return b._w;
    }
    var width = 0;
    roots.forEach(function (r) { width += measure(r, 0); });
    var ys = [], y = 30;
    for (var d = 0; d < rows.length; d++) { ys[d] = y + rows[d]; y += 2 * rows[d] + 70; }
    function place(b, x0) {
      b._x = x0 + b._w / 2; b._y = ys[b._depth];
      var cs = kids[b.id] || [], sum = 0;
      cs.forEach(function (c) { sum += c._w; });
      var x = x0 + (b._w - sum) / 2;
      cs.forEach(function (c) { place(c, x); x += c._w; });
    }
    var x = 20;
    roots.forEach(function (r) { place(r, x); x += r._w; });
    return { byId: byId, width: width + 40, height: y + 10 };
  }

  function draw() {
    var v = view();
    var L = layout(v);
    var svg = $('graph');
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute('width', Math.max(L.width, $('graph-box').clientWidth - 4));
    svg.setAttribute('height', L.height);
    var linkLayer = el('g', {}, svg), bubbleLayer = el('g', {}, svg);
    var maxWait = 0;
    v.links.forEach(function (l) { maxWait = Math.max(maxWait, l.wait_union_ms); });
    v.links.forEach(function (l) {
      var a = L.byId[l.from], b = L.byId[l.to];
      if (!a || !b) return;
      var w = 1 + (maxWait > 0 ? 5 * Math.sqrt(l.wait_union_ms / maxWait) : 0);
      var d;
      if (l.kind === 'settled') {
        // Arcs above both ends, so a link along a row does not run through its bubbles.
        var mx = (a._x + b._x) / 2;
        var my = Math.min(a._y - a._r, b._y - b._r) - 30 - Math.min(120, Math.abs(a._x - b._x) * 0.12);
        d = 'M' + a._x + ',' + (a._y - a._r) + ' Q' + mx + ',' + my + ' ' + b._x + ',' + (b._y - b._r);
      } else {
        var my = (a._y + b._y) / 2;
        d = 'M' + a._x + ',' + (a._y + a._r) + ' C' + a._x + ',' + my + ' ' + b._x + ',' + my + ' ' + b._x + ',' + (b._y - b._r);
      }
      var p = el('path', { d: d, 'class': 'link ' + l.kind, 'stroke-width': w }, linkLayer);
      el('title', {}, p).textContent = (l.kind === 'settled' ? 'settled by #' + l.from : 'created from #' + l.from) +
        ': ' + l.resources + ' resources, async wait ' + fmt(l.wait_union_ms) + ' (union)';
      if (l.wait_union_ms > 0 && l.kind === 'created') {
        var t = el('text', { x: (a._x + b._x) / 2 + 4, y: (a._y + a._r + b._y - b._r) / 2, 'class': 'linklabel' }, linkLayer);
        t.textContent = fmt(l.wait_union_ms);
      }
      p._ends = [l.from, l.to];
    });
    var wmax = 0;
    v.bubbles.forEach(function (b) { wmax = Math.max(wmax, weight(b)); });
    v.bubbles.forEach(function (b) {
      var g = el('g', { 'class': 'bubble', 'data-id': b.id, 'data-name': b.name, transform: 'translate(' + b._x + ',' + b._y + ')' }, bubbleLayer);
      var r = b._r;
      if (state.range) r = Math.max(b.marks.length ? 14 : 0, 5 + (wmax > 0 ? Math.sqrt(weight(b) / wmax) * 50 : 0));
      el('circle', { r: r, 'class': 'body', fill: COLORS[b.category] || '#999', 'fill-opacity': b.party === 'user' ? 0.95 : 0.55 }, g);
      if (b.marks.length) {
        el('circle', { r: r + 5, 'class': 'ring' }, g);
        el('circle', { cx: r * 0.75, cy: -r * 0.75, r: 8, fill: '#d93025' }, g);
        var bt = el('text', { x: r * 0.75, y: -r * 0.75 + 4, 'text-anchor': 'middle', 'class': 'badge' }, g);
        bt.textContent = '!';
      }
      var label = el('text', { y: r + 13, 'text-anchor': 'middle' }, g);
      label.textContent = b.name.length > 24 ? '…' + b.name.slice(-23) : b.name;
      var sub = el('text', { y: r + 25, 'text-anchor': 'middle', fill: '#56657a' }, g);
      sub.textContent = fmt(weight(b)) + (b.folded.length ? '  +' + b.folded.length : '');
      el('title', {}, g).textContent = b.name + '\n' + PARTY[b.party] + ', ' + NAMES[b.category] +
        '\nsync ' + fmt(b.sync_ms) + ', wait inside ' + fmt(b.inner_wait_ms);
      var dim = !matches(b) || (state.range && weight(b) === 0);
      if (dim) g.classList.add('dim');
      if (state.selected === b.id) {
        g.classList.add('sel');
        if (state.scroll) {
          state.scroll = false;
          var box = $('graph-box');
          box.scrollLeft = b._x - box.clientWidth / 2;
          box.scrollTop = b._y - box.clientHeight / 2;
        }
      }
      g.addEventListener('click', function () { state.scroll = true; select(b.id); });
    });
    var dimmed = {};
    Array.prototype.forEach.call(bubbleLayer.querySelectorAll('.bubble.dim'), function (g) { dimmed[g.getAttribute('data-id')] = 1; });
    Array.prototype.forEach.call(linkLayer.querySelectorAll('path'), function (p) {
      if (dimmed[p._ends[0]] || dimmed[p._ends[1]]) p.classList.add('dim');
    });
    var shown = v.bubbles.length - Object.keys(dimmed).length;
    $('summary').textContent = v.bubbles.length + ' bubbles' + (shown < v.bubbles.length ? ' (' + shown + ' shown)' : '') +
      ' · ' + fmt(v.sync_ms) + ' in callbacks over ' + fmt(v.end_ms) +
      (v.requests.count ? ' · ' + v.requests.count + ' requests' + (v.requests.unfinished ? ', ' + v.requests.unfinished + ' unfinished' : '') : '');
  }

  function row(t, k, val) {
    var tr = h('tr'); tr.appendChild(h('td', k)); tr.appendChild(h('td', val, 'n')); t.appendChild(tr);
  }
  function select(id) {
    state.selected = id;
    var v = view(), b = null;
    v.bubbles.forEach(function (x) { if (x.id === id) b = x; });
    var d = $('details');
    while (d.firstChild) d.removeChild(d.firstChild);
    if (!b) return draw();
    d.appendChild(h('h2', '#' + b.id + ' ' + b.name));
    d.appendChild(h('div', PARTY[b.party] + ' · ' + NAMES[b.category], 'hint'));
    b.marks.forEach(function (m) { d.appendChild(h('div', '⚠ ' + m.kind + ': ' + m.text, 'mark')); });
    var t = h('table');
    row(t, 'resources', String(b.resources));
    row(t, 'callbacks', String(b.callbacks));
    row(t, 'sync time (union)', fmt(b.sync_ms));
    row(t, 'async wait inside (union)', fmt(b.inner_wait_ms));
    row(t, 'time incl. folded', fmt(b.time_ms));
    if (state.range) row(t, 'in the selected range', fmt(weight(b)));
    row(t, 'first – last', fmt(b.first_ms) + ' – ' + fmt(b.last_ms));
    v.links.forEach(function (l) {
      if (l.to === b.id) row(t, (l.kind === 'settled' ? 'settled by #' : 'waited after #') + l.from, fmt(l.wait_union_ms));
    });
    d.appendChild(t);
    if (b.request_waits) {
      d.appendChild(h('h3', 'HTTP requests waited here'));
      d.appendChild(h('div', b.request_waits.waits + ' waits, ' + fmt(b.request_waits.wait_ms)));
      b.request_waits.causes.forEach(function (c) { d.appendChild(h('div', c[0] + ' ×' + c[1], 'hint')); });
    }
    d.appendChild(h('h3', 'Aggregates (' + b.aggregates.length + ')'));
    b.aggregates.forEach(function (a) {
      var box = h('div', null, 'agg');
      box.appendChild(h('b', a.type + ' '));
      box.appendChild(h('span', a.site || '(no user frame)'));
      box.appendChild(h('div', a.resources + ' resources · ' + a.callbacks + ' callbacks · sync ' + fmt(a.sync_ms) + ' · wait ' + fmt(a.wait_ms), 'hint'));
      if (a.stack.length) box.appendChild(h('div', a.stack.join('\n'), 'stack'));
      d.appendChild(box);
    });
    if (b.folded.length) {
      var btn = h('button', 'Expand ' + b.folded.length + ' folded bubbles');
      var list = h('div'); list.hidden = true;
      btn.addEventListener('click', function () { list.hidden = !list.hidden; });
      b.folded.forEach(function (f) {
        list.appendChild(h('div', '#' + f.id + ' ' + f.name + ' · ' + PARTY[f.party] + ' · ' + f.resources + ' resources · sync ' + fmt(f.sync_ms), 'agg'));
      });
      d.appendChild(btn); d.appendChild(list);
    }
    draw();
  }

  function drawTimeline() {
    var v = view(), svg = $('timeline');
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = svg.clientWidth || 800, H = 60, n = Math.max(v.timeline.length, 1);
    var max = 0;
    v.timeline.forEach(function (x) { max = Math.max(max, x); });
    var bw = W / n;
    v.timeline.forEach(function (x, i) {
      var bh = max > 0 ? (x / max) * (H - 4) : 0;
      el('rect', { x: i * bw, y: H - bh, width: Math.max(bw - 1, 1), height: bh, 'class': 'bar' }, svg);
    });
    if (state.range) {
      el('rect', { x: state.range[0] * bw, y: 0, width: (state.range[1] - state.range[0]) * bw, height: H, 'class': 'sel' }, svg);
      $('range').textContent = fmt(state.range[0] * v.bin_ms) + ' – ' + fmt(state.range[1] * v.bin_ms);
      $('clear').hidden = false;
    } else {
      $('range').textContent = 'drag to filter to a time range (' + fmt(v.bin_ms) + ' per bar)';
      $('clear').hidden = true;
    }
    svg._bw = bw; svg._n = n;
  }
  function setRange(r) {
    state.range = r;
    drawTimeline();
    if (state.selected != null) select(state.selected); else draw();
  }
  (function timelineDrag() {
    var svg = $('timeline'), start = null;
    function bin(e) {
      var rect = svg.getBoundingClientRect();
      return Math.max(0, Math.min(svg._n, Math.floor((e.clientX - rect.left) / svg._bw)));
    }
    svg.addEventListener('mousedown', function (e) { start = bin(e); });
    window.addEventListener('mouseup', function (e) {
      if (start == null) return;
      var end = bin(e), a = Math.min(start, end), b = Math.max(start, end) + 1;
      start = null;
      setRange([a, Math.min(b, svg._n)]);
    });
  })();
  $('clear').addEventListener('click', function () { setRange(null); });
  $('search').addEventListener('input', function (e) { state.search = e.target.value; draw(); });

  // Opens on the busiest user-code bubble (or marked one): what the reader came for.
  function focusBusiest() {
    var best = null;
    view().bubbles.forEach(function (b) {
      var score = (b.marks.length ? 1e12 : 0) + (b.party === 'user' ? 1e9 : 0) + b.time_ms;
      if (!best || score > best.s) best = { s: score, b: b };
    });
    if (!best) return;
    var box = $('graph-box');
    box.scrollLeft = best.b._x - box.clientWidth / 2;
    box.scrollTop = Math.max(0, best.b._y - box.clientHeight / 3);
  }
  // With nothing selected, the details pane lists the problems: marked bubbles first.
  function overview() {
    var d = $('details');
    while (d.firstChild) d.removeChild(d.firstChild);
    var marked = view().bubbles.filter(function (b) { return b.marks.length; });
    d.appendChild(h('h3', marked.length ? 'Marked bubbles (' + marked.length + ')' : 'No leaks, blocking callbacks or unfinished requests found'));
    marked.forEach(function (b) {
      var box = h('div', null, 'agg');
      box.style.cursor = 'pointer';
      box.appendChild(h('b', '#' + b.id + ' ' + b.name));
      b.marks.forEach(function (m) { box.appendChild(h('div', '⚠ ' + m.text, 'mark')); });
      box.addEventListener('click', function () { state.scroll = true; select(b.id); });
      d.appendChild(box);
    });
    d.appendChild(h('p', 'Click a bubble for its aggregates, sites, stacks, counts, times and marks.', 'hint'));
  }
  var sel = $('view');
  DATA.views.forEach(function (v, i) {
    var o = document.createElement('option');
    o.value = i;
    o.textContent = 'process ' + v.pid + (v.thread ? ', worker ' + v.thread : ', main thread') + ' (' + v.bubbles.length + ' bubbles)';
    sel.appendChild(o);
  });
  sel.addEventListener('change', function () {
    state.view = +sel.value; state.range = null; state.selected = null;
    overview();
    drawTimeline(); draw(); focusBusiest();
  });
  var legend = $('legend');
  Object.keys(COLORS).forEach(function (k) {
    var s = h('span'); var i = h('i'); i.style.background = COLORS[k]; s.appendChild(i);
    s.appendChild(document.createTextNode(NAMES[k])); legend.appendChild(s);
  });
  legend.appendChild(h('span', 'solid: user code · faded: node core / node_modules'));
  legend.appendChild(h('span', 'size: time inside · line width: async wait · dashed purple: promise settled by'));
  legend.appendChild(h('span', 'red dashed ring: leak, blocking callback or unfinished request'));
  if (!DATA.views.length) {
    $('summary').textContent = 'the trace has no resources';
    return;
  }
  overview();
  drawTimeline();
  draw();
  focusBusiest();
  window.addEventListener('resize', function () { drawTimeline(); draw(); });
})();
