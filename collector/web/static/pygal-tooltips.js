/* Tooltips and legend toggles for pygal charts inlined in the page.
 *
 * Written for osMonitoring in place of pygal's own pygal-tooltips.js, which pygal
 * links from a CDN (the dashboard must work air-gapped). One listener on the
 * document serves every chart, including charts swapped in by a refresh; the
 * text comes from pygal's <desc class="value"> and is set with textContent.
 * Loaded by the page and referenced by each chart: it installs itself once.
 */
(function () {
  "use strict";
  if (window.osmonTooltips || !document.documentElement || document.documentElement.namespaceURI === "http://www.w3.org/2000/svg") {
    return; // already installed, or loaded by a standalone SVG (no HTML page to show a tooltip in)
  }
  window.osmonTooltips = true;

  var tip = null;

  function tooltip() {
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "chart-tip";
      tip.hidden = true;
      document.body.appendChild(tip);
    }
    return tip;
  }

  function serieLabel(svg, trigger) {
    var serie = trigger.closest("g.series");
    if (!serie) return "";
    var match = /serie-(\d+)/.exec(serie.getAttribute("class") || "");
    if (!match) return "";
    var legend = svg.querySelector("#activate-serie-" + match[1] + " text");
    return legend ? legend.textContent : "";
  }

  function show(trigger, event) {
    var svg = trigger.closest("svg");
    var desc = trigger.parentNode && trigger.parentNode.querySelector("desc.value");
    if (!svg || !desc) return;
    var box = tooltip();
    box.textContent = "";
    var label = serieLabel(svg, trigger);
    if (label) {
      var name = document.createElement("span");
      name.className = "tip-serie";
      name.textContent = label;
      box.appendChild(name);
    }
    box.appendChild(document.createTextNode(desc.textContent));
    box.hidden = false;
    place(event);
  }

  function place(event) {
    if (!tip || tip.hidden) return;
    var x = event.clientX + 12;
    var y = event.clientY - tip.offsetHeight - 8;
    if (x + tip.offsetWidth > window.innerWidth - 4) x = event.clientX - tip.offsetWidth - 12;
    if (y < 4) y = event.clientY + 16;
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  document.addEventListener("mouseover", function (event) {
    var trigger = event.target.closest && event.target.closest("svg.chart .tooltip-trigger");
    if (trigger) show(trigger, event);
    else if (tip) tip.hidden = true;
  });
  document.addEventListener("mousemove", place);
  document.addEventListener("scroll", function () { if (tip) tip.hidden = true; }, true);

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
