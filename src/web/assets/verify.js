// In-browser verification of one receipt (docs/WEB.md, "Verification in the browser").
// It trusts nothing the server says about validity: it fetches the verifier key, the latest
// signed checkpoint, the receipt's event and an inclusion proof, and checks them here with
// WebCrypto (SHA-256, Ed25519) following docs/FORMAT-merkle.md.
//
// Test hook: with `tamper=1` in the page's query the script flips one byte of the fetched
// proof before checking it. It can only turn a good proof into a bad one: a tampered proof
// never verifies, so the hook cannot make a bad proof pass. The browser tests use it.
"use strict";
(function () {
  const root = document.getElementById("verify");
  if (!root) return;
  const code = root.dataset.code;
  const zh = document.documentElement.lang !== "en";
  const t = (z, e) => (zh ? z : e);
  const tamper = new URLSearchParams(location.search).get("tamper") === "1";
  const steps = document.getElementById("steps");
  const result = document.getElementById("result");
  const enc = new TextEncoder();

  function step(text, ok) {
    const li = document.createElement("li");
    const mark = document.createElement("span");
    mark.className = ok ? "ok" : "bad";
    mark.textContent = ok ? "✓ " : "✗ ";
    li.appendChild(mark);
    li.appendChild(document.createTextNode(text));
    steps.appendChild(li);
  }
  function fail(text) {
    throw new Error(text);
  }
  const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
  function unhex(s) {
    if (!/^([0-9a-f]{2})*$/.test(s)) fail("not hex: " + s);
    const out = new Uint8Array(s.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
    return out;
  }
  function unb64(s) {
    const bin = atob(s);
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
  function concat(...parts) {
    const n = parts.reduce((a, p) => a + p.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const leafHash = (d) => sha256(concat(new Uint8Array([0]), d));
  const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

  async function get(path, kind) {
    const resp = await fetch(path, { cache: "no-store" });
    if (!resp.ok) fail(t("获取失败 ", "fetch failed ") + path + " (" + resp.status + ")");
    return kind === "json" ? resp.json() : resp.text();
  }

  // RFC 9162 section 2.1.3.2, as docs/FORMAT-merkle.md section 2 spells it.
  async function verifyInclusion(leaf, m, n, proof, expectedRoot) {
    if (m >= n) fail("leaf index " + m + " >= tree size " + n);
    let fn = m, sn = n - 1, r = leaf;
    for (const p of proof) {
      if (sn === 0) fail(t("证明过长", "proof too long"));
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    if (sn !== 0) fail(t("证明过短", "proof too short"));
    if (!eq(r, expectedRoot)) fail(t("根哈希不符：计算得 ", "root mismatch: computed ") + hex(r));
  }

  async function run() {
    // 1. The verifier key: <name>+<key id>+base64(0x01 || 32-byte key).
    const keyText = (await get("/log/key", "text")).trim();
    // The name has no '+', the key id is 8 hex digits; the base64 may itself contain '+'.
    const first = keyText.indexOf("+");
    const second = keyText.indexOf("+", first + 1);
    if (first <= 0 || second !== first + 9) fail("malformed verifier key");
    const name = keyText.slice(0, first);
    const keyId = keyText.slice(first + 1, second);
    const keyB64 = keyText.slice(second + 1);
    const keyBytes = unb64(keyB64);
    if (keyBytes.length !== 33 || keyBytes[0] !== 1) fail("not an Ed25519 verifier key");
    const pub = keyBytes.slice(1);
    const idHash = await sha256(concat(enc.encode(name), new Uint8Array([0x0a, 0x01]), pub));
    if (hex(idHash.slice(0, 4)) !== keyId) fail("key id does not match the key");
    const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    step(t("验证公钥：", "Verifier key: ") + name + " (" + keyId + ")", true);

    // 2. The latest checkpoint: a signed note; the signature covers the text up to the blank line.
    const note = await get("/log/checkpoint", "text");
    const split = note.lastIndexOf("\n\n");
    if (split < 0 || !note.endsWith("\n")) fail("malformed checkpoint note");
    const text = note.slice(0, split + 1);
    const sigLines = note.slice(split + 2).split("\n").filter((l) => l.length > 0);
    let signed = false;
    for (const line of sigLines) {
      const prefix = "\u2014 " + name + " ";
      if (!line.startsWith(prefix)) continue;
      const sig = unb64(line.slice(prefix.length));
      if (sig.length !== 68 || hex(sig.slice(0, 4)) !== keyId) continue;
      if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, sig.slice(4), enc.encode(text)))) {
        fail(t("检查点签名无效", "the checkpoint's signature does not verify"));
      }
      signed = true;
    }
    if (!signed) fail(t("检查点没有该公钥的签名", "the checkpoint carries no signature by the key"));
    const lines = text.split("\n");
    if (lines[0] !== name) fail("checkpoint origin " + lines[0] + " is not the key's name");
    if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) fail("malformed tree size");
    const size = Number(lines[1]);
    const rootHash = unb64(lines[2]);
    if (rootHash.length !== 32) fail("malformed root hash");
    step(t("检查点签名有效：", "Checkpoint signature valid: ") + t("树大小 ", "tree size ") + size +
      t("，根 ", ", root ") + hex(rootHash), true);

    // 3. The donation's event: its bytes hash to the event hash and carry this receipt code.
    const bundle = await get("/api/v1/public/receipts/" + encodeURIComponent(code) + "/proof", "json");
    const eventBytes = enc.encode(bundle.event);
    const eventHash = hex(await sha256(eventBytes));
    if (eventHash !== bundle.event_hash) fail("the event hashes to " + eventHash);
    const ev = JSON.parse(bundle.event);
    if (ev.type !== "donation_received" || ev.data.receipt_code !== code || ev.seq !== bundle.seq) {
      fail(t("事件与收据码不符", "the event is not this receipt's donation"));
    }
    step(t("捐赠事件 #", "Donation event #") + ev.seq + t("，哈希 ", ", hash ") + eventHash + " (" +
      ev.data.amount_minor + " " + ev.data.currency + " → " + ev.data.project + ")", true);

    // 4. The inclusion proof at the checkpoint's size, computed and compared here.
    if (ev.seq >= size) fail(t("该捐赠尚未被检查点覆盖，请稍后再试", "the donation is not covered by a checkpoint yet; try again in a minute"));
    const proof = await get("/api/v1/public/proofs/inclusion?seq=" + ev.seq + "&tree_size=" + size, "json");
    const hashes = proof.hashes.map(unhex);
    let leafInput = eventBytes;
    if (tamper) {
      // Test hook (see the top of this file): corrupt one byte of what was fetched.
      if (hashes.length > 0) hashes[0][0] ^= 1;
      else leafInput = concat(eventBytes, new Uint8Array([0x20]));
      step(t("测试：已篡改证明中的一个字节", "Test: one byte of the proof was tampered with"), true);
    }
    await verifyInclusion(await leafHash(leafInput), ev.seq, size, hashes, rootHash);
    step(t("包含证明有效：", "Inclusion proof valid: ") + hashes.length + t(" 个哈希通向已签名的根", " hashes lead to the signed root"), true);
  }

  result.textContent = t("验证中…", "verifying…");
  run().then(
    () => { result.textContent = "verified"; result.className = "ok";
      document.getElementById("verdict").textContent = t("已在您的浏览器中验证：这笔捐赠记录在已签名的账本中。", "Verified in your browser: this donation is in the signed ledger."); },
    (e) => { step(String(e.message || e), false); result.textContent = "failed"; result.className = "bad";
      document.getElementById("verdict").textContent = t("验证失败：", "Verification failed: ") + (e.message || e); }
  );
})();
