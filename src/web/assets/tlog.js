// Shared by the verification pages (verify.js, audit.js): hex and base64, SHA-256 with
// WebCrypto, the RFC 9162 tree (docs/FORMAT-merkle.md), the verifier key and the signed
// checkpoint, RFC 8785 canonical JSON, and bounded fetches. Nothing here trusts the server:
// every answer is checked before it is used. Errors are thrown as Error with a message in
// the page's language (Chinese unless <html lang="en">).
"use strict";
window.Tlog = (function () {
  const zh = document.documentElement.lang !== "en";
  const t = (z, e) => (zh ? z : e);
  const enc = new TextEncoder();

  /** The largest key, checkpoint or proof read, in bytes. */
  const SMALL_BODY_BYTES_MAX = 1024 * 1024;
  /** How deep RFC 8785 canonicalization descends into nested arrays and objects. */
  const JSON_DEPTH_MAX = 32;

  function fail(text) {
    throw new Error(text);
  }

  const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
  function unhex(s) {
    if (typeof s !== "string" || !/^([0-9a-f]{2})*$/.test(s)) fail(t("不是十六进制：", "not hex: ") + String(s).slice(0, 80));
    const out = new Uint8Array(s.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
    return out;
  }
  function unb64(s) {
    let bin;
    try { bin = atob(s); } catch (_) { fail(t("不是 base64：", "not base64: ") + String(s).slice(0, 80)); }
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

  /** A list of ✓/✗ lines in `list`: returns `step(text, ok)`. */
  function stepper(list) {
    return function step(text, ok) {
      const li = document.createElement("li");
      const mark = document.createElement("span");
      mark.className = ok ? "ok" : "bad";
      mark.textContent = ok ? "✓ " : "✗ ";
      li.appendChild(mark);
      li.appendChild(document.createTextNode(text));
      list.appendChild(li);
    };
  }

  /**
   * GETs a same-origin path and returns its body as bytes, refusing more than `limit` bytes
   * (read as a stream and cancelled past the limit, so a huge answer is never held).
   */
  async function getBytes(path, limit) {
    let resp;
    try {
      resp = await fetch(path, { cache: "no-store", redirect: "error" });
    } catch (_) {
      fail(t("无法获取 ", "cannot fetch ") + path);
    }
    if (!resp.ok) {
      // The server's JSON error says why (e.g. not_yet_checkpointed); read only a small one.
      let why = "";
      const length = resp.headers.get("content-length");
      if (length !== null && Number(length) <= 4096) {
        try {
          const body = JSON.parse(await resp.text());
          if (body && body.error && typeof body.error.message === "string") why = ": " + body.error.message.slice(0, 300);
        } catch (_) { /* not a JSON error body */ }
      }
      fail(t("获取失败 ", "fetch failed ") + path + " (" + resp.status + ")" + why);
    }
    const declared = Number(resp.headers.get("content-length"));
    if (declared > limit) fail(path + t(" 的长度 ", " is ") + declared + t(" 字节，超过上限 ", " bytes; the limit is ") + limit);
    if (!resp.body) return new Uint8Array(0);
    const reader = resp.body.getReader();
    const chunks = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        reader.cancel();
        fail(path + t(" 超过 ", " is more than ") + limit + t(" 字节的上限", " bytes, the limit"));
      }
      chunks.push(value);
    }
    return concat(...chunks);
  }
  async function get(path, kind) {
    const bytes = await getBytes(path, SMALL_BODY_BYTES_MAX);
    const text = new TextDecoder().decode(bytes);
    if (kind !== "json") return text;
    try { return JSON.parse(text); } catch (_) { fail(path + t(" 不是 JSON", " is not JSON")); }
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

  /**
   * The perfect subtrees of a growing tree (docs/FORMAT-merkle.md section 1, "the frontier"):
   * O(log n) hashes, so a whole log can be streamed through it.
   */
  class Frontier {
    constructor() {
      this.nodes = []; // {level, hash}, levels strictly decreasing
      this.size = 0;
    }
    /**
     * Appends the perfect subtree of 2^level leaves whose root is `hash`; it must start at
     * the current size (which is then a multiple of 2^level).
     */
    async push(level, hash) {
      this.size += 2 ** level;
      let top = this.nodes[this.nodes.length - 1];
      while (top && top.level === level) {
        this.nodes.pop();
        hash = await nodeHash(top.hash, hash);
        level += 1;
        top = this.nodes[this.nodes.length - 1];
      }
      this.nodes.push({ level, hash });
    }
    /**
     * Appends consecutive leaf hashes, starting at a size that is a multiple of a power of
     * two at least their number (an entry bundle starts at a multiple of 256). The nodes of
     * each level are hashed together, so WebCrypto works on many at once.
     */
    async pushLeaves(leaves) {
      let span = 1;
      while (span < leaves.length) span *= 2;
      if (this.size % span !== 0) fail("bug: leaves appended at " + this.size + ", not a multiple of " + span);
      const levels = [leaves];
      while (levels[levels.length - 1].length > 1) {
        const below = levels[levels.length - 1];
        const pairs = [];
        for (let i = 0; i + 1 < below.length; i += 2) pairs.push(nodeHash(below[i], below[i + 1]));
        levels.push(await Promise.all(pairs));
      }
      // The set bits of the count, highest first, are the perfect subtrees, left to right;
      // the subtree of bit b is the last node of level b.
      for (let level = levels.length - 1; level >= 0; level--) {
        const row = levels[level];
        if (row.length % 2 === 1) await this.push(level, row[row.length - 1]);
      }
    }
    /** MTH of the leaves so far: the right fold of the perfect subtrees. */
    async root() {
      if (this.nodes.length === 0) return sha256(new Uint8Array(0));
      let r = this.nodes[this.nodes.length - 1].hash;
      for (let i = this.nodes.length - 2; i >= 0; i--) r = await nodeHash(this.nodes[i].hash, r);
      return r;
    }
  }

  /**
   * A verifier key, `<name>+<key id>+base64(0x01 || 32-byte key)`: recomputes the key id and
   * imports the key for WebCrypto Ed25519.
   */
  async function parseKey(text) {
    const keyText = text.trim();
    // The name has no '+', the key id is 8 hex digits; the base64 may itself contain '+'.
    const first = keyText.indexOf("+");
    const second = keyText.indexOf("+", first + 1);
    if (first <= 0 || second !== first + 9) fail(t("验证公钥格式错误", "malformed verifier key"));
    const name = keyText.slice(0, first);
    const keyId = keyText.slice(first + 1, second);
    const keyBytes = unb64(keyText.slice(second + 1));
    if (keyBytes.length !== 33 || keyBytes[0] !== 1) fail(t("不是 Ed25519 验证公钥", "not an Ed25519 verifier key"));
    const pub = keyBytes.slice(1);
    const idHash = await sha256(concat(enc.encode(name), new Uint8Array([0x0a, 0x01]), pub));
    if (hex(idHash.slice(0, 4)) !== keyId) fail(t("公钥编号与公钥不符", "key id does not match the key"));
    const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    return { name, keyId, key, text: keyText };
  }
  /** GET /log/key: the key this site says it signs with. */
  async function fetchKey() {
    return parseKey(await get("/log/key", "text"));
  }

  /**
   * GET /log/checkpoint: a signed note (docs/FORMAT-merkle.md section 5). Verifies the
   * signature of `k` over the text up to the last blank line and that the origin is the
   * key's name; returns the tree size (a safe integer) and the 32-byte root.
   */
  async function fetchCheckpoint(k) {
    const note = await get("/log/checkpoint", "text");
    const split = note.lastIndexOf("\n\n");
    if (split < 0 || !note.endsWith("\n")) fail(t("检查点格式错误", "malformed checkpoint note"));
    const text = note.slice(0, split + 1);
    const sigLines = note.slice(split + 2).split("\n").filter((l) => l.length > 0);
    let signed = false;
    for (const line of sigLines) {
      const prefix = "\u2014 " + k.name + " ";
      if (!line.startsWith(prefix)) continue;
      const sig = unb64(line.slice(prefix.length));
      if (sig.length !== 68 || hex(sig.slice(0, 4)) !== k.keyId) continue;
      if (!(await crypto.subtle.verify({ name: "Ed25519" }, k.key, sig.slice(4), enc.encode(text)))) {
        fail(t("检查点签名无效", "the checkpoint's signature does not verify"));
      }
      signed = true;
    }
    if (!signed) fail(t("检查点没有该公钥的签名", "the checkpoint carries no signature by the key"));
    const lines = text.split("\n");
    if (lines[0] !== k.name) fail(t("检查点来源与公钥名称不符：", "checkpoint origin is not the key's name: ") + lines[0]);
    if (!/^(0|[1-9][0-9]{0,15})$/.test(lines[1]) || !Number.isSafeInteger(Number(lines[1]))) {
      fail(t("树大小格式错误", "malformed tree size"));
    }
    const size = Number(lines[1]);
    const root = unb64(lines[2] || "");
    if (root.length !== 32) fail(t("根哈希格式错误", "malformed root hash"));
    return { size, root };
  }

  /**
   * RFC 8785 (JCS) for what JSON.parse gives back from an event: null, booleans, strings,
   * integers (a safe integer is written as String() writes it, exactly as JCS's ECMAScript
   * number form does), arrays and objects. Members are sorted by UTF-16 code units, which
   * is what Array.prototype.sort does with strings, and strings are escaped as
   * JSON.stringify escapes them, which is what JCS prescribes. Events hold no other
   * numbers: anything else throws, as does nesting deeper than JSON_DEPTH_MAX.
   */
  function canonicalize(value, depth = 0) {
    if (depth > JSON_DEPTH_MAX) fail(t("嵌套超过 ", "nested deeper than ") + JSON_DEPTH_MAX + t(" 层", " levels"));
    if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value)) fail(t("数值不是安全整数：", "a number that is not a safe integer: ") + value);
      return String(value);
    }
    if (Array.isArray(value)) return "[" + value.map((v) => canonicalize(v, depth + 1)).join(",") + "]";
    if (typeof value === "object") {
      const keys = Object.keys(value).sort();
      return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalize(value[k], depth + 1)).join(",") + "}";
    }
    fail(t("不是 JSON 值", "not a JSON value"));
  }

  return {
    t, fail, hex, unhex, unb64, concat, sha256, eq, leafHash, nodeHash, stepper, getBytes, get,
    verifyInclusion, Frontier, parseKey, fetchKey, fetchCheckpoint, canonicalize,
  };
})();
