/* wspush.js — browser client of wspush (plain JavaScript, no build step).
 *
 *   const push = new WsPush({
 *     url: "/ws",                          // ws(s):// URL or a path on this site
 *     channels: ["news", "user/alice/inbox"],
 *     tokenChannels: ["user/alice/inbox"], // channels that need a token
 *     tokenUrl: "/push/token",             // or token: "jwt" / token: async () => "jwt"
 *   });
 *   push.on("message", m => console.log(m.channel, m.id, m.data));
 *   push.on("state", s => console.log(s.state, s));
 *   push.on("reset", r => reloadEverything(r.channels));
 *   push.connect();
 *
 * Transports: WebSocket, or Server-Sent Events (GET /sse, the same stream)
 * read with fetch() so that HTTP statuses are seen (401: fresh token, 400
 * and 403 for the origin: stop). transport: "auto" (default) uses
 * WebSocket and moves to SSE for good after fallbackAfter (3) WebSocket
 * attempts in a row failed to open while /sse answered (a probe right
 * after each failure): a proxy that does not pass WebSocket. A server
 * restart, where /sse fails too, does not move it. transport: "sse" or
 * "websocket" forces one; sseUrl (default: /sse on url's host).
 *
 * Behaviour:
 *  - reconnects by itself, with exponential backoff and full jitter
 *    (minDelay doubling up to maxDelay, each wait drawn from [d/2, d]);
 *  - close 4401 (token missing, invalid, expired or revoked): drops the
 *    token, fetches a fresh one, reconnects;
 *  - resumes with last_id = the newest id seen, so messages published while
 *    disconnected are replayed; an id already seen is never emitted twice;
 *  - a "reset" frame (the gap could not be filled) becomes a "reset" event:
 *    the page should reload its state;
 *  - 4400 (bad channel list) is final: retrying would not help.
 *
 * Events (push.on(name, fn), push.off(name, fn)):
 *   message    {channel, id, data}
 *   state      {state, code, reason, delay, attempt}; state is one of
 *              "connecting", "open", "reconnecting", "closed", "failed"
 *   subscribed {channels, last_id}
 *   reset      {channels}
 *   error      {error, stage}  (token fetch or publish problems, for logs)
 *
 * Also: WsPush.publish(channel, data, {url}) posts one message with a
 * same-origin fetch() (JSON body, so the publisher's CSRF check passes).
 */
