/* Compare runs: a param and metric table that marks what differs, N runs overlaid per metric
   (GET /api/v1/metrics?key=&run_id=…), params against a metric as parallel coordinates or a scatter (SVG). */
"use strict";
(() => {
  const { el, api, qs, num, say, json, selection } = ML;
  const root = document.getElementById("compare-app");
  if (!root) return;
  const base = json("compare-runs");
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, ...kids) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, String(v));
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const color = i => MLCharts.COLORS[i % MLCharts.COLORS.length];
  let runs = [];

  function table() {
    const head = el("tr", {}, el("th", { scope: "col", text: "" }),
      runs.map((r, i) => el("th", { scope: "col" }, el("span", { class: "swatch", style: `background:${color(i)}` }),
        el("a", { href: `/runs/${encodeURIComponent(r.run_id)}`, text: r.name }))));
    document.querySelector("#compare-table thead").replaceChildren(head);
    const rows = [];
    const section = (label, kind, get) => {
      const keys = [...new Set(runs.flatMap(r => get(r).map(x => x.key)))].sort();
      if (!keys.length) return;
      rows.push(el("tr", { class: "section" }, el("th", { scope: "rowgroup", colspan: runs.length + 1, text: label })));
      for (const k of keys) {
        const vals = runs.map(r => { const x = get(r).find(p => p.key === k); return x ? x.value : undefined; });
        const differs = new Set(vals.map(v => v === undefined ? "\u0000none" : String(v))).size > 1;
        rows.push(el("tr", { class: differs ? "diff" : "same", "data-kind": kind, "data-key": k },
          el("th", { scope: "row" }, k, differs ? el("span", { class: "diff-mark", title: "values differ", text: " ≠" }) : ""),
          vals.map(v => el("td", { text: v === undefined ? "—" : num(v) }))));
      }
    };
    section("Attributes", "attr", r => [{ key: "status", value: r.status }, { key: "experiment", value: r.experiment },
      { key: "who", value: r.actor }, { key: "duration_s", value: r.duration_s }, { key: "git", value: r.git_commit }]);
    section("Params", "param", r => r.params);
    section("Metrics (latest)", "metric", r => r.metrics);
    section("Tags", "tag", r => r.tags);
    document.querySelector("#compare-table tbody").replaceChildren(...rows);
    applyDiff();
  }

  function applyDiff() {
    const only = document.getElementById("only-diff").checked;
    document.querySelectorAll("#compare-table tr.same").forEach(tr => { tr.hidden = only; });
  }

  const numeric = v => v !== null && v !== undefined && v !== "" && isFinite(Number(v));
  function paramValue(r, k) { const p = r.params.find(x => x.key === k); return p ? p.value : undefined; }
  function metricValue(r, k) { const m = r.metrics.find(x => x.key === k); return m ? m.value : undefined; }

  function axisScale(values) {  // numeric: linear; otherwise categories spread evenly
    if (values.every(v => v === undefined || numeric(v))) {
      const ns = values.filter(numeric).map(Number);
      let lo = Math.min(...ns), hi = Math.max(...ns);
      if (!ns.length) { lo = 0; hi = 1; }
      if (lo === hi) { lo -= 1; hi += 1; }
      return { at: v => numeric(v) ? (Number(v) - lo) / (hi - lo) : null, ticks: [[0, num(lo)], [1, num(hi)]] };
    }
    const cats = [...new Set(values.filter(v => v !== undefined).map(String))].sort();
    const at = v => v === undefined ? null : (cats.length === 1 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1));
    return { at, ticks: cats.map(c => [at(c), c]) };
  }

  function explore() {
    const box = document.getElementById("explore");
    const metric = document.getElementById("pc-metric").value;
    const view = document.getElementById("pc-view").value;
    const params = [...new Set(runs.flatMap(r => r.params.map(p => p.key)))].sort();
    const W = Math.max(480, box.clientWidth || 800), H = 300, pad = { l: 60, r: 60, t: 24, b: 36 };
    const out = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", class: "explore-svg" });
    if (!metric) { box.replaceChildren(el("p", { class: "empty", text: "No metrics to compare." })); return; }
    const ys = runs.map(r => metricValue(r, metric));
    const ysc = axisScale(ys);
    const Y = f => f === null ? null : pad.t + (1 - f) * (H - pad.t - pad.b);
    if (view === "scatter") {
      const param = document.getElementById("pc-param").value;
      const xs = runs.map(r => paramValue(r, param));
      const xsc = axisScale(xs);
      const X = f => f === null ? null : pad.l + f * (W - pad.l - pad.r);
      out.setAttribute("aria-label", `Scatter of ${metric} against ${param}`);
      out.append(svg("line", { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: "axis" }),
                 svg("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: "axis" }),
                 svg("text", { x: W / 2, y: H - 6, "text-anchor": "middle", class: "axis-label" }, `params.${param}`),
                 svg("text", { x: 8, y: 14, class: "axis-label" }, `metrics.${metric}`));
      for (const [f, t] of xsc.ticks) out.append(svg("text", { x: X(f), y: H - pad.b + 14, "text-anchor": "middle", class: "tick" }, t));
      for (const [f, t] of ysc.ticks) out.append(svg("text", { x: pad.l - 4, y: Y(f), "text-anchor": "end", class: "tick" }, t));
      runs.forEach((r, i) => {
        const x = X(xsc.at(xs[i])), y = Y(ysc.at(ys[i]));
        if (x === null || y === null) return;
        out.append(svg("circle", { cx: x, cy: y, r: 6, fill: color(i), class: "dot" }, svg("title", {}, `${r.name}: ${param}=${xs[i]}, ${metric}=${num(ys[i])}`)));
      });
    } else {
      const axes = [...params.map(k => ({ label: k, vals: runs.map(r => paramValue(r, k)) })), { label: metric, vals: ys, metric: true }];
      const step = axes.length > 1 ? (W - pad.l - pad.r) / (axes.length - 1) : 0;
      out.setAttribute("aria-label", `Parallel coordinates of ${params.length} params and ${metric}`);
      const scales = axes.map(a => axisScale(a.vals));
      axes.forEach((a, j) => {
        const x = pad.l + j * step;
        out.append(svg("line", { x1: x, y1: pad.t, x2: x, y2: H - pad.b, class: "axis" }),
                   svg("text", { x, y: H - pad.b + 16, "text-anchor": "middle", class: a.metric ? "axis-label metric" : "axis-label" }, a.label));
        for (const [f, t] of scales[j].ticks.slice(0, 8)) out.append(svg("text", { x: x + 4, y: Y(f) + 3, class: "tick" }, t));
      });
      runs.forEach((r, i) => {
        const pts = axes.map((a, j) => [pad.l + j * step, Y(scales[j].at(a.vals[i]))]).filter(p => p[1] !== null);
        if (pts.length < 2) return;
        out.append(svg("polyline", { points: pts.map(p => p.join(",")).join(" "), stroke: color(i), class: "pc-line" }, svg("title", {}, r.name)));
      });
    }
    box.replaceChildren(out);
  }

  function selects() {
    const metrics = [...new Set(runs.flatMap(r => r.metrics.map(m => m.key)))].sort();
    const params = [...new Set(runs.flatMap(r => r.params.map(p => p.key)))].sort();
    document.getElementById("pc-metric").replaceChildren(...metrics.map(k => el("option", { value: k, text: k })));
    document.getElementById("pc-param").replaceChildren(...params.map(k => el("option", { value: k, text: k })));
    return metrics;
  }

  function overlays(metrics) {
    const box = document.getElementById("charts");
    box.replaceChildren();
    const ids = runs.map(r => r.run_id);
    for (const key of metrics) {
      const c = new MLCharts.Chart(box, {
        key, series: runs.map(r => ({ id: r.run_id, label: r.name })),
        fetch: async p => (await api("/api/v1/metrics?" + qs({ key, run_id: ids, ...p }))).series,
      });
      c.load();
    }
  }

  async function main() {
    say("Loading runs…");
    const got = await Promise.all(base.map(b => api(`/api/v1/runs/${encodeURIComponent(b.run_id)}`).catch(e => null)));
    runs = got.filter(Boolean);
    table();
    const metrics = selects();
    explore();
    overlays(metrics);
    say(`${runs.length} runs · ${metrics.length} metrics`);
  }
  document.getElementById("only-diff").addEventListener("change", applyDiff);
  ["pc-view", "pc-metric", "pc-param"].forEach(id => document.getElementById(id).addEventListener("change", explore));
  document.getElementById("clear-selection").addEventListener("click", () => { selection.set([]); say("Selection cleared."); });
  main().catch(e => say(e.message, "error"));
})();
