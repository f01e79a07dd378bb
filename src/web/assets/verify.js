// In-browser verification of one receipt (docs/WEB.md, "Verification in the browser").
// It trusts nothing the server says about validity: it fetches the verifier key, the latest
// signed checkpoint, the receipt's event and an inclusion proof, and checks them here with
// WebCrypto (SHA-256, Ed25519) following docs/FORMAT-merkle.md. The shared checks are in
// tlog.js, loaded before this script.
//
// Test hook: with `tamper=1` in the page's query the script flips one byte of the fetched
// proof before checking it. It can only turn a good proof into a bad one: a tampered proof
// never verifies, so the hook cannot make a bad proof pass. The browser tests use it.
"use strict";
(function () {
  const root = document.getElementById("verify");
  if (!root || !window.Tlog) return;
  const { t, fail, hex, unhex, concat, sha256, leafHash, stepper, get, verifyInclusion, parseKey, fetchKey, fetchCheckpoint } = window.Tlog;
  const code = root.dataset.code;
  const tamper = new URLSearchParams(location.search).get("tamper") === "1";
  const step = stepper(document.getElementById("steps"));
  const result = document.getElementById("result");
  const enc = new TextEncoder();

  async function run() {
    // 1. The verifier key: <name>+<key id>+base64(0x01 || 32-byte key); the one given in the
    // page's address (from a source the donor trusts), else this site's.
    const given = (root.dataset.key || "").trim();
    const key = given ? await parseKey(given) : await fetchKey();
    step((given ? t("您提供的验证公钥：", "Your verifier key: ") : t("本站 /log/key 的验证公钥：", "This site's verifier key (/log/key): ")) + key.text, true);

    // 2. The latest checkpoint: a signed note; the signature covers the text up to the blank line.
    const { size, root: rootHash } = await fetchCheckpoint(key);
    step(t("检查点签名有效：", "Checkpoint signature valid: ") + t("树大小 ", "tree size ") + size +
      t("，根 ", ", root ") + hex(rootHash), true);

    // 3. The donation's event: its bytes hash to the event hash and carry this receipt code.
    const bundle = await get("/api/v1/public/receipts/" + encodeURIComponent(code) + "/proof", "json");
    if (typeof bundle.event !== "string") fail(t("收据证明格式错误", "malformed receipt bundle"));
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
    if (!Array.isArray(proof.hashes)) fail(t("包含证明格式错误", "malformed inclusion proof"));
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

    // 5. Whether the gift was refunded since (the server's word, shown as such).
    const receipt = await get("/api/v1/public/receipts/" + encodeURIComponent(code), "json");
    return !!(receipt && receipt.donation && receipt.donation.refunded === true);
  }

  result.textContent = t("验证中…", "verifying…");
  run().then(
    (refunded) => { result.textContent = "verified"; result.className = "ok";
      document.getElementById("verdict").textContent = t("已在您的浏览器中验证：这笔捐赠记录在已签名的账本中。", "Verified in your browser: this donation is in the signed ledger.") +
        (refunded ? t("据服务器所示，这笔捐赠之后已退款（见收据页）。", " The server says it was refunded since (see the receipt page).") : ""); },
    (e) => { step(String(e.message || e), false); result.textContent = "failed"; result.className = "bad";
      document.getElementById("verdict").textContent = t("验证失败：", "Verification failed: ") + (e.message || e); }
  );
})();
