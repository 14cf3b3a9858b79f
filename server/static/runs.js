/* The runs table: server-side filter, order and keyset paging (GET /api/v1/runs); a column picker over the
   experiment's param, metric and tag keys; runs selected for comparison. Nothing loads all runs. */
"use strict";
(() => {
  const { el, api, qs, num, when, duration, say, json, selection } = ML;
  const root = document.getElementById("runs-app");
  if (!root) return;
  const experiment = root.dataset.experiment;
  const keys = json("run-keys") || { params: [], metrics: [], tags: [] };
  const url = new URL(location.href);
  const state = {
    filter: url.searchParams.get("filter") || "",
    order: url.searchParams.get("order_by") || "",
    limit: +(url.searchParams.get("limit") || 50),
    cols: url.searchParams.has("cols") ? url.searchParams.get("cols").split("|").filter(Boolean)
      : [...keys.metrics.slice(0, 4).map(k => "metrics." + k), ...keys.params.slice(0, 4).map(k => "params." + k)],
    tokens: [null],  // page tokens: tokens[i] fetches page i
    page: 0,
  };
  const FIXED = [["name", "Name"], ["status", "Status"], ["start_time", "Started"], ["duration_s", "Duration"], ["actor", "Who"]];
  const table = document.getElementById("runs-table");
  const filterInput = document.getElementById("filter");
  const sizeSel = document.getElementById("page-size");
  const compareBtn = document.getElementById("compare-btn");
  filterInput.value = state.filter;
  sizeSel.value = String(state.limit);

  function field(col) {  // a column id -> the filter language's field (keys quoted when needed)
    const dot = col.indexOf(".");
    const [kind, key] = [col.slice(0, dot), col.slice(dot + 1)];
    return /^[A-Za-z0-9_][A-Za-z0-9_.]*$/.test(key) ? `${kind}.${key}` : `${kind}."${key.replace(/"/g, '""')}"`;
  }
  function sortOf(fieldName) {
    const first = (state.order.split(",")[0] || "").trim();
    const m = first.match(/^(.*?)(?:\s+(ASC|DESC))?$/i);
    if (!m || m[1] !== fieldName) return null;
    return (m[2] || "ASC").toUpperCase();
  }
  function syncUrl() {
    const u = new URL(location.href);
    u.search = qs({ filter: state.filter, order_by: state.order, limit: state.limit === 50 ? "" : state.limit,
                    cols: state.cols.join("|") });
    history.replaceState(null, "", u);
  }

  function picker() {
    const box = document.getElementById("column-picker");
    box.replaceChildren();
    for (const kind of ["metrics", "params", "tags"]) {
      const fs = el("fieldset", {}, el("legend", { text: kind }));
      if (!keys[kind].length) fs.append(el("p", { class: "hint", text: "none logged" }));
      for (const k of keys[kind]) {
        const id = `col-${kind}-${k}`;
        const cb = el("input", { type: "checkbox", id, checked: state.cols.includes(`${kind}.${k}`) });
        cb.addEventListener("change", () => {
          const c = `${kind}.${k}`;
          state.cols = cb.checked ? [...state.cols, c] : state.cols.filter(x => x !== c);
          syncUrl(); load();
        });
        fs.append(el("div", { class: "check" }, cb, el("label", { for: id, text: k })));
      }
      box.append(fs);
    }
  }

  function header() {
    const tr = el("tr", {}, el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Select" })));
    const cols = [...FIXED.map(([f, label]) => [f, label]), ...state.cols.map(c => [field(c), c])];
    for (const [f, label] of cols) {
      const dir = sortOf(f);
      const btn = el("button", { type: "button", class: "sort", "data-field": f,
                                 title: `Sort by ${label}` }, label, dir ? (dir === "ASC" ? " ▲" : " ▼") : "");
      btn.addEventListener("click", () => {
        state.order = dir === "DESC" ? `${f} ASC` : (dir === "ASC" ? "" : `${f} DESC`);
        state.tokens = [null]; state.page = 0; syncUrl(); load();
      });
      tr.append(el("th", { scope: "col", "aria-sort": dir ? (dir === "ASC" ? "ascending" : "descending") : null }, btn));
    }
    table.tHead.replaceChildren(tr);
  }

  function cell(run, col) {
    const dot = col.indexOf(".");
    const v = (run[col.slice(0, dot)] || {})[col.slice(dot + 1)];
    return el("td", { class: typeof v === "number" ? "num" : null, text: v === undefined ? "" : num(v) });
  }

  function updateCompare() {
    const n = selection.get().length;
    compareBtn.textContent = `Compare selected (${n})`;
    compareBtn.disabled = n < 2;
  }

  function body(runs) {
    const picked = new Set(selection.get());
    const rows = runs.map(r => {
      const cb = el("input", { type: "checkbox", "aria-label": `Select ${r.name} for comparison`, checked: picked.has(r.run_id) });
      cb.addEventListener("change", () => {
        const ids = selection.get().filter(x => x !== r.run_id);
        if (cb.checked) ids.push(r.run_id);
        selection.set(ids); updateCompare();
      });
      return el("tr", { "data-run-id": r.run_id },
        el("td", {}, cb),
        el("td", {}, el("a", { href: `/runs/${encodeURIComponent(r.run_id)}`, text: r.name })),
        el("td", {}, el("span", { class: `badge ${String(r.status).toLowerCase()}`, text: r.status })),
        el("td", { text: when(r.start_time) }),
        el("td", { class: "num", text: duration(r.duration_s) }),
        el("td", { text: r.actor || "" }),
        state.cols.map(c => cell(r, c)));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6 + state.cols.length, class: "empty", text: "No runs match." })));
    table.tBodies[0].replaceChildren(...rows);
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    header();
    say("Loading…");
    const t0 = performance.now();
    try {
      const out = await api("/api/v1/runs?" + qs({ experiment, filter: state.filter, order_by: state.order,
                                                    limit: state.limit, page_token: state.tokens[state.page] }));
      if (mine !== seq) return;
      body(out.runs);
      state.tokens[state.page + 1] = out.next_page_token;
      document.getElementById("prev-page").disabled = state.page === 0;
      document.getElementById("next-page").disabled = !out.next_page_token;
      document.getElementById("page-no").textContent = `page ${state.page + 1}`;
      table.dataset.rows = String(out.runs.length);
      say(`${out.runs.length} runs on this page · ${Math.round(performance.now() - t0)} ms`);
    } catch (e) {
      if (mine !== seq) return;
      body([]);
      say(e.message, "error");
    }
  }

  document.getElementById("filter-form").addEventListener("submit", ev => {
    ev.preventDefault();
    state.filter = filterInput.value.trim(); state.tokens = [null]; state.page = 0; syncUrl(); load();
  });
  sizeSel.addEventListener("change", () => { state.limit = +sizeSel.value; state.tokens = [null]; state.page = 0; syncUrl(); load(); });
  document.getElementById("next-page").addEventListener("click", () => { state.page++; load(); });
  document.getElementById("prev-page").addEventListener("click", () => { if (state.page) { state.page--; load(); } });
  compareBtn.addEventListener("click", () => {
    location.href = "/compare?" + qs({ run: selection.get() });
  });
  picker(); updateCompare(); load();
})();
