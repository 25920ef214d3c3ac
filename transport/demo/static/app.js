// The demo page: live numbers from numbers:positive / numbers:negative, and a chat in room:lobby.
// window.demo exposes the socket and channels (and a log of channel events) for the console and tests.
// The socket uses WebSocket and falls back to LongPoll when WebSockets are blocked (as a
// Phoenix app's app.js does with longPollFallbackMs); ?transport=longpoll uses LongPoll only.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const ROOM = "room:lobby";
  const MAX_MESSAGES = 200;
  const events = []; // "numbers:positive joined", "room:lobby phx_error", ...

  function note(what) {
    events.push(what);
    if (events.length > 500) events.shift();
  }

  const longPollOnly = new URLSearchParams(window.location.search).get("transport") === "longpoll";
  const socket = new Phx.Socket("/socket", {
    transport: longPollOnly ? "longpoll" : "websocket",
    longPollFallbackMs: longPollOnly ? undefined : 2500,
    logger: (kind, msg, data) => {
      if (kind === "transport" && msg.startsWith("falling back")) note(msg);
      console.debug(`[phx ${kind}] ${msg}`, data === undefined ? "" : data);
    },
  });

  // -- connection badge ---------------------------------------------------------------------

  const badge = $("connection");
  let countdown = null;

  function setBadge(text, cls) {
    badge.textContent = text;
    badge.className = "badge " + (cls || "");
  }

  socket.onOpen(() => {
    clearInterval(countdown);
    note(`socket open ${socket.transport.name}`);
    document.body.classList.remove("offline");
    setBadge(socket.transport === Phx.LongPoll ? "connected · long polling" : "connected", "connected");
  });

  socket.onClose((event, reconnectInMs) => {
    clearInterval(countdown);
    note(`socket closed ${event.code}`);
    document.body.classList.add("offline"); // numbers go grey until the channels rejoin
    if (room) {
      sendButton.disabled = true;
      setChatStatus("offline · the room is rejoined when the connection is back");
    }
    if (reconnectInMs === null) {
      setBadge("disconnected", "disconnected");
      return;
    }
    const due = Date.now() + reconnectInMs;
    const tick = () => {
      const s = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setBadge(s > 0 ? `disconnected · retrying in ${s}s` : "reconnecting…", "disconnected");
    };
    tick();
    countdown = setInterval(tick, 250);
  });

  // -- numbers --------------------------------------------------------------------------------

  const numbers = {};
  for (const sign of ["positive", "negative"]) {
    const topic = `numbers:${sign}`;
    const el = $(sign);
    const channel = socket.channel(topic);
    channel.on("update", (payload) => {
      el.textContent = String(payload.number);
      el.dataset.number = String(payload.number);
    });
    channel.on("phx_error", () => note(`${topic} phx_error`));
    channel
      .join()
      .receive("ok", () => note(`${topic} joined`))
      .receive("error", (response) => note(`${topic} refused ${response && response.reason}`));
    numbers[sign] = channel;
  }

  // -- chat -----------------------------------------------------------------------------------

  const nameInput = $("name");
  const messageInput = $("message");
  const sendButton = $("send");
  const chatStatus = $("chat-status");
  const list = $("messages");
  const present = $("present");
  let room = null;
  let presence = null;

  // Who is in the room: one entry per name, with the number of tabs (metas) it has open.
  function renderPresence() {
    present.replaceChildren();
    if (!presence) return;
    const people = presence.list((name, entry) => ({ name, count: entry.metas.length }));
    people.sort((a, b) => a.name.localeCompare(b.name));
    for (const { name, count } of people) {
      const li = document.createElement("li");
      li.dataset.name = name;
      li.dataset.count = String(count);
      li.textContent = name;
      if (count > 1) {
        const c = document.createElement("span");
        c.className = "count";
        c.textContent = `×${count}`;
        li.append(c);
      }
      present.append(li);
    }
  }

  function addMessage(name, body, extraClass) {
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    if (extraClass) li.className = extraClass;
    const who = document.createElement("span");
    who.className = "name";
    who.textContent = name;
    li.append(who, document.createTextNode(body));
    list.append(li);
    while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  const joinButton = $("join");

  function setChatStatus(text) {
    chatStatus.textContent = text;
  }

  function joinRoom(name) {
    if (room) room.leave();
    const channel = socket.channel(ROOM, { name });
    room = channel;
    presence = new Phx.Presence(channel);
    presence.onSync(() => {
      if (channel === room) renderPresence();
    });
    renderPresence();
    sendButton.disabled = true;
    setChatStatus(`joining as ${name}…`);
    channel.on("new_msg", (payload) => addMessage(payload.name, payload.body));
    channel.on("phx_error", () => {
      note(`${ROOM} phx_error`);
      sendButton.disabled = true;
      setChatStatus("the room's channel crashed · rejoining…");
    });
    channel
      .join()
      .receive("ok", () => {
        if (channel !== room) return;
        note(`${ROOM} joined as ${name}`);
        sendButton.disabled = false;
        joinButton.textContent = "Rename"; // joined: the same form now changes the name
        setChatStatus(`joined ${ROOM} as ${name}`);
      })
      .receive("error", (response) => {
        if (channel !== room) return;
        note(`${ROOM} refused ${response && response.reason}`);
        setChatStatus(`could not join: ${(response && response.reason) || "refused"}`);
      });
  }

  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!name) {
      setChatStatus("enter a name first");
      return;
    }
    joinRoom(name);
  });

  $("message-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = messageInput.value;
    if (!body.trim()) {
      messageInput.value = ""; // nothing to send: do not leave the blanks in the box
      return;
    }
    if (!room) return;
    room
      .push("new_msg", { body })
      .receive("ok", () => {
        if (messageInput.value === body) messageInput.value = "";
      })
      .receive("error", (response) => setChatStatus(`not sent: ${(response && response.reason) || "error"}`))
      .receive("timeout", () => setChatStatus("not sent: no answer from the server"));
  });

  nameInput.value = "guest-" + Math.floor(1000 + Math.random() * 9000);
  socket.connect();
  joinRoom(nameInput.value);

  window.demo = {
    socket,
    get transport() {
      return socket.transport.name;
    },
    numbers,
    events,
    get room() {
      return room;
    },
    get presence() {
      return presence;
    },
  };
})();
