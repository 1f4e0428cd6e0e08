/* poolvisor dashboard: draws every <figure data-chart> with uPlot from the JSON inside it. */
(function () {
  "use strict";
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

  function fmt(unit) {
    return function (u, v) {
      if (v == null) return "–";
      if (unit === "%") return (100 * v).toFixed(1) + "%";
      return (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3)) + (unit ? " " + unit : "");
    };
  }

  function draw(fig) {
    var spec = JSON.parse(fig.querySelector("script[type='application/json']").textContent);
    var target = fig.querySelector(".plot");
    if (!spec.x.length || !spec.series.length) {
      target.textContent = "no data yet";
      target.className = "plot empty";
      return;
    }
    var data = [spec.x];
    var series = [{}];
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      var one = { label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, value: fmt(spec.unit) };
      if (spec.stepped) one.paths = uPlot.paths.stepped({ align: 1 });
      series.push(one);
    });
    var width = Math.max(320, Math.min(target.clientWidth || 900, 1100));
    var yscale = {};
    if (spec.ymax != null) {  // a fraction: from 0 to a little above the highest value, at most ymax
      var top = 0;
      spec.series.forEach(function (s) { s.values.forEach(function (v) { if (v > top) top = v; }); });
      yscale = { range: [0, Math.min(spec.ymax, Math.max(0.05, top * 1.25))] };
    }
    var opts = {
      width: width, height: 240, series: series,
      scales: { x: { time: true }, y: yscale },
      axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return fmt(spec.unit)(u, v); }); }, size: 70 }]
    };
    new uPlot(opts, data, target);
    fig.setAttribute("data-drawn", "1");
  }

  function drawAll(root) {
    (root || document).querySelectorAll("figure[data-chart]:not([data-drawn])").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.target); });
})();
