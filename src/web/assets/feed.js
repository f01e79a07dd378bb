// Live updates of the ledger feed: new public events from the SSE stream are put on top of
// the list. The page is complete without this script. Only textContent is used.
"use strict";
(function () {
  const list = document.getElementById("feed");
  if (!list || !window.EventSource) return;
  const status = document.getElementById("live");
  const zh = document.documentElement.lang !== "en";
  const src = new EventSource("/api/v1/public/stream");
  const types = ["project_opened", "project_closed", "donation_received", "donation_refunded",
    "pledge_made", "pledge_cancelled", "matching_pool_committed", "matching_pool_closed",
    "match_allocated", "match_released", "payout_requested", "payout_approved", "payout_rejected",
    "payout_disbursed", "move_requested", "move_approved", "move_rejected", "statement_imported",
    "statement_line_recorded", "exception_resolved"];
  src.onopen = () => { if (status) status.textContent = zh ? "实时更新中" : "live"; };
  src.onerror = () => { if (status) status.textContent = zh ? "连接中断，正在重连" : "reconnecting"; };
  function add(msg) {
    let e;
    try { e = JSON.parse(msg.data); } catch (_) { return; }
    const li = document.createElement("li");
    const d = e.data || {};
    let text = "#" + e.seq + " " + new Date(e.ts_ms).toISOString().slice(0, 16).replace("T", " ") + " " + e.type;
    if (d.project) text += " · " + d.project;
    if (typeof d.amount_minor === "number") text += " · " + (d.amount_minor / 100).toFixed(2) + " " + (d.currency || "");
    li.textContent = text;
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);
  }
  for (const ty of types) src.addEventListener(ty, add);
})();
