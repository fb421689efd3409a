/* Live pages: refresh their data in place from the JSON API, without reloading.
 *
 * Every value from the API comes from the monitored hosts and is treated as
 * hostile: it is only ever set with textContent or as an attribute value,
 * never parsed as HTML. The one exception is chart SVG, which the server
 * renders with every label escaped (pygal writes XML text nodes).
 *
 * After each successful refresh, document.body.dataset.refreshed holds the
 * time (ms since the epoch): tests and people can see the page is live.
 */
(function () {
  "use strict";

  var body = document.body;
  var page = body.dataset.page;
  var utcOffset = Number(body.dataset.utcOffset || 0); // the server's zone, as the HTML uses
  var loggedIn = body.dataset.loggedIn === "true";
  var root = body.dataset.root || ""; // where the app is mounted (SCRIPT_NAME behind a proxy)
  var DASH = "–";

  // -- formatting: the same as collector/web/filters.py ---------------------------

  function percent(v) { return v == null ? DASH : v.toFixed(1) + " %"; }
  function decimal(v, digits) { return v == null ? DASH : v.toFixed(digits == null ? 2 : digits); }
  function size(v) {
    if (v == null) return DASH;
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(v) < 1024 || i === units.length - 1) return i === 0 ? v.toFixed(0) + " B" : v.toFixed(1) + " " + units[i];
      v /= 1024;
    }
  }
  function duration(s) {
    if (s == null) return DASH;
    s = Math.floor(s);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function ago(s) { return s == null ? DASH : duration(s) + " ago"; }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(ts) {
    if (ts == null) return DASH;
    var d = new Date((ts + utcOffset) * 1000); // read with getUTC*: the server's wall clock
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }
  function iso(ts) { return ts == null ? "" : new Date(ts * 1000).toISOString().replace(/\.\d+Z$/, "Z"); }

  // -- building elements ------------------------------------------------------------

  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] == null || attrs[k] === false) return;
      if (k === "text") el.textContent = attrs[k];
      else el.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c == null) return;
      el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return el;
  }

  function badge(status) { return h("span", { "class": "status-badge status-" + status, text: status }); }

  function meter(v) {
    if (v == null) return h("span", { "class": "muted", text: DASH });
    var level = v >= 95 ? " meter-critical" : v >= 80 ? " meter-warning" : "";
    var fill = h("span", { "class": "meter-fill" });
    fill.style.width = Math.min(v, 100).toFixed(1) + "%";
    var frag = document.createDocumentFragment();
    frag.appendChild(h("span", { "class": "meter" + level }, [fill]));
    frag.appendChild(h("span", { "class": "meter-text", text: percent(v) }));
    return frag;
  }

  function hostLink(name) { return h("a", { href: root + "/host/" + encodeURIComponent(name), text: name }); }

  function td(attrs, children) { return h("td", attrs, children); }

  function fillBody(section, rows, build) {
    var tbody = section && section.querySelector("tbody");
    if (!tbody) return;
    tbody.replaceChildren.apply(tbody, rows.map(build));
    var empty = section.querySelector(".empty");
    if (empty) empty.hidden = rows.length > 0;
  }

  function alertValue(a) { return a.text; } // '96.2 % ≥ 95 %', written by the server (fleet.alert_text)

  /* An alert's name, linking to its host's page at the moment it started (as _macros.html). */
  function alertLink(a) {
    return h("a", {
      "class": "alert-moment", href: root + "/host/" + encodeURIComponent(a.host) + "?at=" + Math.round(a.started),
      title: "the charts at " + clock(a.started), text: a.title,
    });
  }

  function silenceMark(until) {
    return h("span", { "class": "silence-mark", title: "silenced until " + clock(until) + ": no mail", text: "silenced" });
  }

  function events(a) {
    return h("ol", { "class": "events" }, (a.events || []).map(function (e) {
      return h("li", { "class": "event-" + e.kind }, [
        h("time", { text: clock(e.ts) }), " " + e.kind + " ",
        h("span", { "class": "status-" + e.severity + "-text", text: e.severity }), " " + e.text,
      ]);
    }));
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function unsilenceForm(host, next) {
    return h("form", { method: "post", action: root + "/alerts/unsilence", "class": "inline unsilence-form" }, [
      h("input", { type: "hidden", name: "csrf_token", value: csrfToken() }),
      h("input", { type: "hidden", name: "next", value: next }),
      h("input", { type: "hidden", name: "host", value: host }),
      h("button", { type: "submit", "class": "small", text: "Lift silence" }),
    ]);
  }

  // -- the refresh loop ------------------------------------------------------------

  var banner = document.getElementById("live-status");

  function showProblem(message, link) {
    if (!banner) return;
    banner.replaceChildren(message);
    if (link) banner.append(" ", h("a", { href: link.href, text: link.text }));
    banner.hidden = false;
  }

  function stamp(now) {
    var shown = document.getElementById("refreshed");
    if (shown) {
      var d = new Date(now + utcOffset * 1000);
      shown.textContent = "Updated " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    }
  }

  function refreshed() {
    var now = Date.now();
    body.dataset.refreshed = String(now);
    if (banner) banner.hidden = true;
    stamp(now);
  }

  function getJSON(url) {
    // The API answers `Cache-Control: no-store`, so nothing is cached; the default cache mode keeps
    // the request free of `Cache-Control: no-cache`, which would make the server redraw every chart.
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          var error = new Error("login");
          error.login = true;
          throw error;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      });
  }

  /* Call `apply` with fresh data every `seconds`, one request at a time; returns a function that
   * refreshes at once. The first refresh waits `seconds` too: the server has just rendered the
   * same data into the page (re-rendering 1,000 overview rows at once would only cost time). */
  function poll(url, seconds, apply) {
    var timer = null;
    function tick() {
      clearTimeout(timer);
      getJSON(typeof url === "function" ? url() : url)
        .then(function (data) { apply(data); refreshed(); })
        .catch(function (error) {
          if (error.login) {
            showProblem("Your session has ended.", { href: root + "/login?next=" + encodeURIComponent(location.pathname + location.search), text: "Log in again" });
          } else {
            showProblem("Cannot reach the dashboard (" + error.message + "): showing the last data received, retrying.");
          }
        })
        .then(function () { timer = setTimeout(tick, seconds * 1000); });
    }
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") tick(); // catch up at once after a hidden tab
    });
    timer = setTimeout(tick, seconds * 1000);
    return tick;
  }

  // -- overview ---------------------------------------------------------------------


  /* The overview shows one page of the fleet: the server filters, sorts and cuts it
   * (collector/web/fleet.py Query), so 10,000 hosts cost the browser no more than 100. */
  function overview() {
    var table = document.getElementById("hosts");
    var filter = document.getElementById("filter");
    var query = { q: "", status: {}, sort: "status", desc: false, page: 1 };
    var refresh = null; // refreshes at once (poll)
    var typing = null;

    /* A host's trend line of one metric: an SVG the server drew (collector/web/trends.py), as an image. */
    function trend(r, key) {
      var t = r.trends && r.trends[key];
      if (!t || t.src.indexOf("data:image/svg+xml,") !== 0) return null;
      return h("img", { "class": "trend", src: t.src, alt: t.text, title: t.text, width: "64", height: "18" });
    }

    function cell(r, key, label) {
      var line = trend(r, key);
      return td({ "class": "c-" + key, "data-label": label }, line ? [meter(r[key]), " ", line] : [meter(r[key])]);
    }

    /* Hosts in each state hour by hour over the last day (trends.fleet_strip): a bar per hour. */
    function strip(hours) {
      var list = document.getElementById("fleet-strip");
      if (!list || !hours) return;
      list.replaceChildren.apply(list, hours.map(function (hour) {
        var total = hour.down + hour.critical + hour.warning + hour.ok;
        var parts = ["down", "critical", "warning", "ok"].filter(function (s) { return hour[s] > 0; });
        var text = clock(hour.t).slice(11) + "–" + clock(hour.t + 3600).slice(11) + ": " +
          (parts.length ? parts.map(function (s) { return hour[s] + " " + s; }).join(", ") : "no host");
        var segments = parts.map(function (s) {
          var seg = h("span", { "class": "strip-" + s });
          // A state a few hosts are in stays visible beside thousands of others.
          seg.style.height = (s === "ok" ? 100 * hour[s] / total : Math.max(12, 100 * hour[s] / total)).toFixed(1) + "%";
          return seg;
        });
        return h("li", { title: text, "aria-label": text, "data-hour": String(hour.t) }, segments);
      }));
    }

    function hostRow(r) {
      var name = td({ "class": "c-name", "data-label": "Host" }, [hostLink(r.name)]);
      if (r.alerts) name.append(" ", h("span", { "class": "alert-count", title: "active alerts", text: String(r.alerts) }));
      if (r.failed_units) name.append(" ", h("span", { "class": "failed-units", title: "failed systemd units", text: r.failed_units + " failed" }));
      var status = td({ "class": "c-status", "data-label": "Status" }, [badge(r.status)]);
      if (r.silenced) status.append(" ", silenceMark(r.silenced_until));
      var disk = cell(r, "disk", "Disk");
      if (r.disk_mount != null) disk.insertBefore(h("span", { "class": "mount muted", text: " " + r.disk_mount }), disk.querySelector(".trend"));
      return h("tr", { "data-host": r.name, "data-status": r.status, "data-silenced": r.silenced ? "true" : null }, [
        name,
        status,
        cell(r, "cpu", "CPU"),
        cell(r, "mem", "Memory"),
        disk,
        td({ "class": "c-load num", "data-label": "Load", text: decimal(r.load1) }),
        td({ "class": "c-uptime num hide-narrow", "data-label": "Uptime", text: duration(r.uptime) }),
        td({ "class": "c-seen num", "data-label": "Last seen" }, [
          h("time", { datetime: iso(r.last_seen), title: clock(r.last_seen), text: ago(r.last_seen_ago) }),
        ]),
      ]);
    }

    function url() {
      var params = new URLSearchParams();
      if (query.q) params.set("q", query.q);
      var statuses = Object.keys(query.status);
      if (statuses.length) params.set("status", statuses.join(","));
      if (query.sort !== "status") params.set("sort", query.sort);
      if (query.desc) params.set("desc", "1");
      if (query.page > 1) params.set("page", String(query.page));
      var text = params.toString();
      return body.dataset.api + (text ? "?" + text : "");
    }

    function pager(data) {
      var per = data.query.per, first = (data.query.page - 1) * per;
      var info = document.getElementById("page-info");
      info.textContent = data.matching ? (first + 1) + "–" + Math.min(first + per, data.matching) + " of " + data.matching +
        (data.matching < data.total ? " (of " + data.total + " hosts)" : " hosts") : "";
      document.getElementById("page-prev").disabled = data.query.page <= 1;
      document.getElementById("page-next").disabled = first + per >= data.matching;
      document.getElementById("pager").hidden = data.matching <= per && data.query.page <= 1;
    }

    function apply(data) {
      var asked = data.query;
      if (asked && (asked.q !== query.q || asked.page !== query.page || asked.sort !== query.sort || asked.desc !== query.desc)) {
        return; // the answer to an earlier question, overtaken by a click
      }
      var tbody = table.querySelector("tbody");
      tbody.replaceChildren.apply(tbody, data.hosts.map(hostRow));
      table.querySelectorAll("th[data-sort]").forEach(function (th) {
        if (th.dataset.sort === query.sort) th.setAttribute("aria-sort", query.desc ? "descending" : "ascending");
        else th.removeAttribute("aria-sort");
      });
      document.getElementById("no-match").hidden = !(data.total > 0 && data.matching === 0);
      document.getElementById("no-hosts").hidden = data.total > 0;
      pager(data);
      strip(data.strip);
      Object.keys(data.counts).forEach(function (status) {
        var n = document.querySelector('[data-count="' + status + '"]');
        if (n) n.textContent = String(data.counts[status]);
      });
      var silenced = document.querySelector('#counts [data-count="silenced"]');
      if (silenced) silenced.textContent = String(data.silenced);
      var alertsPanel = document.getElementById("active-alerts");
      var list = alertsPanel.querySelector(".alert-list");
      list.replaceChildren.apply(list, data.alerts.map(function (a) {
        return h("li", { "class": "severity-" + a.severity, "data-alert": String(a.id) }, [
          badge(a.severity), " ", hostLink(a.host), " ", h("span", { "class": "rule" }, [alertLink(a)]), " ",
          h("span", { "class": "alert-text", text: alertValue(a) }), " ",
          h("span", { "class": "muted", text: "· for " + duration(a.duration) }),
        ]);
      }));
      alertsPanel.querySelector(".empty").hidden = data.alerts.length > 0;
      alertsPanel.querySelector('[data-count="alerts"]').textContent = String(data.alerts_total);
      var item = document.querySelector("#certfr .certfr-item");
      var c = data.certfr;
      if (c) {
        var title = c.link ? h("a", { href: c.link, rel: "noopener noreferrer", target: "_blank", text: c.title }) : h("span", { text: c.title });
        item.replaceChildren(title, " ", h("span", { "class": "muted", text: clock(c.published || c.first_seen) }));
      }
    }

    function changed() { // a new question: its first page, at once
      query.page = 1;
      if (refresh) refresh();
    }

    table.querySelectorAll("th[data-sort]").forEach(function (th) {
      th.tabIndex = 0;
      function click() {
        var key = th.dataset.sort;
        if (query.sort === key) query.desc = !query.desc;
        else { query.sort = key; query.desc = th.dataset.type === "number"; }
        changed();
      }
      th.addEventListener("click", click);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); click(); } });
    });
    document.querySelectorAll("#counts button[data-status], #counts button[data-silenced]").forEach(function (button) {
      button.addEventListener("click", function () {
        var status = button.dataset.status || "silenced";
        if (query.status[status]) delete query.status[status];
        else query.status[status] = true;
        button.setAttribute("aria-pressed", query.status[status] ? "true" : "false");
        changed();
      });
    });
    filter.addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(function () { query.q = (filter.value || "").trim().toLowerCase(); changed(); }, 150);
    });
    document.getElementById("page-prev").addEventListener("click", function () { query.page--; if (refresh) refresh(); });
    document.getElementById("page-next").addEventListener("click", function () { query.page++; if (refresh) refresh(); });
    var tbody = table.querySelector("tbody");
    if (tbody.dataset.initial) {
      apply(JSON.parse(tbody.dataset.initial)); // what the server read for this page
      delete tbody.dataset.initial;
    }
    refresh = poll(url, Number(body.dataset.refresh) || 10, apply);
  }

  // -- host page ---------------------------------------------------------------------

  function processRow(p) {
    return h("tr", {}, [
      td({ "class": "num", text: decimal(p.pid, 0) }),
      td({ "class": "proc-name", title: p.cmdline || "", text: p.name || "?" }),
      td({ "class": "hide-narrow", text: p.user || "" }),
      td({ "class": "num", text: percent(p.cpu) }),
      td({ "class": "num", text: percent(p.mem) }),
      td({ "class": "num hide-narrow", text: size(p.rss) }),
    ]);
  }

  function hostPage() {
    function apply(data) {
      var r = data.host;
      document.getElementById("host-status").replaceChildren(badge(r.status));
      var mark = document.getElementById("host-silence");
      if (r.silenced) mark.replaceChildren(silenceMark(r.silenced_until));
      else mark.replaceChildren();
      var seen = document.getElementById("host-seen");
      seen.textContent = ago(r.last_seen_ago);
      seen.setAttribute("datetime", iso(r.last_seen));
      seen.title = clock(r.last_seen);
      document.getElementById("host-uptime").textContent = duration(r.uptime);
      ["cpu", "mem", "swap", "disk"].forEach(function (k) {
        document.querySelector('#summary [data-field="' + k + '"]').replaceChildren(meter(r[k]));
      });
      document.querySelector('#summary [data-field="load"]').textContent =
        decimal(r.load1) + " / " + decimal(r.load5) + " / " + decimal(r.load15);
      var f = data.facts || {};
      var factText = {
        os: f.os || DASH, kernel: f.kernel || DASH, arch: f.arch || DASH, hostname: f.hostname || DASH,
        cpus: decimal(f.cpus, 0), memory_total: size(f.memory_total), swap_total: size(f.swap_total),
        boot_time: clock(f.boot_time),
      };
      Object.keys(factText).forEach(function (k) {
        var dd = document.querySelector('#facts [data-fact="' + k + '"]');
        if (dd) dd.textContent = factText[k];
      });
      fillBody(document.getElementById("filesystems"), data.filesystems, function (fs) {
        return h("tr", {}, [
          td({ text: fs.mount }), td({ "class": "hide-narrow", text: fs.device || "" }),
          td({ "class": "hide-narrow", text: fs.fstype || "" }), td({ "class": "num", text: size(fs.total) }),
          td({}, [meter(fs.percent)]),
        ]);
      });
      fillBody(document.getElementById("top-cpu"), data.processes.top_cpu, processRow);
      fillBody(document.getElementById("top-mem"), data.processes.top_mem, processRow);
      fillBody(document.getElementById("users"), data.users, function (u) {
        return h("tr", {}, [td({ text: u.name || "?" }), td({ text: u.terminal || "" }), td({ text: u.from || "" }), td({ text: clock(u.since) })]);
      });
      fillBody(document.getElementById("host-alerts"), data.alerts, function (a) {
        return h("tr", { "class": a.active ? "active" : "ended", "data-alert": String(a.id) }, [
          td({}, [badge(a.severity)]), td({}, [alertLink(a)]), td({ text: clock(a.started) }),
          td({ "class": "num", text: duration(a.duration) + (a.active ? " (active)" : "") }),
          td({ "class": "num", text: a.peak_text || "" }), td({}, [events(a)]),
        ]);
      });
    }

    function applyCharts(data) {
      Object.keys(data.charts).forEach(function (id) {
        var figure = document.getElementById("chart-" + id);
        if (!figure) return;
        var pick = figure.querySelector(".entity-pick"); // the chart's disk or interface picker stays
        // Server-rendered SVG: pygal escaped every label; scripts inserted this way never run.
        figure.innerHTML = data.charts[id];
        if (pick) figure.appendChild(pick);
        // The tooltip's numbers (pygal-tooltips.js reads them from here): data, never markup.
        figure.dataset.points = JSON.stringify(data.points[id]);
      });
    }

    /* Picking a disk or an interface shows it at once, the rest of the URL (range, zoom) kept:
     * the URL says what the page shows, so a link to it shows the same. */
    document.querySelectorAll("form.entity-pick").forEach(function (form) {
      var select = form.querySelector("select");
      var button = form.querySelector("button");
      if (button) button.hidden = true;
      select.addEventListener("change", function () {
        var query = new URLSearchParams(location.search);
        if (select.value) query.set(form.dataset.param, select.value);
        else query.delete(form.dataset.param);
        var text = query.toString();
        location.assign(location.pathname + (text ? "?" + text : ""));
      });
    });

    poll(body.dataset.api, Number(body.dataset.refresh) || 10, apply);
    if (body.dataset.chartsApi) {
      var every = Number(body.dataset.chartsRefresh) || 60;
      poll(body.dataset.chartsApi, every, applyCharts);
    }
  }

  // -- alerts page ---------------------------------------------------------------------

  function alertsPage() {
    function apply(data) {
      var active = document.getElementById("active-alerts");
      fillBody(active, data.active, function (a) {
        return h("tr", { "data-alert": String(a.id) }, [
          td({}, [badge(a.severity)]), td({}, [hostLink(a.host)]), td({}, [alertLink(a)]),
          td({ "class": "num", text: alertValue(a) }), td({ "class": "num", text: a.peak_text || "" }),
          td({ text: clock(a.started) }), td({ "class": "num", text: duration(a.duration) }),
        ]);
      });
      active.querySelector('[data-count="alerts"]').textContent = String(data.active.length);
      fillBody(document.getElementById("silences"), data.silences, function (s) {
        return h("tr", { "data-host": s.host }, [
          td({}, [hostLink(s.host)]), td({ text: clock(s.until) }), td({ text: s.reason }),
          td({}, [loggedIn ? unsilenceForm(s.host, root + "/alerts") : null]),
        ]);
      });
      fillBody(document.getElementById("alert-history"), data.history, function (a) {
        return h("tr", { "class": a.active ? "active" : "ended" }, [
          td({}, [badge(a.severity)]), td({}, [hostLink(a.host)]), td({}, [alertLink(a)]),
          td({ text: clock(a.started) }), td({ text: a.ended ? clock(a.ended) : "active" }),
          td({ "class": "num", text: duration(a.duration) }), td({ "class": "num", text: a.peak_text || "" }),
        ]);
      });
    }
    poll(body.dataset.api, Number(body.dataset.refresh) || 10, apply);
  }

  // -- error page ----------------------------------------------------------------------

  /* The database could not be read (the dashboard started before the collector created it, or
   * during a restore): try again every few seconds and reload once it can be read. */
  function errorPage() {
    var error = document.getElementById("error");
    if (!error || error.dataset.status !== "503") return;
    var seconds = 5;
    function retry() {
      fetch(root + "/healthz", { credentials: "same-origin" })
        .then(function (response) {
          if (response.ok) location.reload();
          else setTimeout(retry, seconds * 1000);
        })
        .catch(function () { setTimeout(retry, seconds * 1000); });
    }
    setTimeout(retry, seconds * 1000);
  }

  if (page === "overview" || page === "host" || page === "alerts") stamp(Date.now()); // rendered just now
  if (page === "overview") overview();
  else if (page === "host") hostPage();
  else if (page === "alerts") alertsPage();
  else if (page === "error") errorPage();
})();