(function (global) {
  "use strict";

  var CLOSE_NORMAL = 1000;
  var CLOSE_BAD_CHANNELS = 4400;
  var CLOSE_TOKEN = 4401;
  var CLOSE_NOT_COVERED = 4403;
  var SEEN_MAX = 512;             /* ids remembered to drop replay duplicates */
  var TOKEN_MARGIN_MS = 30000;    /* refresh a token this long before expiry */
  var STABLE_MS = 10000;          /* an open this long resets the backoff */
  var CLOSE_ABNORMAL = 1006;      /* gone without a close code */
  var CLOSE_ORIGIN = -403;        /* SSE only: 403 origin (WebSocket cannot tell it) */

  function wsUrl(url) {
    if (/^wss?:\/\//i.test(url)) return url;
    var loc = global.location;
    var abs = new URL(url, loc.href);
    abs.protocol = abs.protocol === "https:" ? "wss:" : "ws:";
    return abs.href;
  }

  /* The /sse URL on the host of a ws(s):// or http(s) URL (or a path). */
  function sseUrlOf(url) {
    var abs = new URL(wsUrl(url));
    abs.protocol = abs.protocol === "wss:" ? "https:" : "http:";
    abs.pathname = "/sse";
    abs.search = "";
    return abs.href;
  }

  /* A text/event-stream parser (WHATWG HTML, "Server-sent events"): fed
   * decoded text in any pieces; calls onEvent({event, data, id}) for each
   * dispatched event. Lines end in CRLF, LF or CR (a CR at the end of a
   * piece may be the first half of a CRLF); data lines join with LF;
   * comments and unknown fields are skipped. */
  function SseParser(onEvent) {
    this.onEvent = onEvent;
    this.rest = "";
    this.skipLF = false;
    this.data = [];
    this.event = "";
    this.lastId = "";
  }

  SseParser.prototype.push = function (text) {
    if (this.skipLF && text.charAt(0) === "\n") text = text.slice(1);
    this.skipLF = false;
    var s = this.rest + text, start = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charAt(i);
      if (c !== "\n" && c !== "\r") continue;
      this._line(s.slice(start, i));
      if (c === "\r") {
        if (i + 1 === s.length) this.skipLF = true;
        else if (s.charAt(i + 1) === "\n") i++;
      }
      start = i + 1;
    }
    this.rest = s.slice(start);
  };

  SseParser.prototype._line = function (line) {
    if (line === "") {
      if (this.data.length)
        this.onEvent({ event: this.event || "message", data: this.data.join("\n"), id: this.lastId });
      this.data = [];
      this.event = "";
      return;
    }
    if (line.charAt(0) === ":") return;
    var k = line.indexOf(":");
    var name = k < 0 ? line : line.slice(0, k);
    var value = k < 0 ? "" : line.slice(k + 1);
    if (value.charAt(0) === " ") value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && value.indexOf("\0") < 0) this.lastId = value;
  };

  function WsPush(opts) {
    if (!(this instanceof WsPush)) return new WsPush(opts);
    opts = opts || {};
    if (!opts.channels || !opts.channels.length) throw new Error("wspush: channels required");
    this.url = opts.url || "/ws";
    this.channels = opts.channels.slice();
    this.tokenChannels = opts.tokenChannels ? opts.tokenChannels.slice() : null;
    this.tokenUrl = opts.tokenUrl || null;
    this.tokenSource = opts.token || null;
    this.minDelay = opts.minDelay || 500;
    this.maxDelay = opts.maxDelay || 30000;
    this.lastId = opts.lastId || null;
    this.transport = opts.transport || "auto";
    this.sseUrl = opts.sseUrl || null;
    this.fallbackAfter = opts.fallbackAfter || 3;
    this._useSse = this.transport === "sse";
    this._wsFails = 0;          /* WebSocket open failures in a row while /sse answered */
    this._sse = null;           /* the stream being read: {abort} */
    this.state = "closed";
    this._handlers = {};
    this._ws = null;
    this._token = null;         /* {value, expires (ms, 0 = unknown)} */
    this._attempt = 0;
    this._timer = null;
    this._openedAt = 0;
    this._stopped = true;
    this._seen = [];
    this._seenSet = Object.create(null);
    this._onOnline = this._wakeUp.bind(this);
  }

  WsPush.prototype.on = function (name, fn) {
    (this._handlers[name] = this._handlers[name] || []).push(fn);
    return this;
  };

  WsPush.prototype.off = function (name, fn) {
    var list = this._handlers[name] || [];
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
    return this;
  };

  WsPush.prototype._emit = function (name, ev) {
    var list = (this._handlers[name] || []).slice();
    for (var i = 0; i < list.length; i++) {
      try { list[i].call(this, ev); } catch (e) { setTimeout(function () { throw e; }); }
    }
  };

  WsPush.prototype._setState = function (state, extra) {
    this.state = state;
    var ev = { state: state, attempt: this._attempt, transport: this._useSse ? "sse" : "websocket" };
    for (var k in extra || {}) ev[k] = extra[k];
    this._emit("state", ev);
  };

  WsPush.prototype.connect = function () {
    if (!this._stopped) return this;
    this._stopped = false;
    this._attempt = 0;
    if (global.addEventListener) global.addEventListener("online", this._onOnline);
    this._open();
    return this;
  };

  WsPush.prototype.close = function () {
    this._stopped = true;
    clearTimeout(this._timer);
    this._timer = null;
    if (global.removeEventListener) global.removeEventListener("online", this._onOnline);
    if (this._ws) {
      var ws = this._ws;
      this._ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(CLOSE_NORMAL); } catch (e) { /* already closing */ }
    }
    if (this._sse) {
      this._sse.abort();
      this._sse = null;
    }
    this._setState("closed", { code: CLOSE_NORMAL, reason: "closed by page" });
    return this;
  };

  /* The network came back: skip the rest of the backoff wait. */
  WsPush.prototype._wakeUp = function () {
    if (this._stopped || this._ws || this._sse || !this._timer) return;
    clearTimeout(this._timer);
    this._timer = null;
    this._open();
  };

  WsPush.prototype._needsToken = function () {
    var list = this.tokenChannels || (this.tokenUrl || this.tokenSource ? this.channels : []);
    return list.length > 0;
  };

  /* Resolves to a token string, or null when none is needed. */
  WsPush.prototype._getToken = function () {
    var self = this;
    if (!this._needsToken()) return Promise.resolve(null);
    var t = this._token;
    if (t && (!t.expires || t.expires - Date.now() > TOKEN_MARGIN_MS))
      return Promise.resolve(t.value);
    var p;
    if (typeof this.tokenSource === "function") {
      p = Promise.resolve(this.tokenSource(this.tokenChannels || this.channels)).then(function (v) {
        return typeof v === "string" ? { token: v } : v;
      });
    } else if (typeof this.tokenSource === "string" && !this.tokenUrl) {
      p = Promise.resolve({ token: this.tokenSource });
    } else if (this.tokenUrl) {
      var u = new URL(this.tokenUrl, global.location.href);
      u.searchParams.set("channels", (this.tokenChannels || this.channels).join(","));
      p = fetch(u.href, { credentials: "same-origin", headers: { "X-Requested-With": "wspush.js" } })
        .then(function (r) {
          return r.json().catch(function () { return {}; }).then(function (body) {
            if (!r.ok) {
              var e = new Error("token: HTTP " + r.status + (body.message ? ": " + body.message : ""));
              e.status = r.status;
              throw e;
            }
            return body;
          });
        });
    } else {
      return Promise.reject(new Error("wspush: tokenChannels set but no token or tokenUrl"));
    }
    return p.then(function (body) {
      if (!body || !body.token) throw new Error("token: no token in answer");
      self._token = { value: body.token, expires: body.expires ? body.expires * 1000 : 0 };
      return body.token;
    });
  };

  WsPush.prototype._open = function () {
    var self = this;
    this._setState("connecting", {});
    this._getToken().then(function (token) {
      if (self._stopped) return;
      var q = "channels=" + self.channels.map(encodeURIComponent).join(",");
      if (token) q += "&token=" + encodeURIComponent(token);
      if (self.lastId) q += "&last_id=" + encodeURIComponent(self.lastId);
      if (self._useSse) {
        self._openSse(q);
        return;
      }
      var base = wsUrl(self.url);
      var opened = false;
      var ws;
      try {
        ws = new WebSocket(base + (base.indexOf("?") >= 0 ? "&" : "?") + q);
      } catch (e) {
        self._emit("error", { error: e, stage: "connect" });
        self._retry({ code: 0, reason: String(e) });
        return;
      }
      self._ws = ws;
      self._connLastId = null;
      ws.onopen = function () {
        opened = true;
        self._wsFails = 0;
        self._openedAt = Date.now();
      };
      ws.onmessage = function (e) { self._frame(e.data); };
      ws.onclose = function (e) {
        if (self._ws !== ws) return;
        self._ws = null;
        if (!opened && self.transport === "auto") self._probeSse(q);
        self._closed(e.code, e.reason);
      };
    }, function (err) {
      if (self._stopped) return;
      self._emit("error", { error: err, stage: "token" });
      self._retry({ code: 0, reason: String(err && err.message || err) });
    });
  };

  WsPush.prototype._sseHref = function (q) {
    var base = this.sseUrl ? new URL(this.sseUrl, global.location.href).href : sseUrlOf(this.url);
    return base + (base.indexOf("?") >= 0 ? "&" : "?") + q;
  };

  /* fetch() of the stream. The resume id goes in the query (last_id), not
   * in Last-Event-ID: a header outside the CORS-safelisted ones would make
   * a cross-origin request need a preflight. */
  WsPush.prototype._fetchSse = function (q, ctrl) {
    return fetch(this._sseHref(q), {
      headers: { Accept: "text/event-stream" },
      cache: "no-store",
      signal: ctrl ? ctrl.signal : undefined,
    });
  };

  /* A status before the stream, as the close code WebSocket would give. */
  function sseStatusCode(status, body) {
    if (status === 400) return CLOSE_BAD_CHANNELS;
    if (status === 401) return CLOSE_TOKEN;
    if (status === 403) return body && body.error === "origin" ? CLOSE_ORIGIN : CLOSE_NOT_COVERED;
    return CLOSE_ABNORMAL;
  }

  WsPush.prototype._openSse = function (q) {
    var self = this;
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    var conn = { abort: function () { if (ctrl) ctrl.abort(); }, code: 0 };
    var parser = new SseParser(function (ev) { self._sseEvent(conn, ev); });
    self._sse = conn;
    function ended(code, reason) {
      if (self._sse !== conn) return;
      self._sse = null;
      self._closed(code, reason);
    }
    this._fetchSse(q, ctrl).then(function (r) {
      if (self._sse !== conn) { conn.abort(); return; }
      if (!r.ok || !r.body) {
        return r.json().catch(function () { return null; }).then(function (body) {
          ended(sseStatusCode(r.status, body), "HTTP " + r.status + (body && body.message ? ": " + body.message : ""));
        });
      }
      self._openedAt = Date.now();
      var reader = r.body.getReader();
      var decoder = new TextDecoder();
      function pump() {
        return reader.read().then(function (chunk) {
          if (self._sse !== conn) { conn.abort(); return; }
          if (chunk.done) {
            parser.push(decoder.decode());
            ended(conn.code || CLOSE_ABNORMAL, conn.code ? "" : "stream ended");
            return;
          }
          parser.push(decoder.decode(chunk.value, { stream: true }));
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      ended(conn.code || CLOSE_ABNORMAL, String(err && err.message || err));
    });
  };

  /* Every event carries the JSON object WebSocket would send; "close"
   * holds the code the stream ends with. */
  WsPush.prototype._sseEvent = function (conn, ev) {
    if (this._sse !== conn) return;
    if (ev.event === "close") {
      try { conn.code = JSON.parse(ev.data).code; } catch (e) { conn.code = CLOSE_ABNORMAL; }
      return;
    }
    this._frame(ev.data);
  };

  /* A WebSocket failed to open: does /sse answer now? fallbackAfter
   * answers in a row, each right after a failure, move the page to SSE;
   * a probe that fails (the server is down or restarting) starts over. */
  WsPush.prototype._probeSse = function (q) {
    var self = this;
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    this._fetchSse(q, ctrl).then(function (r) {
      if (ctrl) ctrl.abort();     /* the status was all that was wanted */
      return r.ok && /^text\/event-stream/i.test(r.headers.get("content-type") || "");
    }, function () { return false; }).then(function (answers) {
      if (self._stopped || self._useSse) return;
      self._wsFails = answers ? self._wsFails + 1 : 0;
      if (self._wsFails >= self.fallbackAfter) self._useSse = true;
    });
  };

  WsPush.prototype._frame = function (text) {
    var m;
    try { m = JSON.parse(text); } catch (e) { return; }
    if (!m || typeof m !== "object") return;
    if (m.type === "message") {
      if (m.id != null) {
        if (this._seenSet[m.id]) return;
        this._remember(m.id);
        this.lastId = m.id;
      }
      this._emit("message", { channel: m.channel, id: m.id, data: m.data });
    } else if (m.type === "subscribed") {
      this._serverLastId = m.last_id;
      /* A fresh start begins at the server's position; a resume keeps ours
       * so the replay covers the gap. */
      if (!this.lastId && m.last_id) this.lastId = m.last_id;
      this._setState("open", {});
      this._emit("subscribed", { channels: m.channels, last_id: m.last_id });
    } else if (m.type === "reset") {
      /* The gap is lost: continue from the server's position. */
      if (this._serverLastId) this.lastId = this._serverLastId;
      this._emit("reset", { channels: m.channels || this.channels });
    }
  };

  WsPush.prototype._remember = function (id) {
    this._seen.push(id);
    this._seenSet[id] = true;
    if (this._seen.length > SEEN_MAX) delete this._seenSet[this._seen.shift()];
  };

  WsPush.prototype._closed = function (code, reason) {
    if (this._stopped) return;
    if (this._openedAt && Date.now() - this._openedAt > STABLE_MS) this._attempt = 0;
    this._openedAt = 0;
    if (code === CLOSE_BAD_CHANNELS || code === CLOSE_ORIGIN) {
      this._stopped = true;
      this._setState("failed", { code: code === CLOSE_ORIGIN ? 403 : code,
                                 reason: reason || "channels refused" });
      return;
    }
    if (code === CLOSE_TOKEN || code === CLOSE_NOT_COVERED) {
      /* Expired, revoked, or too narrow: the next attempt asks for a new one. */
      this._token = null;
      /* The first retry after a token refusal is immediate: the common case
       * is a plain expiry, which a fresh token fixes. */
      if (code === CLOSE_TOKEN && this._attempt === 0) {
        this._attempt = 1;
        this._setState("reconnecting", { code: code, reason: reason, delay: 0 });
        this._schedule(0);
        return;
      }
    }
    this._retry({ code: code, reason: reason });
  };

  WsPush.prototype._retry = function (why) {
    var ceiling = Math.min(this.maxDelay, this.minDelay * Math.pow(2, this._attempt));
    var delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    this._attempt++;
    this._setState("reconnecting", { code: why.code, reason: why.reason, delay: delay });
    this._schedule(delay);
  };

  WsPush.prototype._schedule = function (delay) {
    var self = this;
    clearTimeout(this._timer);
    this._timer = setTimeout(function () {
      self._timer = null;
      if (!self._stopped) self._open();
    }, delay);
  };

  /* Publishes through the site's fcgi-publisher with the page's own
   * credentials. Resolves to {id, channel, subscribers}; rejects with an
   * Error carrying .status and .code from the publisher's answer. */
  WsPush.publish = function (channel, data, opts) {
    var url = (opts && opts.url) || "/push/publish";
    var body = Array.isArray(channel) ? { channels: channel, data: data } : { channel: channel, data: data };
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "wspush.js" },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (ans) {
        if (r.ok) return ans;
        var e = new Error(ans.message || ("HTTP " + r.status));
        e.status = r.status;
        e.code = ans.error;
        throw e;
      });
    });
  };

  WsPush.prototype.publish = function (channel, data, opts) {
    return WsPush.publish(channel, data, opts);
  };

  WsPush.SseParser = SseParser;

  if (typeof module === "object" && module.exports) module.exports = WsPush;
  else global.WsPush = WsPush;
})(typeof window !== "undefined" ? window : this);
