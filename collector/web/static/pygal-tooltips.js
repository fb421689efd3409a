/* Crosshair tooltips and legend toggles for the pygal charts inlined in the page.
 *
 * Written for osMonitoring in place of pygal's own pygal-tooltips.js, which pygal
 * links from a CDN (the dashboard must work air-gapped). The charts have no
 * per-point dots (drawing them cost most of a host page's time): pointing
 * anywhere over a chart shows, for the nearest time bucket, every line's value,
 * with a vertical rule and a dot on each line.
 *
 * The numbers come from the chart's <figure data-points='{...}'> (JSON written by
 * the server, see collector/web/charts.py chart_points): per line, one value per
 * bucket since `start`, null where the host sent nothing. Where to draw comes
 * from the lines pygal drew: the k-th vertex of a line is its k-th non-null
 * value. Every text is set with textContent (labels come from the hosts).
 *
 * One set of listeners on the document serves every chart, including charts
 * swapped in by a refresh. Loaded by the page and referenced by each chart: it
 * installs itself once.
 */
(function () {
  "use strict";
  if (window.osmonTooltips || !document.documentElement || document.documentElement.namespaceURI === "http://www.w3.org/2000/svg") {
    return; // already installed, or loaded by a standalone SVG (no HTML page to show a tooltip in)
  }
  window.osmonTooltips = true;

  var SVG = "http://www.w3.org/2000/svg";
  var tip = null;
  var current = null; // the svg showing a crosshair

  // -- formatting, as collector/web/charts.py does on the axes --------------------------

  function binary(v, suffix) {
    var prefixes = ["", "Ki", "Mi", "Gi"];
    for (var i = 0; i < prefixes.length; i++) {
      if (Math.abs(v) < 1024) return i === 0 ? v.toFixed(0) + " B" + suffix : v.toFixed(1) + " " + prefixes[i] + "B" + suffix;
      v /= 1024;
    }
    return v.toFixed(1) + " TiB" + suffix;
  }
  var FORMAT = {
    "%": function (v) { return v.toFixed(1) + " %"; },
    "B/s": function (v) { return binary(v, "/s"); },
    "B": function (v) { return binary(v, ""); },
    "": function (v) { return v.toFixed(2); },
  };

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(ts) {
    var offset = Number(document.body.dataset.utcOffset || 0); // the server's zone, as the axes use
    var d = new Date((ts + offset) * 1000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }
  function span(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return seconds / 60 + " min";
    return seconds / 3600 + " h";
  }

  // -- what a chart holds ------------------------------------------------------------------

  /* Per line: its label, colour, whether shown, and parallel arrays of bucket index and (x, y). */
  function model(svg) {
    var figure = svg.parentNode;
    var json = figure && figure.dataset ? figure.dataset.points : null;
    if (!json) return null;
    if (svg.osmonModel && svg.osmonModel.json === json) return svg.osmonModel;
    var data;
    try { data = JSON.parse(json); } catch (e) { return null; }
    var lines = data.series.map(function (serie, i) {
      var indexes = [];
      serie.values.forEach(function (v, index) { if (v !== null) indexes.push(index); });
      var xs = [], ys = [];
      svg.querySelectorAll("g.serie-" + i + " path.line").forEach(function (path) {
        var numbers = (path.getAttribute("d") || "").match(/-?[\d.]+(e-?\d+)?/g) || [];
        for (var k = 0; k + 1 < numbers.length; k += 2) { xs.push(Number(numbers[k])); ys.push(Number(numbers[k + 1])); }
      });
      var legend = svg.querySelector("#activate-serie-" + i + " rect");
      return {
        label: serie.label, values: serie.values, indexes: indexes, xs: xs, ys: ys,
        // Drawn by pygal from these very values: if the counts differ, pointing would lie.
        usable: xs.length === indexes.length,
        colour: legend ? getComputedStyle(legend).fill : "currentColor",
        group: svg.querySelector("g.serie-" + i),
      };
    });
    svg.osmonModel = { json: json, data: data, lines: lines, plot: svg.querySelector("g.plot") };
    return svg.osmonModel;
  }

  /* Index of the value in sorted `xs` nearest to x. */
  function nearest(xs, x) {
    var lo = 0, hi = xs.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo > 0 && Math.abs(xs[lo - 1] - x) <= Math.abs(xs[lo] - x) ? lo - 1 : lo;
  }

  function shown(line) { return line.usable && line.xs.length && (!line.group || line.group.style.display !== "none"); }

  // -- drawing -------------------------------------------------------------------------------

  function tooltip() {
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "chart-tip";
      tip.hidden = true;
      document.body.appendChild(tip);
    }
    return tip;
  }

  function clear() {
    if (current) document.querySelectorAll("svg.chart .crosshair").forEach(function (el) { el.remove(); });
    current = null;
    if (tip) tip.hidden = true;
  }

  // -- time on a plot: x = 0 at data-t0, x = data-w at data-t1 (collector/web/charts.py _timeline) --

  function timeline(svg) {
    var plot = svg.querySelector("g.plot[data-t0]");
    if (!plot) return null;
    var t0 = Number(plot.dataset.t0), t1 = Number(plot.dataset.t1), w = Number(plot.dataset.w);
    if (!(t1 > t0) || !(w > 0)) return null;
    return {
      plot: plot, w: w,
      x: function (t) { return w * (t - t0) / (t1 - t0); },
      t: function (x) { return t0 + (t1 - t0) * x / w; },
    };
  }

  function plotX(svg, plot, event) {
    var ctm = plot.getScreenCTM();
    if (!ctm) return null;
    var point = svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    return point.matrixTransform(ctm.inverse()).x;
  }

  /* The same instant marked on every other chart of the page: one crosshair for the page. */
  function shareCrosshair(svg, t) {
    document.querySelectorAll("figure[data-points] svg.chart").forEach(function (other) {
      if (other === svg) return;
      var line = timeline(other);
      if (!line) return;
      var x = line.x(t);
      if (x < 0 || x > line.w) return;
      var background = line.plot.querySelector("rect.background");
      var height = background ? Number(background.getAttribute("height")) : 0;
      var marks = svgNode("g", { "class": "crosshair shared" });
      marks.appendChild(svgNode("line", { x1: x, x2: x, y1: 0, y2: height }));
      line.plot.appendChild(marks);
    });
  }

  function svgNode(tag, attrs) {
    var el = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  function show(svg, event) {
    var m = model(svg);
    if (!m || !m.plot) return clear();
    var lines = m.lines.filter(shown);
    if (!lines.length) return clear();
    var ctm = m.plot.getScreenCTM();
    if (!ctm) return clear();
    var point = svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    var x = point.matrixTransform(ctm.inverse()).x;

    // The bucket nearest the pointer, over every line shown.
    var best = null;
    lines.forEach(function (line) {
      var k = nearest(line.xs, x);
      var distance = Math.abs(line.xs[k] - x);
      if (!best || distance < best.distance) best = { distance: distance, x: line.xs[k], index: line.indexes[k] };
    });

    clear();
    current = svg;
    var background = m.plot.querySelector("rect.background");
    var height = background ? Number(background.getAttribute("height")) : 0;
    var marks = svgNode("g", { "class": "crosshair" });
    marks.appendChild(svgNode("line", { x1: best.x, x2: best.x, y1: 0, y2: height }));

    var box = tooltip();
    box.replaceChildren();
    var head = document.createElement("div");
    head.className = "tip-time";
    head.textContent = clock(m.data.start + best.index * m.data.width) + " · max of " + span(m.data.width);
    box.appendChild(head);
    var format = FORMAT[m.data.unit] || FORMAT[""];
    var rows = document.createElement("table");
    lines.forEach(function (line) {
      var value = line.values[best.index];
      var row = document.createElement("tr");
      var swatch = document.createElement("span");
      swatch.className = "tip-swatch";
      swatch.style.background = line.colour;
      var name = document.createElement("td");
      name.append(swatch, line.label);
      var number = document.createElement("td");
      number.className = "tip-value";
      number.textContent = value == null ? "–" : format(value);
      row.append(name, number);
      rows.appendChild(row);
      if (value != null) {
        var k = nearest(line.xs, best.x);
        if (line.indexes[k] === best.index) {
          marks.appendChild(svgNode("circle", { cx: line.xs[k], cy: line.ys[k], r: 3.5, fill: line.colour }));
        }
      }
    });
    box.appendChild(rows);
    m.plot.appendChild(marks);
    shareCrosshair(svg, m.data.start + best.index * m.data.width);
    box.hidden = false;
    place(event);
  }

  function place(event) {
    if (!tip || tip.hidden) return;
    var x = event.clientX + 14;
    var y = event.clientY - tip.offsetHeight / 2;
    if (event.pointerType === "touch") {
      // Above the finger, which would hide it (and the rule it points at) anywhere else.
      x = event.clientX - tip.offsetWidth / 2;
      y = event.clientY - tip.offsetHeight - 40;
      if (y < 4) y = event.clientY + 40;
    } else if (x + tip.offsetWidth > window.innerWidth - 4) {
      x = event.clientX - tip.offsetWidth - 14;
    }
    x = Math.max(4, Math.min(x, window.innerWidth - tip.offsetWidth - 4));
    y = Math.max(4, Math.min(y, window.innerHeight - tip.offsetHeight - 4));
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  function pointed(event) {
    var svg = event.target.closest && event.target.closest("figure[data-points] svg.chart");
    if (svg && !(event.target.closest(".legend") || event.target.closest(".activate-serie"))) show(svg, event);
    else if (current) clear();
  }

  // -- zoom: drag across a chart with a mouse to show that span (a link: the URL holds it) ----------

  var drag = null; // {svg, line, x0, rect}

  document.addEventListener("pointerdown", function (event) {
    if (event.pointerType !== "mouse" || event.button !== 0) return;
    var svg = event.target.closest && event.target.closest("figure[data-points] svg.chart");
    if (!svg || event.target.closest(".legend") || event.target.closest(".activate-serie") || event.target.closest("a")) return;
    var line = timeline(svg);
    var x = line && plotX(svg, line.plot, event);
    if (x == null || x < 0 || x > line.w) return;
    var background = line.plot.querySelector("rect.background");
    var rect = svgNode("rect", { "class": "selection", x: x, y: 0, width: 0, height: background ? background.getAttribute("height") : 0 });
    line.plot.appendChild(rect);
    drag = { svg: svg, line: line, x0: x, rect: rect };
    event.preventDefault(); // no text selection
  });

  document.addEventListener("pointermove", function (event) {
    if (!drag) return;
    var x = Math.max(0, Math.min(drag.line.w, plotX(drag.svg, drag.line.plot, event)));
    drag.rect.setAttribute("x", Math.min(x, drag.x0));
    drag.rect.setAttribute("width", Math.abs(x - drag.x0));
  });

  document.addEventListener("pointerup", function (event) {
    if (!drag) return;
    var done = drag;
    drag = null;
    var x = Math.max(0, Math.min(done.line.w, plotX(done.svg, done.line.plot, event)));
    done.rect.remove();
    if (Math.abs(x - done.x0) < 6) return; // a click, not a span
    var from = Math.round(done.line.t(Math.min(x, done.x0))), to = Math.round(done.line.t(Math.max(x, done.x0)));
    if (to - from < 300) { var middle = (from + to) / 2; from = Math.round(middle - 150); to = from + 300; } // 5 min at least
    var query = new URLSearchParams(location.search);
    ["range", "at", "from", "to"].forEach(function (k) { query.delete(k); });
    query.set("from", String(from));
    query.set("to", String(to));
    location.assign(location.pathname + "?" + query.toString());
  });

  // Mouse moves, and a finger's tap or drag on a phone.
  document.addEventListener("pointermove", pointed);
  document.addEventListener("pointerdown", pointed);
  document.addEventListener("scroll", clear, true);

  // A click on a legend entry hides or shows its line, as pygal's script does.
  document.addEventListener("click", function (event) {
    var legend = event.target.closest && event.target.closest("svg.chart .activate-serie");
    if (!legend) return;
    var index = legend.id.replace("activate-serie-", "");
    var svg = legend.closest("svg");
    var hidden = legend.classList.toggle("off");
    legend.style.opacity = hidden ? "0.4" : "";
    svg.querySelectorAll(".serie-" + index).forEach(function (g) {
      g.style.display = hidden ? "none" : "";
    });
  });
})();
