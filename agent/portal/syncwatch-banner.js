/*
 * syncwatch-banner.js: the "reconnect" banner for a portal page. No framework, no build.
 * Documented in docs/portal-banner.md.
 *
 *   <div id="syncwatch-banner" hidden></div>
 *   <script src="/static/syncwatch-banner.js"></script>
 *   <script>
 *     const banner = SyncwatchBanner.mount(document.getElementById("syncwatch-banner"), {
 *       bannerUrl: "/portal/api/syncwatch/banner",                  // your backend, same origin
 *       recheckUrl: (accountId) => "/portal/api/syncwatch/recheck?account=" + accountId,
 *       interval: 60000,                                            // ms between polls
 *     });
 *     // after the user reconnected an account:
 *     banner.recheck("acc-42");
 *   </script>
 *
 * The browser never holds the syncwatch API token: bannerUrl and recheckUrl are routes of
 * the portal's own backend, which adds the token and forwards to syncwatch.
 *
 * Behaviour:
 * - polls bannerUrl every `interval` ms with If-None-Match; a 304 keeps the banner as it is;
 * - a failed poll (network error, 5xx) keeps showing the last known state (no flicker) and
 *   retries with exponential backoff (interval * 2^n, at most maxBackoff, +-20% jitter);
 * - pauses while the tab is hidden and polls at once when it becomes visible;
 * - recheck(accountId) POSTs recheckUrl, then polls at once; resolves to
 *   {ok, status, retryAfter} (429 when asked too often: retryAfter in seconds).
 * Everything from the server is inserted as text (textContent), never as HTML.
 */
