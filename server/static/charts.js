/* Metric charts on uPlot: the server's buckets (min, max, last per bucket) drawn as a min–max band with the
   last value as the line, so spikes survive; smoothing (EMA of the line), log scale, step or time axis, and
   zoom that asks the server for finer buckets over the selected step range. */
"use strict";
const MLCharts = (() => {
  const { el, num } = ML;
  const COLORS = ["#2f5fd0", "#d0442f", "#2a9d5c", "#9b4dca", "#d08a2f", "#1b9aaa", "#c2185b", "#5d6d7e"];
  const MAX_POINTS = 1000;

  function ema(values, alpha) {
    if (!alpha) return values;
    let acc = null;
    return values.map(v => {
      if (v === null || v === undefined || !isFinite(v)) return v;
      acc = acc === null ? v : alpha * acc + (1 - alpha) * v;
      return acc;
    });
  }

  const xOf = (b, mode) => mode === "time" ? Date.parse(b.last_time) / 1000 : b.last_step;

  /* One chart. opts: {key, series: [{id, label}], fetch(params) -> {id: buckets[]}, controls} */
  class Chart {
    constructor(container, opts) {
      this.opts = opts;
      this.state = { x: "step", log: false, smooth: 0, range: null };
      this.buckets = {};
      this.box = el("figure", { class: "chart", "data-key": opts.key, "data-buckets": "0", "data-state": "loading" });
      const cap = el("figcaption", {}, el("h3", { text: opts.key }));
      const uid = "c" + Math.random().toString(36).slice(2, 9);
      const xSel = el("select", { id: uid + "x", "aria-label": `${opts.key}: x axis` },
        el("option", { value: "step", text: "step" }), el("option", { value: "time", text: "time" }));
      xSel.addEventListener("change", () => { this.state.x = xSel.value; this.state.range = null; this.load(); });
      const logCb = el("input", { type: "checkbox", id: uid + "log" });
      logCb.addEventListener("change", () => { this.state.log = logCb.checked; this.draw(true); });
      const smooth = el("input", { type: "range", id: uid + "sm", min: 0, max: 0.99, step: 0.01, value: 0 });
      smooth.addEventListener("input", () => { this.state.smooth = +smooth.value; this.draw(false); });
      this.resetBtn = el("button", { type: "button", class: "small", hidden: true, text: "Reset zoom" });
      this.resetBtn.addEventListener("click", () => { this.state.range = null; this.load(); });
      this.info = el("span", { class: "hint chart-info" });
      cap.append(el("div", { class: "chart-controls" },
        el("label", { for: uid + "x", text: "x" }), xSel,
        el("span", { class: "check" }, logCb, el("label", { for: uid + "log", text: "log y" })),
        el("label", { for: uid + "sm", text: "smoothing" }), smooth, this.resetBtn, this.info));
      this.plotBox = el("div", { class: "plot", role: "img", "aria-label": `Chart of ${opts.key}` });
      this.box.append(cap, this.plotBox);
      container.append(this.box);
      this.plot = null;
    }

    params() {
      const p = { max_points: MAX_POINTS, x: this.state.x };
      if (this.state.range) { p.min_step = this.state.range[0]; p.max_step = this.state.range[1]; }
      return p;
    }

    async load() {
      this.box.dataset.state = "loading";
      try {
        this.buckets = await this.opts.fetch(this.params());
        this.draw(true);
        this.box.dataset.state = "ready";
      } catch (e) {
        this.box.dataset.state = "error";
        this.info.textContent = e.message;
      }
    }

    refresh() { return this.state.range ? Promise.resolve() : this.load(); }  // live: keep a zoomed view as it is

    table() {
      const mode = this.state.x, log = this.state.log;
      const fix = v => (v === null || v === undefined || !isFinite(v) || (log && v <= 0)) ? null : v;
      const tables = [], shape = [];
      for (const s of this.opts.series) {
        const bs = this.buckets[s.id] || [];
        const xs = bs.map(b => xOf(b, mode));
        const bucketed = bs.some(b => b.points > 1);
        const line = ema(bs.map(b => b.value), this.state.smooth).map(fix);
        if (bucketed) {
          tables.push([xs, bs.map(b => fix(b.min_value)), bs.map(b => fix(b.max_value)), line]);
          shape.push({ s, band: true });
        } else {
          tables.push([xs, line]);
          shape.push({ s, band: false });
        }
      }
      if (tables.length === 1) return { data: tables[0], shape };
      return { data: uPlot.join(tables), shape };
    }

    draw(rebuild) {
      const total = this.opts.series.reduce((n, s) => n + (this.buckets[s.id] || []).length, 0);
      const first = this.buckets[this.opts.series[0].id] || [];
      this.box.dataset.buckets = String(first.length);
      this.box.dataset.total = String(total);
      this.box.dataset.lastStep = first.length ? String(first[first.length - 1].last_step) : "";
      this.box.dataset.points = String(first.reduce((n, b) => n + (b.points || 0), 0));
      const pts = first.reduce((n, b) => n + (b.points || 0), 0);
      this.info.textContent = `${first.length} buckets · ${pts} points` + (this.state.range ? ` · steps ${this.state.range[0]}–${this.state.range[1]}` : "");
      this.resetBtn.hidden = !this.state.range;
      const { data, shape } = this.table();
      if (this.plot && !rebuild) { this.plot.setData(data); return; }
      if (this.plot) { this.plot.destroy(); this.plot = null; }
      const series = [{ label: this.state.x }], bands = [];
      let i = 1;
      shape.forEach(({ s, band }, n) => {
        const color = COLORS[n % COLORS.length];
        if (band) {
          series.push({ label: `${s.label} min`, stroke: color + "99", width: 0.75, points: { show: false } });
          series.push({ label: `${s.label} max`, stroke: color + "99", width: 0.75, points: { show: false } });
          bands.push({ series: [i + 1, i], fill: color + "22" });
          i += 2;
        }
        series.push({ label: s.label, stroke: color, width: 1.5, spanGaps: true, points: { size: 4 } });
        i += 1;
      });
      const width = Math.max(300, this.plotBox.clientWidth || 600);
      const self = this;
      this.plot = new uPlot({
        width, height: 220, series, bands,
        scales: { x: { time: this.state.x === "time" }, y: this.state.log ? { distr: 3 } : {} },
        axes: [{}, { values: (u, vals) => vals.map(v => num(v)) }],
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        hooks: {
          setSelect: [u => {
            if (u.select.width < 3) return;
            const lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
            self.zoom(lo, hi);
          }],
        },
      }, data, this.plotBox);
      // the band's min and max series stay out of the legend: one row per run, the band explained once
      const rows = this.plot.root.querySelectorAll(".u-legend .u-series");
      series.forEach((s, k) => { if (k && / (min|max)$/.test(s.label) && rows[k]) rows[k].style.display = "none"; });
      if (bands.length && !this.box.querySelector(".band-note"))
        this.box.append(el("p", { class: "hint band-note", text: "Line: last value per bucket; shaded: min–max per bucket (spikes stay visible)." }));
    }

    zoom(lo, hi) {  // the selected x range -> a step range -> finer buckets from the server
      let a = Infinity, b = -Infinity;
      for (const s of this.opts.series) {
        for (const bk of this.buckets[s.id] || []) {
          const x0 = this.state.x === "time" ? Date.parse(bk.first_time) / 1000 : bk.first_step;
          const x1 = this.state.x === "time" ? Date.parse(bk.last_time) / 1000 : bk.last_step;
          if (x1 >= lo && x0 <= hi) { a = Math.min(a, bk.first_step); b = Math.max(b, bk.last_step); }
        }
      }
      if (this.state.x === "step") { a = Math.max(a, Math.ceil(lo)); b = Math.min(b, Math.floor(hi)); }
      if (!isFinite(a) || !isFinite(b) || a > b) return;
      this.state.range = [a, b];
      this.load();
    }

    resize() { if (this.plot) this.plot.setSize({ width: Math.max(300, this.plotBox.clientWidth), height: 220 }); }
  }

  return { Chart, COLORS, MAX_POINTS };
})();
