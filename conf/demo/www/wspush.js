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

  function wsUrl(url) {
    if (/^wss?:\/\//i.test(url)) return url;
    var loc = global.location;
    var abs = new URL(url, loc.href);
    abs.protocol = abs.protocol === "https:" ? "wss:" : "ws:";
    return abs.href;
  }

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
    var ev = { state: state, attempt: this._attempt };
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
    this._setState("closed", { code: CLOSE_NORMAL, reason: "closed by page" });
    return this;
  };

  /* The network came back: skip the rest of the backoff wait. */
  WsPush.prototype._wakeUp = function () {
    if (this._stopped || this._ws || !this._timer) return;
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
      var base = wsUrl(self.url);
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
      ws.onopen = function () { self._openedAt = Date.now(); };
      ws.onmessage = function (e) { self._frame(e.data); };
      ws.onclose = function (e) {
        if (self._ws !== ws) return;
        self._ws = null;
        self._closed(e.code, e.reason);
      };
    }, function (err) {
      if (self._stopped) return;
      self._emit("error", { error: err, stage: "token" });
      self._retry({ code: 0, reason: String(err && err.message || err) });
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
    if (code === CLOSE_BAD_CHANNELS) {
      this._stopped = true;
      this._setState("failed", { code: code, reason: reason || "channels refused" });
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

  if (typeof module === "object" && module.exports) module.exports = WsPush;
  else global.WsPush = WsPush;
})(typeof window !== "undefined" ? window : this);
