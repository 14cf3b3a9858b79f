/* Monitoring: the alerts table follows the log — on an `alert` event (GET /api/v1/stream) the page's own
   server-rendered, escaped alerts section is fetched again and swapped in. */
"use strict";
(() => {
  const { live, qs } = ML;
  const params = new URLSearchParams(location.search);
  async function reload() {
    const r = await fetch(location.href, { credentials: "same-origin" });
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const fresh = doc.getElementById("alerts-section"), here = document.getElementById("alerts-section");
    if (fresh && here && fresh.textContent !== here.textContent) here.replaceWith(document.importNode(fresh, true));
  }
  live("/api/v1/stream?" + qs({ model: params.get("model"), deployment: params.get("deployment"), types: "alert" }),
       ["alert"], reload, reload, 3000);
  const s = document.getElementById("live-state");
  if (s) s.textContent = "live: alerts appear as they are raised";
})();
