/*
 * phx.js: a small client for Phoenix sockets and channels, written for greenphx's demo.
 *
 *   const socket = new Phx.Socket("/socket", {params: {token: "..."}});
 *   socket.connect();
 *   const channel = socket.channel("room:lobby", {name: "ann"});
 *   channel.on("new_msg", payload => console.log(payload));
 *   channel.join()
 *     .receive("ok", response => console.log("joined", response))
 *     .receive("error", response => console.log("refused", response));
 *   channel.push("new_msg", {body: "hi"}).receive("ok", () => {}).receive("timeout", () => {});
 *
 * The protocol: Phoenix's V2 serializer (vsn=2.0.0), every frame a JSON array
 * [join_ref, ref, topic, event, payload]. A push's reply is the phx_reply with the same
 * ref; a channel's frames carry the ref of its join as join_ref, and frames of an older
 * join of the same topic are ignored.
 *
 * What it does by itself:
 *  - heartbeat: a "heartbeat" on topic "phoenix" every heartbeatIntervalMs (30 s); if the
 *    previous one is still unanswered when the next is due, the connection is dropped
 *    and reconnected.
 *  - reconnect: when the connection closes for any reason but disconnect() (a server
 *    restart closes with 1012, a network drop with 1006), it reconnects after
 *    reconnectAfterMs(tries): 1 s, 2 s, 5 s, then every 10 s, reset by a successful open.
 *  - rejoin: a channel that gets phx_error (its server process crashed), an unsolicited
 *    phx_close (its server process stopped), an error reply or no reply to its join, is
 *    rejoined after rejoinAfterMs(tries): 1 s, 2 s, 5 s, then every 10 s. When the socket
 *    reconnects, its channels rejoin at once. (Phoenix's own client treats a server's
 *    phx_close as final; this one rejoins, which is what a page that must stay live wants.)
 *  - buffering: pushes made before a channel has joined are sent once it has (or time out).
 *
 * Transports: WebSocket (the default), or Phoenix's long polling with {transport: "longpoll"}
 * (Phx.LongPoll: GET <endpoint>/longpoll holds a poll open, POSTs carry ndjson batches);
 * with {longPollFallbackMs: N} the socket tries WebSocket first and falls back to LongPoll
 * when it fails or is not healthy (a heartbeat answered) within N ms, and remembers the
 * fallback for the browser session (sessionStorage "phx:fallback:LongPoll"), as phoenix.js.
 *
 * Phx.Presence keeps a channel's presence list from "presence_state"/"presence_diff".
 *
 * Not covered: the V1 object framing, binary payloads.
 */