(function (global) {
  "use strict";

  // Plain words per cause (agent/wording.py CAUSE_TEXT); replace for other languages with
  // the `causeText` option. Used when several accounts show in one banner.
  var CAUSE_TEXT = {
    auth_failed: "Your email password may have changed, so we can no longer sign in.",
    access_revoked: "Access for third-party apps was removed in your email settings.",
    account_suspended: "Your email provider reports a problem with your account.",
    permission_denied: "We can sign in, but your account no longer lets us use it (for example, the calendar became read-only).",
    over_quota: "Your mailbox is full.",
    config_error: "The connection settings for your account no longer work.",
    integration_error: "A problem on our side; our team has been alerted.",
    server_unavailable: "Your email provider's servers are not responding right now. No action is needed yet; we keep trying.",
    network_error: "We cannot reach your email provider right now. No action is needed yet; we keep trying.",
    timeout: "Your email provider is not answering in time. No action is needed yet; we keep trying.",
    rate_limited: "Your email provider is limiting connections for now. No action is needed yet; we keep trying.",
    tls_error: "Your email provider's security certificate could not be verified. No action is needed yet; we keep trying.",
    protocol_error: "Your email provider sent an unexpected answer. No action is needed yet; we keep trying."
  };
  // Causes the owner can fix by reconnecting: only these get a Reconnect button.
  var RECONNECT = { auth_failed: 1, access_revoked: 1, account_suspended: 1, permission_denied: 1, config_error: 1 };

  function SyncwatchBanner(el, options) {
    var o = options || {};
    if (!o.bannerUrl) throw new Error("SyncwatchBanner: bannerUrl is required");
    this.el = el;
    this.bannerUrl = o.bannerUrl;
    this.recheckUrl = o.recheckUrl || null;
    this.interval = o.interval || 60000;
    this.maxBackoff = o.maxBackoff || 600000;
    this.causeText = Object.assign({}, CAUSE_TEXT, o.causeText || {});
    this.reconnectLabel = o.reconnectLabel || "Reconnect";
    this.onChange = o.onChange || null; // called with the banner document on every change
    this.onError = o.onError || null; // called with the error of a failed poll
    this.fetch = o.fetch || global.fetch.bind(global);
    this.etag = null;
    this.doc = null; // the last banner document received
    this.failures = 0;
    this.timer = null;
    this.running = false;
    this.inflight = null;
    this._onVisibility = this._onVisibility.bind(this);
  }

  SyncwatchBanner.mount = function (el, options) {
    var b = new SyncwatchBanner(el, options);
    b.start();
    return b;
  };
  SyncwatchBanner.CAUSE_TEXT = CAUSE_TEXT;

  SyncwatchBanner.prototype.start = function () {
    if (this.running) return;
    this.running = true;
    if (global.document) global.document.addEventListener("visibilitychange", this._onVisibility);
    this.poll();
  };

  SyncwatchBanner.prototype.stop = function () {
    this.running = false;
    clearTimeout(this.timer);
    if (global.document) global.document.removeEventListener("visibilitychange", this._onVisibility);
  };

  SyncwatchBanner.prototype._url = function () {
    return typeof this.bannerUrl === "function" ? this.bannerUrl() : this.bannerUrl;
  };

  // Change what is polled (e.g. another owner): forget the ETag and the banner, poll now.
  SyncwatchBanner.prototype.setBannerUrl = function (url) {
    this.bannerUrl = url;
    this.etag = null;
    this.doc = null;
    this.render(null);
    return this.poll();
  };

  SyncwatchBanner.prototype.poll = function () {
    var self = this;
    if (self.inflight) return self.inflight;
    clearTimeout(self.timer);
    var headers = { Accept: "application/json" };
    if (self.etag) headers["If-None-Match"] = self.etag;
    self.inflight = self.fetch(self._url(), { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 304) return null;
        if (!r.ok) throw new Error("banner poll: HTTP " + r.status);
        self.etag = r.headers.get("ETag");
        return r.json();
      })
      .then(function (doc) {
        self.failures = 0;
        if (doc !== null) {
          self.doc = doc;
          self.render(doc);
          if (self.onChange) self.onChange(doc);
        }
      })
      .catch(function (err) {
        // keep showing the last known state; retry later
        self.failures += 1;
        if (self.onError) self.onError(err);
      })
      .then(function () {
        self.inflight = null;
        self._schedule();
      });
    return self.inflight;
  };

  SyncwatchBanner.prototype.nextDelay = function () {
    if (this.failures === 0) return this.interval;
    var d = Math.min(this.interval * Math.pow(2, this.failures), this.maxBackoff);
    return d * (0.8 + 0.4 * Math.random());
  };

  SyncwatchBanner.prototype._schedule = function () {
    clearTimeout(this.timer);
    if (!this.running) return;
    if (global.document && global.document.hidden) return; // resumes on visibilitychange
    this.timer = setTimeout(this.poll.bind(this), this.nextDelay());
  };

  SyncwatchBanner.prototype._onVisibility = function () {
    if (this.running && !global.document.hidden) this.poll();
  };

  // Ask syncwatch to check the account now (after the user reconnected it).
  SyncwatchBanner.prototype.recheck = function (accountId) {
    var self = this;
    if (!self.recheckUrl) return Promise.reject(new Error("SyncwatchBanner: no recheckUrl"));
    return self.fetch(self.recheckUrl(accountId), { method: "POST", credentials: "same-origin" })
      .then(function (r) {
        var retry = r.headers.get("Retry-After");
        return self.poll().then(function () {
          return { ok: r.ok, status: r.status, retryAfter: retry ? Number(retry) : null };
        });
      });
  };

  function node(tag, cls, text) {
    var n = global.document.createElement(tag);
    if (cls) n.className = cls;
    if (text) n.textContent = text;
    return n;
  }

  SyncwatchBanner.prototype.render = function (doc) {
    var el = this.el;
    while (el.firstChild) el.removeChild(el.firstChild);
    if (!doc || !doc.show) {
      el.hidden = true;
      el.removeAttribute("data-severity");
      el.removeAttribute("data-causes");
      return;
    }
    var self = this;
    el.hidden = false;
    el.setAttribute("role", doc.severity === "error" ? "alert" : "status");
    el.setAttribute("data-severity", doc.severity || "");
    el.setAttribute("data-causes", doc.accounts.map(function (a) { return a.cause; }).join(" "));
    el.appendChild(node("strong", "syncwatch-title", doc.title));
    el.appendChild(node("p", "syncwatch-message", doc.message));
    doc.accounts.forEach(function (a) {
      var item = node("div", "syncwatch-account");
      item.setAttribute("data-account", a.account);
      item.setAttribute("data-cause", a.cause);
      if (doc.accounts.length > 1) {
        item.appendChild(node("p", "syncwatch-cause", (a.address || a.account) + ": " + (self.causeText[a.cause] || a.cause)));
      }
      if (a.impacts && a.impacts.length) {
        var ul = node("ul", "syncwatch-impacts");
        a.impacts.forEach(function (t) { ul.appendChild(node("li", null, t)); });
        item.appendChild(ul);
      }
      if (RECONNECT[a.cause] && a.reconnect_url) {
        var link = node("a", "syncwatch-reconnect", self.reconnectLabel + (doc.accounts.length > 1 ? " " + (a.address || a.account) : ""));
        link.href = a.reconnect_url;
        item.appendChild(link);
      }
      el.appendChild(item);
    });
  };

  global.SyncwatchBanner = SyncwatchBanner;
})(typeof window !== "undefined" ? window : this);
