/* One audit row's raw event, read back from the log by GET /api/v1/events/{id}, shown as text. */
"use strict";
(() => {
  const pre = document.getElementById("raw-event");
  if (!pre) return;
  ML.api("/api/v1/events/" + encodeURIComponent(pre.dataset.eventId))
    .then(e => { pre.textContent = JSON.stringify(e, null, 2); pre.dataset.state = "ready"; })
    .catch(e => { pre.textContent = "Could not read the event from the log: " + e.message; pre.dataset.state = "error"; });
})();
