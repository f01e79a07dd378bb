// In-browser verification of one receipt (docs/WEB.md, "Verification in the browser").
// It trusts nothing the server says about validity: it fetches the verifier key, the latest
// signed checkpoint, the receipt's event and an inclusion proof, and checks them here with
// WebCrypto (SHA-256, Ed25519) following docs/FORMAT-merkle.md. The shared checks are in
// tlog.js, loaded before this script.
//
// Test hook: on a page served with test hooks on (`data-test-hooks`, never in service), with
// `tamper=1` in the page's query the script flips one byte of the fetched proof before
// checking it (`tamper=refund`: of the refund's proof). It can only turn a good proof into a
// bad one: a tampered proof never verifies, so the hook cannot make a bad proof pass. The
// browser tests use it.
"use strict";
(function () {
  const root = document.getElementById("verify");
  if (!root || !window.Tlog) return;
  const { t, fail, hex, unhex, concat, sha256, leafHash, stepper, get, verifyInclusion, parseKey, fetchKey, fetchCheckpoint } = window.Tlog;
  const code = root.dataset.code;
  const tamper = root.dataset.testHooks === "1" ? new URLSearchParams(location.search).get("tamper") : null;
  const step = stepper(document.getElementById("steps"));
  const result = document.getElementById("result");
  const enc = new TextEncoder();

  // An event of the bundle: its canonical bytes hash to the hash the bundle gives.
  async function hashed(text, declared, what) {
    if (typeof text !== "string") fail(t("收据证明格式错误", "malformed receipt bundle"));
    const bytes = enc.encode(text);
    const hash = hex(await sha256(bytes));
    if (hash !== declared) fail(what + " hashes to " + hash);
    return { bytes, hash, ev: JSON.parse(text) };
  }

  // The inclusion proof of event `seq` at the checkpoint's size, fetched, computed and
  // compared here; `tamperIt` applies the test hook to it. Answers the number of hashes.
  async function included(bytes, seq, size, rootHash, tamperIt) {
    const proof = await get("/api/v1/public/proofs/inclusion?seq=" + seq + "&tree_size=" + size, "json");
    if (!Array.isArray(proof.hashes)) fail(t("包含证明格式错误", "malformed inclusion proof"));
    const hashes = proof.hashes.map(unhex);
    let leafInput = bytes;
    if (tamperIt) {
      // Test hook (see the top of this file): corrupt one byte of what was fetched.
      if (hashes.length > 0) hashes[0][0] ^= 1;
      else leafInput = concat(bytes, new Uint8Array([0x20]));
      step(t("测试：已篡改证明中的一个字节", "Test: one byte of the proof was tampered with"), true);
    }
    await verifyInclusion(await leafHash(leafInput), seq, size, hashes, rootHash);
    return hashes.length;
  }

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
    const gift = await hashed(bundle.event, bundle.event_hash, "the event");
    const ev = gift.ev;
    if (ev.type !== "donation_received" || ev.data.receipt_code !== code || ev.seq !== bundle.seq) {
      fail(t("事件与收据码不符", "the event is not this receipt's donation"));
    }
    step(t("捐赠事件 #", "Donation event #") + ev.seq + t("，哈希 ", ", hash ") + gift.hash + " (" +
      ev.data.amount_minor + " " + ev.data.currency + " → " + ev.data.project + ")", true);

    // 4. The inclusion proof at the checkpoint's size.
    if (ev.seq >= size) fail(t("该捐赠尚未被检查点覆盖，请稍后再试", "the donation is not covered by a checkpoint yet; try again in a minute"));
    const n = await included(gift.bytes, ev.seq, size, rootHash, tamper === "1");
    step(t("包含证明有效：", "Inclusion proof valid: ") + n + t(" 个哈希通向已签名的根", " hashes lead to the signed root"), true);

    // 5. The refund, when the gift was refunded: the bundle carries its event, checked here
    // like the gift's (its hash, that it refunds this gift, its inclusion at the same size).
    if (!bundle.refund) return null;
    const refund = await hashed(bundle.refund.event, bundle.refund.event_hash, "the refund event");
    const rev = refund.ev;
    if (rev.type !== "donation_refunded" || rev.data.donation_seq !== ev.seq || rev.seq !== bundle.refund.seq) {
      fail(t("退款事件不是这笔捐赠的退款", "the refund event is not this donation's refund"));
    }
    const named = t("退款事件 #", "Refund event #") + rev.seq + t("，哈希 ", ", hash ") + refund.hash;
    if (rev.seq >= size) {
      step(named + t("：尚未被检查点覆盖，稍后再试可验证", ": not yet covered by a checkpoint; try again in a minute to prove it"), true);
      return { seq: rev.seq, proven: false };
    }
    await included(refund.bytes, rev.seq, size, rootHash, tamper === "refund");
    step(named + t("：包含证明有效", ": inclusion proof valid"), true);
    return { seq: rev.seq, proven: true };
  }

  function refundNote(refund) {
    if (!refund) return "";
    return refund.proven
      ? t("它的退款（事件 #" + refund.seq + "）也在其中：已原路退还给捐赠人。", " So is its refund (event #" + refund.seq + "): the money went back to the donor.")
      : t("账本记录了它的退款（事件 #" + refund.seq + "），尚未被检查点覆盖。", " The ledger records its refund (event #" + refund.seq + "), not yet covered by a checkpoint.");
  }

  result.textContent = t("验证中…", "verifying…");
  run().then(
    (refund) => { result.textContent = "verified"; result.className = "ok";
      document.getElementById("verdict").textContent = t("已在您的浏览器中验证：这笔捐赠记录在已签名的账本中。", "Verified in your browser: this donation is in the signed ledger.") +
        refundNote(refund); },
    (e) => { step(String(e.message || e), false); result.textContent = "failed"; result.className = "bad";
      document.getElementById("verdict").textContent = t("验证失败：", "Verification failed: ") + (e.message || e); }
  );
})();
