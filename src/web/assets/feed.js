// Live updates of the ledger feed: new public events from the SSE stream are put on top of
// the list, written as the server writes the rows above them (China time, money from whole
// minor units, the page's labels). The page is complete without this script. Only
// textContent is used.
"use strict";
(function () {
  const list = document.getElementById("feed");
  if (!list || !window.EventSource) return;
  const status = document.getElementById("live");
  const zh = document.documentElement.lang !== "en";
  let labels = {};
  try { labels = JSON.parse(list.dataset.types || "{}"); } catch (_) { /* keep raw names */ }
  // From the first seq after the rows the server wrote, so nothing appended in between is
  // missed (without it, the stream starts at the head of the moment it connects).
  const from = /^[0-9]{1,16}$/.test(list.dataset.from || "") ? "?from=" + list.dataset.from : "";
  const src = new EventSource("/api/v1/public/stream" + from);
  src.onopen = () => { if (status) status.textContent = zh ? "实时更新中" : "live"; };
  src.onerror = () => { if (status) status.textContent = zh ? "连接中断，正在重连" : "reconnecting"; };
  // China Standard Time (UTC+8), the platform's zone: "2026-11-29 16:09".
  function chinaTime(ms) {
    return new Date(ms + 8 * 3600 * 1000).toISOString().slice(0, 16).replace("T", " ");
  }
  // Minor units as "¥1,234.56" (CNY) or "1,234.56 USD", from the integer's digits: no float.
  function money(minor, currency) {
    const digits = String(minor).padStart(3, "0");
    const whole = digits.slice(0, -2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const amount = whole + "." + digits.slice(-2);
    return currency === "CNY" ? "¥" + amount : amount + " " + (currency || "");
  }
  function add(msg) {
    let e;
    try { e = JSON.parse(msg.data); } catch (_) { return; }
    const li = document.createElement("li");
    const d = e.data || {};
    let text = "#" + e.seq + " " + chinaTime(e.ts_ms) + " " + (labels[e.type] || e.type);
    if (d.project) text += " · " + d.project;
    if (Number.isSafeInteger(d.amount_minor) && d.amount_minor >= 0) {
      text += " · " + money(d.amount_minor, d.currency);
    }
    li.textContent = text;
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);
  }
  for (const type of Object.keys(labels)) src.addEventListener(type, add);
})();
