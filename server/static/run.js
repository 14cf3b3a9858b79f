/* The run page: GET /api/v1/runs/{id} for the facts, one chart per metric (created when scrolled into view),
   live while the run is RUNNING through GET /api/v1/stream?run_id= (server-sent events). */
"use strict";
(() => {
  const { el, api, qs, num, when, duration, bytes, say, selection, live } = ML;
  const root = document.getElementById("run-app");
  if (!root) return;
  const runId = root.dataset.runId;
  const charts = new Map();   // metric key -> Chart (or null until visible)
  const chartBox = document.getElementById("charts");
  let stop = null;

  const observer = "IntersectionObserver" in window ? new IntersectionObserver(entries => {
    for (const e of entries) if (e.isIntersecting) { observer.unobserve(e.target); e.target._make(); }
  }, { rootMargin: "200px" }) : null;

  function addChart(key) {
    if (charts.has(key)) return;
    const slot = el("div", { class: "chart-slot", "data-key": key });
    chartBox.append(slot);
    charts.set(key, null);
    slot._make = () => {
      const c = new MLCharts.Chart(slot, {
        key, series: [{ id: runId, label: key }],
        fetch: async p => ({ [runId]: (await api(`/api/v1/runs/${encodeURIComponent(runId)}/metrics/${encodeURIComponent(key)}?` + qs(p))).buckets }),
      });
      charts.set(key, c);
      c.load();
    };
    if (observer) observer.observe(slot); else slot._make();
  }

  function facts(dl, pairs) {
    dl.replaceChildren(...pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : String(v))]));
  }

  function rows(tbody, list, make) {
    tbody.replaceChildren(...(list.length ? list.map(make) : [el("tr", {}, el("td", { colspan: 9, class: "empty", text: "none" }))]));
  }

  function link(uri) {
    if (/^https?:\/\//i.test(uri)) return el("a", { href: uri, rel: "noopener noreferrer", download: "", text: uri });
    return el("code", { text: uri || "" });
  }

  function render(r) {
    document.getElementById("run-name").firstChild.textContent = r.name + " ";
    const badge = document.getElementById("run-status");
    badge.textContent = r.status; badge.className = `badge ${String(r.status).toLowerCase()}`;
    root.dataset.status = r.status;
    const env = r.environment || {};
    const git = r.git_commit ? `${r.git_commit.slice(0, 12)}${r.git_branch ? " on " + r.git_branch : ""}${r.git_dirty ? " (dirty)" : ""}` : "";
    facts(document.getElementById("overview"), [
      ["Run id", el("code", { text: r.run_id })], ["Experiment", r.experiment], ["Status", r.status],
      ["Who", r.actor], ["Started", when(r.start_time)], ["Ended", when(r.end_time)],
      ["Duration", r.duration_s !== null && r.duration_s !== undefined ? duration(r.duration_s) : (r.status === "RUNNING" ? "running" : "")],
      ["Git", git], ["Remote", env.git_remote], ["Error", r.error],
    ]);
    facts(document.getElementById("environment"), [
      ["Python", [env.python_implementation, r.python_version].filter(Boolean).join(" ")], ["Platform", r.platform],
      ["Host", r.hostname], ["CPUs", r.cpu_count], ["Memory", r.memory_bytes ? bytes(r.memory_bytes) : ""],
      ["GPUs", Array.isArray(r.gpus) ? r.gpus.join(", ") : r.gpus], ["Command", r.command ? el("code", { text: r.command }) : ""],
      ["Working dir", env.working_dir],
    ]);
    const pk = env.packages ? (Array.isArray(env.packages) ? env.packages.map(p => [p.key, p.value]) : Object.entries(env.packages)) : [];
    pk.sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    document.getElementById("packages-summary").textContent = `Packages (${pk.length})`;
    rows(document.querySelector("#packages tbody"), pk, ([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v })));
    rows(document.querySelector("#params tbody"), r.params, p => el("tr", {}, el("th", { scope: "row", text: p.key }), el("td", { text: p.value })));
    rows(document.querySelector("#tags tbody"), r.tags, t => el("tr", {}, el("th", { scope: "row", text: t.key }), el("td", { text: t.value })));
    const artifactHref = a => `/api/v1/runs/${encodeURIComponent(runId)}/artifacts/` + a.path.split("/").map(encodeURIComponent).join("/");
    rows(document.querySelector("#artifacts tbody"), r.artifacts, a => el("tr", {},
      el("td", {}, a.content_address ? el("a", { href: artifactHref(a), download: a.path.split("/").pop(), title: "Download (checked against its SHA-256)", text: a.path }) : el("span", { title: "Not stored: a reference only", text: a.path })), el("td", { class: "num", text: bytes(a.size_bytes) }), el("td", { text: a.media_type || "" }),
      el("td", {}, el("code", { title: a.sha256 || "", text: (a.sha256 || "").slice(0, 12) })), el("td", {}, link(a.uri))));
    rows(document.querySelector("#datasets tbody"), r.datasets, d => el("tr", {},
      el("td", {}, el("a", { href: "/lineage?" + qs({ node: d.dataset }), text: d.dataset.replace(/^dataset:/, "") })),
      el("td", { text: d.relation }), el("td", { text: d.role || "" })));
    for (const m of r.metrics) addChart(m.key);
    if (!r.metrics.length && !chartBox.querySelector(".empty")) chartBox.append(el("p", { class: "empty", text: "No metrics logged yet." }));
    if (r.metrics.length) { const e = chartBox.querySelector(".empty"); if (e) e.remove(); }
  }

  async function refreshRun() {
    try { const r = await api(`/api/v1/runs/${encodeURIComponent(runId)}`); render(r); return r; }
    catch (e) { say(e.message, "error"); return null; }
  }

  /* Events arrive from the log, maybe before the views have projected them: after a refetch, a chart whose
     last step is still behind the newest step an event announced is fetched again (a few times, backing off). */
  const announced = new Map();  // metric key -> highest step seen in a `metrics` event
  let pending = null, tries = 0;
  function refreshCharts(keys) {  // coalesce bursts of events into one refetch per chart
    if (pending) { (keys || [...charts.keys()]).forEach(k => pending.add(k)); return; }
    pending = new Set(keys || charts.keys());
    setTimeout(async () => {
      const ks = pending; pending = null;
      const r = await refreshRun();
      await Promise.all([...ks].map(k => { const c = charts.get(k); return c ? c.refresh() : null; }));
      const behind = [...ks].filter(k => {
        const c = charts.get(k);
        return c && announced.has(k) && Number(c.box.dataset.lastStep || -1) < announced.get(k);
      });
      if (behind.length && tries < 20) { tries++; setTimeout(() => refreshCharts(behind), 150 * tries); } else tries = 0;
      if (r && r.status !== "RUNNING" && stop) { stop(); stop = null; document.getElementById("live-state").textContent = "run ended"; }
    }, 250);
  }

  function startLive() {
    document.getElementById("live-state").textContent = "live";
    stop = live(`/api/v1/stream?${qs({ run_id: runId })}`, ["metrics", "run"], (type, data) => {
      root.dataset.events = String(+(root.dataset.events || 0) + 1);
      let keys = null;
      if (type === "metrics" && data && Array.isArray(data.points)) {
        keys = [...new Set(data.points.map(p => p.key))];
        for (const p of data.points) announced.set(p.key, Math.max(announced.get(p.key) ?? -Infinity, p.step));
        keys.forEach(addChart);
      }
      refreshCharts(keys);
    }, () => refreshCharts(null), 3000, () => setTimeout(() => refreshCharts(null), 1000));
  }

  document.getElementById("add-compare").addEventListener("click", () => {
    const ids = selection.get().filter(x => x !== runId); ids.push(runId); selection.set(ids);
    say(`${ids.length} runs selected for comparison.`);
    if (ids.length >= 2) document.getElementById("status-line").append(" ", el("a", { href: "/compare?" + qs({ run: ids }), text: "Compare now" }));
  });
  window.addEventListener("resize", () => charts.forEach(c => c && c.resize()));
  refreshRun().then(r => { if (r && r.status === "RUNNING") startLive(); });
})();