(function (global) {
  "use strict";

  const VSN = "2.0.0";
  const DEFAULT_TIMEOUT = 10000;
  const HEARTBEAT_INTERVAL = 30000;
  const EVENTS = {
    join: "phx_join",
    leave: "phx_leave",
    reply: "phx_reply",
    error: "phx_error",
    close: "phx_close",
    heartbeat: "heartbeat",
  };

  /** tries (1, 2, ...) -> ms: steps[tries - 1], then the last step for ever. */
  function backoff(steps) {
    return (tries) => steps[Math.min(Math.max(tries, 1), steps.length) - 1];
  }

  const Serializer = {
    encode(msg) {
      return JSON.stringify([msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload]);
    },
    decode(raw) {
      const value = JSON.parse(raw);
      if (!Array.isArray(value) || value.length !== 5) throw new Error("not a V2 frame: " + raw);
      const [join_ref, ref, topic, event, payload] = value;
      return { join_ref, ref, topic, event, payload };
    },
  };

  /** A timer whose delay grows with the number of tries; reset() starts over. */
  class RetryTimer {
    constructor(callback, delayFor) {
      this.callback = callback;
      this.delayFor = delayFor;
      this.tries = 0;
      this.timer = null;
    }
    reset() {
      this.tries = 0;
      clearTimeout(this.timer);
      this.timer = null;
    }
    /** Schedules the next try; returns its delay in ms. */
    schedule() {
      clearTimeout(this.timer);
      this.tries += 1;
      const ms = this.delayFor(this.tries);
      this.timer = setTimeout(() => {
        this.timer = null;
        this.callback();
      }, ms);
      return ms;
    }
    get pending() {
      return this.timer !== null;
    }
  }

  /** One message to the server and the callbacks for its reply ("ok", "error", "timeout"). */
  class Push {
    constructor(channel, event, payload, timeout) {
      this.channel = channel;
      this.event = event;
      this.payload = payload || {};
      this.timeout = timeout;
      this.ref = null;
      this.received = null; // {status, response} once answered (or timed out)
      this.hooks = [];
      this.timer = null;
    }
    /** Calls callback(response) when the reply has this status; chainable. */
    receive(status, callback) {
      if (this.received && this.received.status === status) callback(this.received.response);
      this.hooks.push({ status, callback });
      return this;
    }
    /** (Re)sends with a fresh ref (or the one given); a reply to an earlier ref no longer counts. */
    send(ref, joinRef) {
      this.forget();
      this.received = null;
      this.ref = ref !== undefined ? ref : this.channel.socket.makeRef();
      this.channel.pending.set(this.ref, this);
      this.startTimeout();
      this.channel.socket.push({
        topic: this.channel.topic,
        event: this.event,
        payload: typeof this.payload === "function" ? this.payload() : this.payload,
        ref: this.ref,
        join_ref: joinRef !== undefined ? joinRef : this.channel.joinRef,
      });
      return this.ref;
    }
    startTimeout() {
      if (this.timer !== null) return;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.trigger("timeout", {});
      }, this.timeout);
    }
    cancelTimeout() {
      clearTimeout(this.timer);
      this.timer = null;
    }
    forget() {
      this.cancelTimeout();
      if (this.ref !== null && this.channel.pending.get(this.ref) === this) this.channel.pending.delete(this.ref);
    }
    trigger(status, response) {
      this.forget();
      this.received = { status, response };
      for (const hook of this.hooks.slice()) {
        if (hook.status === status) hook.callback(response);
      }
    }
  }

  const STATES = { closed: "closed", errored: "errored", joined: "joined", joining: "joining", leaving: "leaving" };

  class Channel {
    constructor(topic, params, socket) {
      this.topic = topic;
      this.socket = socket;
      this.state = STATES.closed;
      this.joinRef = null;
      this.joinedOnce = false;
      this.left = false;
      this.timeout = socket.timeout;
      this.bindings = [];
      this.bindingRef = 0;
      this.pending = new Map(); // ref -> Push awaiting its reply
      this.buffer = []; // pushes waiting for the join
      this.rejoinTimer = new RetryTimer(() => {
        if (this.socket.isConnected()) this.rejoin();
      }, socket.rejoinAfterMs);
      this.joinPush = new Push(this, EVENTS.join, params || {}, this.timeout);
      this.joinPush
        .receive("ok", () => {
          this.state = STATES.joined;
          this.rejoinTimer.reset();
          const waiting = this.buffer.splice(0);
          for (const p of waiting) if (!p.received) p.send(); // not those that timed out meanwhile
          this.socket.log("channel", `joined ${this.topic}`);
        })
        .receive("error", (response) => {
          this.state = STATES.errored;
          this.socket.log("channel", `join of ${this.topic} refused`, response);
          if (this.socket.isConnected()) this.rejoinTimer.schedule();
        })
        .receive("timeout", () => {
          this.socket.log("channel", `join of ${this.topic} timed out`);
          // Tell the server to drop the join that may still come up, then try again.
          const stale = this.joinRef;
          new Push(this, EVENTS.leave, {}, this.timeout).send(undefined, stale);
          this.state = STATES.errored;
          if (this.socket.isConnected()) this.rejoinTimer.schedule();
        });
    }

    /** Joins (once per Channel object); returns the join Push for its replies. */
    join(timeout) {
      if (this.joinedOnce) throw new Error(`tried to join ${this.topic} more than once; use a new channel`);
      if (timeout !== undefined) this.joinPush.timeout = timeout;
      this.joinedOnce = true;
      this.rejoin();
      return this.joinPush;
    }

    rejoin() {
      if (this.left) return;
      this.rejoinTimer.reset();
      this.state = STATES.joining;
      // The join's ref is its join_ref: frames of earlier joins are ignored from now on.
      this.joinRef = this.socket.makeRef();
      this.joinPush.send(this.joinRef, this.joinRef);
    }

    /** Sends event with payload; returns the Push for its replies. Buffered until joined. */
    push(event, payload, timeout) {
      if (!this.joinedOnce) throw new Error(`tried to push "${event}" to ${this.topic} before joining it`);
      const p = new Push(this, event, payload, timeout !== undefined ? timeout : this.timeout);
      if (this.canPush()) {
        p.send();
      } else {
        p.startTimeout();
        this.buffer.push(p);
      }
      return p;
    }

    /** Leaves the channel; the returned Push gets "ok" when the server confirmed (or could not). */
    leave(timeout) {
      this.left = true;
      this.rejoinTimer.reset();
      this.joinPush.forget();
      this.state = STATES.leaving;
      const onClose = () => {
        this.state = STATES.closed;
        this.socket.remove(this);
        this.trigger(EVENTS.close, {}, null);
      };
      const p = new Push(this, EVENTS.leave, {}, timeout !== undefined ? timeout : this.timeout);
      p.receive("ok", onClose).receive("timeout", onClose);
      if (this.canPush()) p.send();
      else p.trigger("ok", {});
      return p;
    }

    /** callback(payload, ref) for every event of this name; returns a ref for off(). */
    on(event, callback) {
      const ref = ++this.bindingRef;
      this.bindings.push({ event, ref, callback });
      return ref;
    }

    off(event, ref) {
      this.bindings = this.bindings.filter((b) => !(b.event === event && (ref === undefined || b.ref === ref)));
    }

    canPush() {
      return this.socket.isConnected() && this.state === STATES.joined;
    }

    isJoined() {
      return this.state === STATES.joined;
    }

    trigger(event, payload, ref) {
      for (const b of this.bindings.slice()) {
        if (b.event === event) b.callback(payload, ref);
      }
    }

    // -- from the socket ------------------------------------------------------------------

    handleMessage(msg) {
      if (msg.join_ref !== null && msg.join_ref !== undefined && msg.join_ref !== this.joinRef) {
        return; // a frame of an earlier join of this topic
      }
      if ((this.state === STATES.leaving || this.state === STATES.closed) && msg.event !== EVENTS.reply) {
        return; // a broadcast still on its way to a channel being left
      }
      switch (msg.event) {
        case EVENTS.reply: {
          const p = this.pending.get(msg.ref);
          const payload = msg.payload || {};
          if (p) p.trigger(payload.status, payload.response);
          return;
        }
        case EVENTS.error:
          this.serverLost("error");
          this.trigger(msg.event, msg.payload, msg.ref);
          return;
        case EVENTS.close:
          if (this.state === STATES.leaving || this.state === STATES.closed) return;
          this.serverLost("close");
          this.trigger(msg.event, msg.payload, msg.ref);
          return;
        default:
          this.trigger(msg.event, msg.payload, msg.ref);
      }
    }

    /** The server-side channel is gone (crash or stop): rejoin after a back-off. */
    serverLost(why) {
      if (this.state === STATES.leaving || this.state === STATES.closed) return;
      this.socket.log("channel", `${this.topic}: server sent phx_${why}, rejoining`);
      this.joinPush.forget();
      this.state = STATES.errored;
      if (this.socket.isConnected()) this.rejoinTimer.schedule();
    }

    socketOpened() {
      if (this.state === STATES.errored) this.rejoin();
    }

    socketClosed() {
      if (this.state === STATES.joined || this.state === STATES.joining) {
        this.joinPush.forget();
        this.state = STATES.errored;
      }
      this.rejoinTimer.reset(); // the socket's open rejoins
    }
  }

  const MAX_LONGPOLL_BATCH = 100; // frames per POST, as phoenix.js
  const LONGPOLL_TIMEOUT = 20000; // a request's bound; above the server's 10 s window
  const FALLBACK_KEY = "phx:fallback:LongPoll";

  /**
   * Phoenix's long-poll transport, with the interface of a WebSocket as Socket uses it
   * (readyState, send, close, onopen/onmessage/onerror/onclose).
   *
   * The wire (every answer is HTTP 200 with a JSON body {status, token, messages}):
   * GET without a token opens a session (410 + its token); GET ?token=T answers 200 with
   * the messages the server holds for us, or 204 when none came within its window, and is
   * sent again at once; 403 means refused. Frames go up in POSTs of application/x-ndjson,
   * one frame a line, at most 100 a POST, one POST at a time; frames sent meanwhile wait
   * for the next. Any failure (a network error, a timeout, 500, a POST not answered 200,
   * or a 410 once open: the server lost the session) closes the transport, so the socket
   * reconnects with a new session and its channels rejoin.
   */
  class LongPoll {
    constructor(url) {
      this.pollURL = LongPoll.pollURL(url);
      this.token = null;
      this.readyState = 0; // 0 connecting, 1 open, 3 closed (as WebSocket)
      this.skipHeartbeat = true; // every poll is one
      this.timeout = LONGPOLL_TIMEOUT;
      this.requests = new Set();
      this.batch = null; // frames gathered in this turn of the event loop
      this.batchTimer = null;
      this.queued = []; // frames sent while a POST is in flight
      this.posting = false;
      this.onopen = this.onerror = this.onmessage = this.onclose = null;
      // The socket sets the callbacks after constructing us: start on the next turn.
      setTimeout(() => this.poll(), 0);
    }

    /** "ws://h/socket/websocket?vsn=2.0.0" -> "http://h/socket/longpoll?vsn=2.0.0" */
    static pollURL(url) {
      return url.replace(/^ws(s?):/, "http$1:").replace(/\/websocket(?=\?|#|$)/, "/longpoll");
    }

    requestURL() {
      if (this.token === null) return this.pollURL;
      return this.pollURL + (this.pollURL.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.token);
    }

    poll() {
      this.request("GET", "application/json", null, (answer) => {
        if (answer.failed) return this.fail(answer.failed, 1006, answer.failed);
        const body = answer.body || {};
        if (typeof body.token === "string") this.token = body.token;
        switch (body.status) {
          case 200:
            // Each message in a task of its own, as WebSocket messages arrive.
            for (const data of Array.isArray(body.messages) ? body.messages : []) {
              setTimeout(() => {
                if (this.readyState === 1 && this.onmessage) this.onmessage({ data });
              }, 0);
            }
            return this.poll();
          case 204:
            return this.poll();
          case 410:
            if (this.readyState === 1) return this.fail(410, 1006, "session lost");
            this.readyState = 1;
            if (this.onopen) this.onopen({});
            return this.poll();
          case 403:
            return this.fail(403, 1008, "forbidden");
          default:
            return this.fail(body.status === undefined ? 0 : body.status, 1011, "internal server error");
        }
      });
    }

    send(data) {
      if (typeof data !== "string") data = LongPoll.base64(data);
      if (this.batch !== null) {
        this.batch.push(data);
      } else if (this.posting) {
        this.queued.push(data);
      } else {
        // Everything sent in this turn of the event loop goes in one POST.
        this.batch = [data];
        this.batchTimer = setTimeout(() => {
          const frames = this.batch;
          this.batch = null;
          this.batchTimer = null;
          this.post(frames);
        }, 0);
      }
    }

    post(frames) {
      this.posting = true;
      const now = frames.slice(0, MAX_LONGPOLL_BATCH);
      const later = frames.slice(MAX_LONGPOLL_BATCH);
      this.request("POST", "application/x-ndjson", now.join("\n"), (answer) => {
        const status = answer.failed || (answer.body && answer.body.status);
        if (status !== 200) return this.fail(status, 1011, "internal server error");
        const next = later.concat(this.queued.splice(0));
        if (next.length > 0) this.post(next);
        else this.posting = false;
      });
    }

    close(code, reason) {
      this.finish({ code: code || 1000, reason: reason || "", wasClean: true });
    }

    fail(what, code, reason) {
      if (this.readyState === 3) return;
      if (this.onerror) this.onerror(what);
      this.finish({ code, reason, wasClean: false });
    }

    finish(event) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      clearTimeout(this.batchTimer);
      this.batch = null;
      this.queued = [];
      for (const xhr of this.requests) xhr.abort();
      this.requests.clear();
      if (this.onclose) this.onclose(event);
    }

    /** callback({body} | {failed: 0 | "timeout"}), never after close. */
    request(method, contentType, body, callback) {
      if (this.readyState === 3) return;
      const xhr = new XMLHttpRequest();
      const done = (answer) => {
        if (!this.requests.delete(xhr) || this.readyState === 3) return;
        callback(answer);
      };
      xhr.open(method, this.requestURL(), true);
      xhr.timeout = this.timeout;
      xhr.setRequestHeader("Content-Type", contentType);
      xhr.onload = () => {
        let parsed = null;
        try {
          parsed = JSON.parse(xhr.responseText);
        } catch (e) {
          // not JSON: a proxy's error page, say; handled as status 0
        }
        done(xhr.status === 200 && parsed !== null && typeof parsed === "object" ? { body: parsed } : { failed: xhr.status || 0 });
      };
      xhr.onerror = () => done({ failed: 0 });
      xhr.ontimeout = () => done({ failed: "timeout" });
      this.requests.add(xhr);
      xhr.send(body);
    }

    static base64(buffer) {
      const bytes = new Uint8Array(buffer);
      let text = "";
      for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
      return btoa(text);
    }
  }

  /** opts.transport: "websocket", "longpoll", or a class (a WebSocket-like constructor). */
  function transportClass(option) {
    if (option === "longpoll") return LongPoll;
    if (option === undefined || option === null || option === "websocket") return global.WebSocket || LongPoll;
    if (typeof option === "function") return option;
    throw new Error(`unknown transport ${option}: use "websocket", "longpoll" or a class`);
  }

  function sessionStore() {
    try {
      return global.sessionStorage || null;
    } catch (e) {
      return null; // storage disabled: the fallback is not remembered
    }
  }

  class Socket {
    /**
     * endPoint: "/socket" (same host as the page), "//host:port/socket" or "ws://host:port/socket".
     * opts: params (object or function), timeout (10000 ms), heartbeatIntervalMs (30000),
     * reconnectAfterMs(tries), rejoinAfterMs(tries), logger(kind, msg, data),
     * transport ("websocket", "longpoll" or a class), longPollFallbackMs (off by default),
     * longpollerTimeout (20000 ms: the bound of one LongPoll request).
     */
    constructor(endPoint, opts) {
      opts = opts || {};
      this.endPoint = endPoint.replace(/\/+$/, "") + "/websocket";
      this.params = opts.params || {};
      this.timeout = opts.timeout || DEFAULT_TIMEOUT;
      this.heartbeatIntervalMs = opts.heartbeatIntervalMs || HEARTBEAT_INTERVAL;
      this.reconnectAfterMs = opts.reconnectAfterMs || backoff([1000, 2000, 5000, 10000]);
      this.rejoinAfterMs = opts.rejoinAfterMs || backoff([1000, 2000, 5000, 10000]);
      this.logger = opts.logger || null;
      this.transport = transportClass(opts.transport);
      this.longPollFallbackMs = opts.longPollFallbackMs || null;
      this.longpollerTimeout = opts.longpollerTimeout || LONGPOLL_TIMEOUT;
      this.sessionStore = opts.sessionStorage !== undefined ? opts.sessionStorage : sessionStore();
      this.fallbackTimer = null;
      this.fallbackPingRef = null;
      this.fellBack = false;
      this.primaryPassedHealthCheck = false;
      this.conn = null;
      this.ref = 0;
      this.channels = [];
      this.sendBuffer = [];
      this.heartbeatTimer = null;
      this.pendingHeartbeatRef = null;
      this.closeWasClean = false;
      this.callbacks = { open: [], close: [], error: [], message: [] };
      this.reconnectTimer = new RetryTimer(() => this.connect(), this.reconnectAfterMs);
    }

    log(kind, msg, data) {
      if (this.logger) this.logger(kind, msg, data);
    }

    onOpen(callback) {
      this.callbacks.open.push(callback);
    }
    /** callback(closeEvent, reconnectInMs or null) */
    onClose(callback) {
      this.callbacks.close.push(callback);
    }
    onError(callback) {
      this.callbacks.error.push(callback);
    }
    onMessage(callback) {
      this.callbacks.message.push(callback);
    }

    endPointURL() {
      const params = typeof this.params === "function" ? this.params() : this.params;
      const query = new URLSearchParams({ ...params, vsn: VSN }).toString();
      let url = this.endPoint;
      if (url.startsWith("//")) {
        url = (global.location.protocol === "https:" ? "wss:" : "ws:") + url;
      } else if (url.startsWith("/")) {
        url = (global.location.protocol === "https:" ? "wss://" : "ws://") + global.location.host + url;
      }
      return `${url}?${query}`;
    }

    makeRef() {
      this.ref += 1;
      return String(this.ref);
    }

    isConnected() {
      return this.conn !== null && this.conn.readyState === 1;
    }

    connect() {
      if (this.conn !== null) return;
      this.reconnectTimer.reset();
      this.closeWasClean = false;
      // Only until a WebSocket has worked on this page: later failures are the server's
      // or the network's (a restart, an outage), not a proxy that blocks WebSockets.
      if (this.longPollFallbackMs && this.transport !== LongPoll && !this.primaryPassedHealthCheck) {
        if (this.fallbackRemembered()) return this.fallBack("remembered for this session");
        clearTimeout(this.fallbackTimer);
        this.fallbackTimer = setTimeout(() => this.fallBack("no healthy connection"), this.longPollFallbackMs);
      }
      const conn = new this.transport(this.endPointURL());
      conn.timeout = this.longpollerTimeout;
      this.conn = conn;
      conn.onopen = () => this.connOpened(conn);
      conn.onerror = (event) => this.connError(conn, event);
      conn.onmessage = (event) => this.connMessage(conn, event);
      conn.onclose = (event) => this.connClosed(conn, event);
    }

    /** Closes for good: no reconnect. */
    disconnect(code, reason) {
      this.closeWasClean = true;
      this.reconnectTimer.reset();
      clearTimeout(this.fallbackTimer);
      this.fallbackTimer = null;
      const conn = this.conn;
      if (conn === null) return;
      this.dropConnection(code || 1000, reason || "", false);
    }

    channel(topic, params) {
      const channel = new Channel(topic, params, this);
      this.channels.push(channel);
      return channel;
    }

    remove(channel) {
      this.channels = this.channels.filter((c) => c !== channel);
    }

    /** Sends a message now, or once the connection is open. */
    push(msg) {
      const send = () => this.conn.send(Serializer.encode(msg));
      if (this.isConnected()) send();
      else this.sendBuffer.push(send);
    }

    // -- connection events (each checks that it is about the current connection) ----------

    connOpened(conn) {
      if (conn !== this.conn) return;
      this.log("transport", `${this.transport.name} connected to ${this.endPointURL()}`);
      this.reconnectTimer.reset();
      const waiting = this.sendBuffer.splice(0);
      for (const send of waiting) send();
      this.startHeartbeat();
      if (this.fallbackTimer !== null && this.transport !== LongPoll) {
        // Open is not enough (a proxy may pass the upgrade and then no frames): healthy
        // once a heartbeat is answered within another longPollFallbackMs.
        clearTimeout(this.fallbackTimer);
        this.fallbackTimer = setTimeout(() => this.fallBack("no heartbeat answered"), this.longPollFallbackMs);
        this.fallbackPingRef = this.makeRef();
        this.push({ topic: "phoenix", event: EVENTS.heartbeat, payload: {}, ref: this.fallbackPingRef, join_ref: null });
      }
      if (this.fellBack && this.transport === LongPoll && !this.primaryPassedHealthCheck) {
        this.rememberFallback();
        this.log("transport", "established LongPoll fallback");
      }
      for (const c of this.channels.slice()) c.socketOpened();
      for (const cb of this.callbacks.open) cb();
    }

    connError(conn, event) {
      if (conn !== this.conn) return;
      this.log("transport", "connection error", event);
      for (const cb of this.callbacks.error) cb(event);
      // A WebSocket that fails before it was healthy: fall back now, not at the timer.
      if (this.fallbackTimer !== null && this.transport !== LongPoll && conn === this.conn) this.fallBack("WebSocket error");
    }

    connMessage(conn, event) {
      if (conn !== this.conn) return;
      if (typeof event.data !== "string") {
        this.log("transport", "ignored a binary frame");
        return;
      }
      let msg;
      try {
        msg = Serializer.decode(event.data);
      } catch (e) {
        this.log("transport", "undecodable frame", event.data);
        return;
      }
      if (msg.topic === "phoenix" && msg.event === EVENTS.reply && msg.ref === this.pendingHeartbeatRef) {
        this.pendingHeartbeatRef = null;
      }
      if (msg.topic === "phoenix" && msg.ref !== null && msg.ref === this.fallbackPingRef) {
        this.fallbackPingRef = null;
        this.primaryPassedHealthCheck = true;
        clearTimeout(this.fallbackTimer);
        this.fallbackTimer = null;
        this.log("transport", "WebSocket healthy: no LongPoll fallback");
      }
      for (const c of this.channels.slice()) {
        if (c.topic === msg.topic) c.handleMessage(msg);
      }
      for (const cb of this.callbacks.message) cb(msg);
    }

    connClosed(conn, event) {
      if (conn !== this.conn) return;
      this.conn = null;
      this.stopHeartbeat();
      this.sendBuffer = []; // joins waiting for this connection: channels rejoin on the next
      for (const c of this.channels.slice()) c.socketClosed();
      let delay = null;
      if (!this.closeWasClean) delay = this.reconnectTimer.schedule();
      this.log("transport", `closed (${event.code}${event.reason ? " " + event.reason : ""})` + (delay !== null ? `, reconnecting in ${delay} ms` : ""));
      for (const cb of this.callbacks.close) cb(event, delay);
    }

    /** Closes the current connection and handles it as closed now, without waiting for the handshake. */
    dropConnection(code, reason, reconnect) {
      const conn = this.conn;
      if (conn === null) return;
      conn.onopen = conn.onmessage = conn.onerror = conn.onclose = null;
      try {
        conn.close(code, reason);
      } catch (e) {
        // an invalid code or a connection still opening: it is dropped all the same
      }
      this.closeWasClean = !reconnect;
      this.connClosed(conn, { code, reason, wasClean: false });
    }

    // -- the LongPoll fallback ---------------------------------------------------------------

    fallBack(why) {
      clearTimeout(this.fallbackTimer);
      this.fallbackTimer = null;
      this.fallbackPingRef = null;
      this.log("transport", `falling back to LongPoll (${why})`);
      this.fellBack = true;
      this.replaceTransport(LongPoll);
      this.connect();
    }

    /** Drops the current connection without reconnecting or telling onClose, and uses transport from now on. */
    replaceTransport(transport) {
      const conn = this.conn;
      this.transport = transport;
      this.reconnectTimer.reset();
      if (conn === null) return;
      conn.onopen = conn.onmessage = conn.onerror = conn.onclose = null;
      try {
        conn.close(1000, "replaced");
      } catch (e) {
        // still opening: dropped all the same
      }
      this.conn = null;
      this.stopHeartbeat();
      this.sendBuffer = []; // joins waiting for this connection: channels rejoin on the next
      for (const c of this.channels.slice()) c.socketClosed();
    }

    fallbackRemembered() {
      try {
        return !!(this.sessionStore && this.sessionStore.getItem(FALLBACK_KEY));
      } catch (e) {
        return false;
      }
    }

    rememberFallback() {
      try {
        if (this.sessionStore) this.sessionStore.setItem(FALLBACK_KEY, "true");
      } catch (e) {
        // storage full or disabled: the next page load tries WebSocket again
      }
    }

    // -- heartbeat ------------------------------------------------------------------------

    startHeartbeat() {
      this.stopHeartbeat();
      if (this.conn !== null && this.conn.skipHeartbeat) return;
      this.heartbeatTimer = setInterval(() => this.sendHeartbeat(), this.heartbeatIntervalMs);
    }

    stopHeartbeat() {
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = null;
      this.pendingHeartbeatRef = null;
    }

    sendHeartbeat() {
      if (!this.isConnected()) return;
      if (this.pendingHeartbeatRef !== null) {
        this.log("transport", "heartbeat timeout: reconnecting");
        this.dropConnection(1000, "heartbeat timeout", true);
        return;
      }
      this.pendingHeartbeatRef = this.makeRef();
      this.push({ topic: "phoenix", event: EVENTS.heartbeat, payload: {}, ref: this.pendingHeartbeatRef, join_ref: null });
    }
  }

  /**
   * Presence: who is on a channel's topic, kept from the server's "presence_state" and
   * "presence_diff" events (Phoenix.Presence's format: {key: {metas: [{phx_ref, ...}]}}).
   *
   *   const presence = new Phx.Presence(channel);
   *   presence.onSync(() => render(presence.list((key, entry) => ({key, count: entry.metas.length}))));
   *
   * Diffs are held until the state of the channel's current join has arrived (the
   * server may send the diff of our own join first, and a rejoin starts over with a new
   * state), then applied in order. syncState/syncDiff are pure: they return the new state.
   */
  class Presence {
    constructor(channel, opts) {
      const events = (opts && opts.events) || { state: "presence_state", diff: "presence_diff" };
      this.channel = channel;
      this.state = {};
      this.pendingDiffs = [];
      this.syncedJoinRef = null;
      this.callbacks = { join: () => {}, leave: () => {}, sync: () => {} };
      channel.on(events.state, (newState) => {
        const { join, leave } = this.callbacks;
        this.syncedJoinRef = channel.joinRef;
        this.state = Presence.syncState(this.state, newState, join, leave);
        for (const diff of this.pendingDiffs.splice(0)) this.state = Presence.syncDiff(this.state, diff, join, leave);
        this.callbacks.sync();
      });
      channel.on(events.diff, (diff) => {
        if (this.inPendingSyncState()) {
          this.pendingDiffs.push(diff);
          return;
        }
        this.state = Presence.syncDiff(this.state, diff, this.callbacks.join, this.callbacks.leave);
        this.callbacks.sync();
      });
    }

    /** True until the state of the channel's current join has arrived. */
    inPendingSyncState() {
      return this.syncedJoinRef === null || this.syncedJoinRef !== this.channel.joinRef;
    }

    onJoin(callback) { this.callbacks.join = callback; }
    onLeave(callback) { this.callbacks.leave = callback; }
    onSync(callback) { this.callbacks.sync = callback; }

    /** chooser(key, entry) for every key (default: the entries themselves). */
    list(chooser) {
      return Presence.list(this.state, chooser);
    }

    static list(state, chooser) {
      const pick = chooser || ((key, entry) => entry);
      return Object.keys(state).map((key) => pick(key, state[key]));
    }

    /** The state after replacing it with newState: the difference is applied as a diff. */
    static syncState(current, newState, onJoin, onLeave) {
      const state = Presence.clone(current);
      const joins = {};
      const leaves = {};
      for (const key of Object.keys(state)) {
        if (!(key in newState)) leaves[key] = state[key];
      }
      for (const key of Object.keys(newState)) {
        const next = newState[key];
        const cur = state[key];
        if (!cur) {
          joins[key] = next;
          continue;
        }
        const nextRefs = new Set(next.metas.map((m) => m.phx_ref));
        const curRefs = new Set(cur.metas.map((m) => m.phx_ref));
        const joined = next.metas.filter((m) => !curRefs.has(m.phx_ref));
        const left = cur.metas.filter((m) => !nextRefs.has(m.phx_ref));
        if (joined.length) joins[key] = Object.assign({}, next, { metas: joined });
        if (left.length) leaves[key] = Object.assign({}, cur, { metas: left });
      }
      return Presence.syncDiff(state, { joins, leaves }, onJoin, onLeave);
    }

    /** The state after a diff: joined metas added under their key, left ones removed. */
    static syncDiff(current, diff, onJoin, onLeave) {
      const state = Presence.clone(current);
      const joins = diff.joins || {};
      const leaves = diff.leaves || {};
      for (const key of Object.keys(joins)) {
        const cur = state[key];
        const entry = Presence.clone(joins[key]);
        if (cur) {
          const joinedRefs = new Set(entry.metas.map((m) => m.phx_ref));
          entry.metas.unshift(...cur.metas.filter((m) => !joinedRefs.has(m.phx_ref)));
        }
        state[key] = entry;
        if (onJoin) onJoin(key, cur, joins[key]);
      }
      for (const key of Object.keys(leaves)) {
        const cur = state[key];
        if (!cur) continue;
        const gone = new Set(leaves[key].metas.map((m) => m.phx_ref));
        cur.metas = cur.metas.filter((m) => !gone.has(m.phx_ref));
        if (onLeave) onLeave(key, cur, leaves[key]);
        if (cur.metas.length === 0) delete state[key];
      }
      return state;
    }

    static clone(value) {
      return JSON.parse(JSON.stringify(value));
    }
  }

  global.Phx = { Socket, Channel, Push, Presence, Serializer, LongPoll, backoff, VSN };
})(typeof window !== "undefined" ? window : globalThis);
