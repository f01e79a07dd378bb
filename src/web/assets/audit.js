// Audits the whole ledger in the browser (docs/WEB.md, "Auditing the whole ledger in the
// browser"). It trusts nothing the server says about validity. After the Start button:
//
// 1. the verifier key (the one typed into the page, else the one at /log/key) and the latest
//    signed checkpoint, checked as verify.js does (tlog.js);
// 2. every entry bundle up to the checkpoint's tree size (/log/tile/entries/<N>[.p/<W>],
//    C2SP tlog-tiles): each entry is one event's canonical bytes, without `hash`;
// 3. for each event, the chain rule of docs/FORMAT.md: `seq` is its position, `prev` is the
//    previous event's hash (64 zeros for seq 0), the bytes are RFC 8785 canonical
//    (re-canonicalizing gives the same bytes), and its hash is SHA-256 of those bytes;
// 4. the RFC 9162 root over all the entries, built as they stream past, must be the root
//    the checkpoint signs.
//
// Memory stays small: one bundle (at most 256 events) and O(log n) tree hashes at a time.
// The next bundle is fetched while the current one is checked. The result is "verified" or
// "failed" in <output id="result">, with the first bad seq in its data-seq attribute.
"use strict";
(function () {
  const root = document.getElementById("audit");
  if (!root || !window.Tlog) return;
  const { t, fail, hex, eq, sha256, leafHash, stepper, getBytes, Frontier, parseKey, fetchKey, fetchCheckpoint, canonicalize } = window.Tlog;

  /** Entries per bundle (C2SP tlog-tiles). */
  const BUNDLE_WIDTH = 256;
  /** The largest event, in canonical bytes (docs/FORMAT.md section 2). */
  const EVENT_BYTES_MAX = 8 * 1024;
  /** The largest bundle read: 256 entries of at most EVENT_BYTES_MAX bytes and their lengths. */
  const BUNDLE_BYTES_MAX = BUNDLE_WIDTH * (2 + EVENT_BYTES_MAX);
  const ZERO_HASH = "0".repeat(64);

  const start = document.getElementById("start");
  const pinned = document.getElementById("pinned-key");
  const bar = document.getElementById("audit-progress");
  const status = document.getElementById("audit-status");
  const result = document.getElementById("result");
  const verdict = document.getElementById("verdict");
  const steps = document.getElementById("steps");
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  /** A failure pinned to the first event that breaks a rule. */
  class BadEvent extends Error {
    constructor(seq, reason) {
      super("seq " + seq + t("：", ": ") + reason);
      this.seq = seq;
    }
  }
  const short = (h) => h.slice(0, 16) + "…";

  /** `<N>` of a tile path: groups of three digits, all but the last prefixed with `x`. */
  function tileIndex(n) {
    let s = String(n % 1000).padStart(3, "0");
    for (n = Math.floor(n / 1000); n > 0; n = Math.floor(n / 1000)) {
      s = "x" + String(n % 1000).padStart(3, "0") + "/" + s;
    }
    return s;
  }
  function bundlePath(index, width) {
    return "/log/tile/entries/" + tileIndex(index) + (width < BUNDLE_WIDTH ? ".p/" + width : "");
  }

  /**
   * Splits a bundle into its entries (each a 2-byte big-endian length, then the bytes). A
   * malformed bundle is reported at the first entry it cannot give, after the entries
   * before it have been checked.
   */
  function splitBundle(bytes, width, first) {
    const entries = [];
    let offset = 0;
    while (offset < bytes.length) {
      const seq = first + entries.length;
      if (entries.length === width) {
        return { entries, error: new BadEvent(seq, t("数据包的条目多于 ", "the bundle holds more than ") + width + t(" 个", " entries")) };
      }
      if (offset + 2 > bytes.length) return { entries, error: new BadEvent(seq, t("数据包在长度处被截断", "the bundle is cut short in a length")) };
      const len = (bytes[offset] << 8) | bytes[offset + 1];
      if (offset + 2 + len > bytes.length) return { entries, error: new BadEvent(seq, t("数据包在条目处被截断", "the bundle is cut short in an entry")) };
      entries.push(bytes.subarray(offset + 2, offset + 2 + len));
      offset += 2 + len;
    }
    if (entries.length < width) {
      return { entries, error: new BadEvent(first + entries.length, t("数据包只有 ", "the bundle holds only ") + entries.length + t(" 个条目", " entries")) };
    }
    return { entries, error: null };
  }

  /** The chain rule for the entry at `position`, whose predecessor hashes to `prevHex`. */
  function checkEntry(entry, position, prevHex) {
    const bad = (reason) => { throw new BadEvent(position, reason); };
    if (entry.length > EVENT_BYTES_MAX) {
      bad(t("条目有 ", "the entry is ") + entry.length + t(" 字节，事件最多 ", " bytes; an event is at most ") + EVENT_BYTES_MAX);
    }
    let text, ev;
    try { text = decoder.decode(entry); } catch (_) { bad(t("不是有效的 UTF-8", "not valid UTF-8")); }
    try { ev = JSON.parse(text); } catch (_) { bad(t("不是 JSON", "not JSON")); }
    if (ev === null || typeof ev !== "object" || Array.isArray(ev)) bad(t("不是 JSON 对象", "not a JSON object"));
    if (!Number.isSafeInteger(ev.seq) || ev.seq < 0) bad(t("`seq` 缺失或不是非负整数", "`seq` is missing or not a non-negative integer"));
    if (ev.seq !== position) bad(t("`seq` 是 ", "`seq` is ") + ev.seq + t("，但位置是 ", ", but its position is ") + position);
    if (Object.prototype.hasOwnProperty.call(ev, "hash")) bad(t("条目不应含 `hash` 成员", "an entry has no `hash` member"));
    if (typeof ev.prev !== "string" || !/^[0-9a-f]{64}$/.test(ev.prev)) bad(t("`prev` 缺失或不是 64 位小写十六进制", "`prev` is missing or not 64 lowercase hex digits"));
    let canonical;
    try { canonical = canonicalize(ev); } catch (e) { bad(e.message); }
    if (canonical !== text) bad(t("不是 RFC 8785 规范形式（重新规范化后字节不同）", "not in RFC 8785 canonical form (re-canonicalizing changes the bytes)"));
    if (ev.prev !== prevHex) {
      if (position === 0) bad(t("`prev` 不是 64 个 0", "`prev` is not 64 zeros"));
      bad(t("`prev` " + short(ev.prev) + " 不是 seq " + (position - 1) + " 的哈希 " + short(prevHex) + "（两者之一被改动过）",
        "`prev` " + short(ev.prev) + " is not the hash of seq " + (position - 1) + ", " + short(prevHex) + " (one of the two was altered)"));
    }
  }

  let counting = false; // whether the status line counts events yet
  function show(checked, size) {
    counting = true;
    bar.value = checked;
    status.textContent = t("已检查 " + checked + " / " + size + " 个事件", "checked " + checked + " of " + size + " events");
  }

  async function run(step) {
    const started = performance.now();
    const given = pinned.value.trim();
    const key = given ? await parseKey(given) : await fetchKey();
    step((given ? t("您提供的验证公钥：", "Your verifier key: ") : t("本站 /log/key 的验证公钥：", "This site's verifier key (/log/key): ")) + key.text, true);
    const { size, root: signedRoot } = await fetchCheckpoint(key);
    step(t("检查点签名有效：", "Checkpoint signature valid: ") + t("树大小 ", "tree size ") + size +
      t("，根 ", ", root ") + hex(signedRoot), true);
    bar.max = Math.max(size, 1);
    show(0, size);

    const frontier = new Frontier();
    let prevHex = ZERO_HASH;
    const bundles = Math.ceil(size / BUNDLE_WIDTH);
    const fetchBundle = (index) => {
      const first = index * BUNDLE_WIDTH;
      const width = Math.min(BUNDLE_WIDTH, size - first);
      const fetched = getBytes(bundlePath(index, width), BUNDLE_BYTES_MAX).catch((e) => { throw new BadEvent(first, e.message); });
      fetched.catch(() => {}); // reported when awaited; never an unhandled rejection
      return { first, width, fetched };
    };
    let next = bundles > 0 ? fetchBundle(0) : null;
    for (let index = 0; index < bundles; index++) {
      const { first, width, fetched } = next;
      const bytes = await fetched;
      next = index + 1 < bundles ? fetchBundle(index + 1) : null;
      const { entries, error } = splitBundle(bytes, width, first);
      // Hashing needs no parsing: every digest of the bundle is asked for at once.
      const [hashes, leaves] = await Promise.all([
        Promise.all(entries.map((e) => sha256(e))),
        Promise.all(entries.map((e) => leafHash(e))),
      ]);
      for (let i = 0; i < entries.length; i++) {
        checkEntry(entries[i], first + i, prevHex);
        prevHex = hex(hashes[i]);
      }
      if (error) throw error;
      await frontier.pushLeaves(leaves);
      show(first + width, size);
    }
    step(t("哈希链完整：", "Hash chain intact: ") + size + t(" 个事件，链头 ", " events, chain head ") + prevHex, true);

    const computed = await frontier.root();
    if (!eq(computed, signedRoot)) {
      fail(t("根哈希不符：事件算出 ", "root mismatch: the events give ") + hex(computed) + t("，检查点签名的是 ", ", the checkpoint signs ") + hex(signedRoot));
    }
    step(t("默克尔根与已签名的检查点一致", "Merkle root matches the signed checkpoint"), true);
    return { size, head: prevHex, ms: performance.now() - started };
  }

  function begin() {
    start.disabled = true;
    steps.textContent = "";
    verdict.textContent = "";
    result.className = "";
    for (const k of ["seq", "events", "head", "ms"]) delete result.dataset[k];
    result.textContent = t("审计中…", "auditing…");
    counting = false;
    status.textContent = t("正在取得公钥和检查点…", "fetching the key and the checkpoint…");
    bar.value = 0;
    const step = stepper(steps);
    run(step).then(
      ({ size, head, ms }) => {
        const seconds = (ms / 1000).toFixed(2);
        const rate = ms > 0 ? Math.round(size / (ms / 1000)) : size;
        result.textContent = "verified";
        result.className = "ok";
        result.dataset.events = String(size);
        result.dataset.head = head;
        result.dataset.ms = String(Math.round(ms));
        verdict.textContent = t(
          "已验证：" + size + " 个事件，链头 " + head + "，根与检查点一致（用时 " + seconds + " 秒，每秒 " + rate + " 个事件）",
          "verified: " + size + " events, chain head " + head + ", root matches checkpoint (" + seconds + " s, " + rate + " events/s)");
      },
      (e) => {
        const message = String((e && e.message) || e);
        step(message, false);
        result.textContent = "failed";
        result.className = "bad";
        if (e instanceof BadEvent) result.dataset.seq = String(e.seq);
        if (!counting) status.textContent = t("未能开始检查事件。", "No event was checked.");
        verdict.textContent = t("失败：", "failed: ") + message;
      }
    ).finally(() => { start.disabled = false; });
  }

  start.addEventListener("click", begin);
  start.disabled = false;
})();
