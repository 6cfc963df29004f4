/* HelpLoop chat widget. One tag on any page:
 *   <script src="https://bot.example.com/widget.js" data-helploop-url="https://bot.example.com" defer></script>
 * No build step, no dependencies. Everything the bot or the user writes is inserted as text; the bot's
 * Markdown is rendered from escaped text with a small whitelist (bold, italics, code, links, lists).
 * Every text of the widget can be replaced on the tag, for another wording or language: data-helploop-KEY,
 * KEY from TEXTS below with "_" written "-" (data-helploop-greeting="Hallo! Wie kann ich helfen?",
 * data-helploop-send="Senden"), and data-helploop-lang="de" for screen readers.
 * data-helploop-metadata="product:savings|region:uk" answers only from the intents with that metadata
 * (every pair), e.g. one product's questions on that product's page.
 * data-helploop-color="#c2185b" (a hex colour) is the brand's colour: the text on it is white or dark,
 * whichever reads better, and where it is text on white it is darkened until it has WCAG's 4.5:1 contrast.
 * data-helploop-position="left" puts the bubble and the chat on the left. */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-helploop-url]");
  var base = ((script && script.getAttribute("data-helploop-url")) || "").replace(/\/+$/, "");
  var TEXTS = {
    title: "Help",
    greeting: "Hi! How can I help you today?",
    open_chat: "Open chat",
    close_chat: "Close chat",
    chat: "chat",
    talk_to_person: "Talk to a person",
    message: "Your message",
    placeholder: "Ask a question…",
    send: "Send",
    suggestions: "Suggestions",
    was_helpful: "Was this helpful?",
    helpful: "Helpful",
    not_helpful: "Not helpful",
    contact_title: "How can we reach you?",
    contact_prompt: "Leave your e-mail or phone number and a person will get back to you:",
    contact_placeholder: "you@example.com",
    typing: "The assistant is typing",
    agent_typing: "Someone from our team is typing",
    too_fast: "You're sending messages quickly — please wait a moment.",
    failed: "Sorry, something went wrong:",
    offline: "We can't be reached right now: check your connection and try again.",
    unavailable: "The assistant is unavailable for a moment: please try again.",
    kept: "Your message is still in the box to send again.",
    feedback_thanks: "Thanks — we'll use this to improve. You can also talk to a person.",
    feedback_failed: "Could not save feedback:",
    taken_over: "A person from our team will take over this conversation.",
    message_first: "Send a message first, then we can connect you with a person.",
    person_failed: "Could not reach a person:",
    agent_name: "Support team",
    agent_joined: "A person from our team has joined the chat.",
    agent_left: "The person from our team has left the chat; the assistant answers again.",
    new_message: "New message",
    rate_prompt: "How was your chat with our team?",
    rate_label: "{n} out of 5",
    rating_failed: "Could not save your rating:"
  };
  Object.keys(TEXTS).forEach(function (key) {
    var value = script && script.getAttribute("data-helploop-" + key.replace(/_/g, "-"));
    if (value) { TEXTS[key] = value; }
  });
  var theme = themeFrom(script && script.getAttribute("data-helploop-color"));
  var onLeft = !!script && script.getAttribute("data-helploop-position") === "left";
  var metadata = null;
  var metadataAttribute = script && script.getAttribute("data-helploop-metadata");
  if (metadataAttribute) {
    metadataAttribute.split("|").forEach(function (pair) {
      var at = pair.indexOf(":");
      if (at > 0) {
        metadata = metadata || {};
        metadata[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
      }
    });
  }
  var title = TEXTS.title;
  var lang = script && script.getAttribute("data-helploop-lang");
  var storageKey = "helploop:" + base + ":session";
  var sessionId = null;
  try { sessionId = window.localStorage.getItem(storageKey); } catch (e) { sessionId = null; }

  // The brand's colour as the widget's custom properties (widget.css): the colour, the text on it, a pale
  // tint for hovers, and the colour as text ("ink"), darkened until it reads on the chat's background.
  function rgbOf(color) {
    var match = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color);
    if (!match) { return null; }
    var hex = match[1].length === 3 ? match[1].replace(/./g, "$&$&") : match[1];
    return [0, 2, 4].map(function (at) { return parseInt(hex.slice(at, at + 2), 16); });
  }
  function luminance(rgb) {  // WCAG 2's relative luminance
    var linear = rgb.map(function (value) {
      value /= 255;
      return value <= 0.03928 ? value / 12.92 : Math.pow((value + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2];
  }
  function contrast(a, b) {
    var la = luminance(a), lb = luminance(b);
    return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
  }
  function rgbText(rgb) { return "rgb(" + rgb.map(Math.round).join(", ") + ")"; }
  function themeFrom(color) {
    if (!color) { return null; }
    var accent = rgbOf(color.trim());
    if (!accent) {
      console.warn("HelpLoop widget: data-helploop-color must be a hex colour such as #0b57d0; " +
                   JSON.stringify(color) + " is ignored");
      return null;
    }
    var white = [255, 255, 255], dark = [29, 35, 48], background = [246, 247, 251];
    var ink = accent;
    while (contrast(ink, background) < 4.5) {  // ends: black has 19:1
      ink = ink.map(function (value) { return value * 0.9; });
    }
    return {
      "--hl-accent": rgbText(accent),
      "--hl-on-accent": rgbText(contrast(accent, white) >= contrast(accent, dark) ? white : dark),
      "--hl-accent-soft": rgbText(accent.map(function (value) { return value * 0.12 + 255 * 0.88; })),
      "--hl-ink": rgbText(ink)
    };
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function inlineMarkdown(escaped) {
    return escaped
      .replace(/`([^`]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*]+)\*/g, "$1<em>$2</em>")
      .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, function (m, label, url) {
        return '<a href="' + url + '" target="_blank" rel="noopener noreferrer">' + label + "</a>";
      });
  }

  // Safe: the input is escaped first; only our own tags are added afterwards.
  function renderMarkdown(text) {
    var lines = escapeHtml(text).split(/\n/);
    var html = "", inList = false;
    lines.forEach(function (line) {
      var item = /^\s*[-*]\s+(.*)$/.exec(line);
      if (item) {
        if (!inList) { html += "<ul>"; inList = true; }
        html += "<li>" + inlineMarkdown(item[1]) + "</li>";
        return;
      }
      if (inList) { html += "</ul>"; inList = false; }
      if (line.trim()) { html += "<p>" + inlineMarkdown(line) + "</p>"; }
    });
    if (inList) { html += "</ul>"; }
    return html;
  }

  var css = el("link", { rel: "stylesheet", href: base + "/widget.css" });
  document.head.appendChild(css);

  var launcher = el("button", { type: "button", "class": "hl-launcher", "aria-label": TEXTS.open_chat,
                                "aria-expanded": "false", "aria-controls": "hl-panel" });
  launcher.innerHTML = '<svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true"><path fill="currentColor" d="M4 4h16v11H7l-3 3z"/></svg>';
  var panel = el("section", { id: "hl-panel", "class": "hl-panel", role: "dialog", "aria-modal": "false",
                              "aria-label": title + " " + TEXTS.chat, hidden: "" });
  if (lang) { panel.setAttribute("lang", lang); }
  [launcher, panel].forEach(function (node) {
    Object.keys(theme || {}).forEach(function (name) { node.style.setProperty(name, theme[name]); });
    if (onLeft) { node.classList.add("hl-left"); }
  });
  var header = el("header", { "class": "hl-header" });
  header.appendChild(el("h2", {}, title));
  var human = el("button", { type: "button", "class": "hl-human" }, TEXTS.talk_to_person);
  var close = el("button", { type: "button", "class": "hl-close", "aria-label": TEXTS.close_chat }, "×");
  header.appendChild(human);
  header.appendChild(close);
  var log = el("div", { "class": "hl-log", role: "log", "aria-live": "polite", "aria-relevant": "additions" });
  var form = el("form", { "class": "hl-form" });
  var input = el("input", { type: "text", "class": "hl-input", name: "message", autocomplete: "off",
                            maxlength: "1000", "aria-label": TEXTS.message, placeholder: TEXTS.placeholder });
  var send = el("button", { type: "submit", "class": "hl-send" }, TEXTS.send);
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(form);
  document.body.appendChild(launcher);
  document.body.appendChild(panel);

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function addUser(text) {
    var bubble = el("div", { "class": "hl-msg hl-user" }, text);
    log.appendChild(bubble);
    scrollDown();
  }

  function addBot(reply) {
    var wrap = el("div", { "class": "hl-msg hl-bot", "data-status": reply.status || "" });
    var body = el("div", { "class": "hl-text" });
    body.innerHTML = renderMarkdown(reply.answer || "");
    wrap.appendChild(body);
    if (reply.suggestions && reply.suggestions.length) {
      var chips = el("div", { "class": "hl-chips", role: "group", "aria-label": TEXTS.suggestions });
      reply.suggestions.forEach(function (s) {
        var chip = el("button", { type: "button", "class": "hl-chip", "data-intent": s.intent }, s.title);
        if (reply.chosen_intent === s.intent) { chip.setAttribute("aria-pressed", "true"); }  // resumed
        chip.addEventListener("click", function () {
          chip.setAttribute("aria-pressed", "true");  // the customer's answer to "did you mean", kept in sight
          sendMessage("/" + s.intent, s.title);
        });
        chips.appendChild(chip);
      });
      wrap.appendChild(chips);
    }
    // Declined, nobody asked to take it over; the answer just given, asked for again; or a thumbs-down: a
    // person is one click away
    if (reply.status === "off_topic" || reply.asked_again || reply.offer_person) {
      var offer = el("div", { "class": "hl-chips" });
      var ask = el("button", { type: "button", "class": "hl-chip hl-ask-person" }, TEXTS.talk_to_person);
      ask.addEventListener("click", function () { ask.setAttribute("aria-pressed", "true"); askForPerson(); });
      offer.appendChild(ask);
      wrap.appendChild(offer);
    }
    if (reply.turn_id && reply.status === "answered") {
      var rate = el("div", { "class": "hl-rate", role: "group", "aria-label": TEXTS.was_helpful,
                             "data-turn-id": String(reply.turn_id) });
      [["up", true, TEXTS.helpful], ["down", false, TEXTS.not_helpful]].forEach(function (spec) {
        var button = el("button", { type: "button", "class": "hl-thumb hl-thumb-" + spec[0],
                                    "aria-label": spec[2], "aria-pressed": "false", title: spec[2] });
        button.innerHTML = THUMB;  // a constant of ours, not user or bot text
        if (reply.helpful === spec[1]) { button.setAttribute("aria-pressed", "true"); }
        button.addEventListener("click", function () { feedback(reply.turn_id, spec[1], rate, button); });
        rate.appendChild(button);
      });
      wrap.appendChild(rate);
    }
    log.appendChild(wrap);
    scrollDown();
  }

  function addAgent(text) {
    var wrap = el("div", { "class": "hl-msg hl-bot hl-agent", "data-status": "agent" });
    wrap.appendChild(el("div", { "class": "hl-agent-name" }, TEXTS.agent_name));
    var body = el("div", { "class": "hl-text" });
    body.innerHTML = renderMarkdown(text);  // escaped first, like the bot's answers (they may start from one)
    wrap.appendChild(body);
    log.appendChild(wrap);
    scrollDown();
  }

  // The live chat after a handoff: while the customer waits for a person (or chats with one), poll for
  // the team's messages: every 3 s with the panel open, every 15 s when it is closed (the launcher then
  // shows a dot). Stops when the handoff has been dealt with.
  var lastMessageId = 0, agentActive = false, polling = false, pollTimer = null, shownIds = {};
  function showMessage(message) {
    lastMessageId = Math.max(lastMessageId, message.id);
    if (shownIds[message.id]) { return; }
    shownIds[message.id] = true;
    if (message.sender === "agent") {
      addAgent(message.text);
      if (panel.hidden) {
        launcher.classList.add("hl-unread");
        launcher.setAttribute("aria-label", TEXTS.open_chat + " (" + TEXTS.new_message + ")");
      }
    } else {
      addUser(message.text);
    }
  }
  function setAgent(active) {
    if (active && !agentActive) {
      addNotice(TEXTS.agent_joined);
      var pending = log.querySelector(".hl-contact");  // a person is here: no need to leave a contact
      if (pending) { pending.remove(); }
    }
    if (!active && agentActive) { addNotice(TEXTS.agent_left); askRating(); }
    agentActive = active;
  }
  function startPolling() {
    if (polling || !sessionId) { return; }
    polling = true;
    schedule();
  }
  function schedule() {
    window.clearTimeout(pollTimer);
    pollTimer = window.setTimeout(pollMessages, panel.hidden ? 15000 : 3000);
  }
  function pollMessages() {
    request("GET", "/api/v1/sessions/" + encodeURIComponent(sessionId) + "/messages?after=" + lastMessageId)
      .then(function (data) {
        // "joined" before the person's first words, "left" after their last ones
        if (data.agent_active) { setAgent(true); }
        data.messages.forEach(showMessage);  // the customer's own are already shown (shownIds)
        if (!data.agent_active) { setAgent(false); }
        showAgentTyping(!!data.agent_typing);
        if (data.waiting_for_person) { schedule(); } else { polling = false; }
      })
      .catch(function (error) {
        if (error.status === 404) { polling = false; return; }
        pollTimer = window.setTimeout(pollMessages, 30000);  // offline or rate-limited: back off
      });
  }

  // Someone from the team is writing to the customer (the poll says so, never who): the typing dots, last.
  var agentTyping = el("div", { "class": "hl-typing hl-agent-typing", role: "status", "aria-label": TEXTS.agent_typing });
  agentTyping.innerHTML = "<span></span><span></span><span></span>";
  function showAgentTyping(on) {
    if (!on) { agentTyping.remove(); return; }
    if (log.lastChild !== agentTyping) { log.appendChild(agentTyping); scrollDown(); }
  }

  function addNotice(text) {
    log.appendChild(el("div", { "class": "hl-notice", role: "status" }, text));
    scrollDown();
  }

  // After a handoff: how can a person reach the customer? Asked once per session.
  var contactAsked = false;
  function askContact() {
    if (contactAsked || !sessionId) { return; }
    contactAsked = true;
    var box = el("form", { "class": "hl-contact", "aria-label": TEXTS.contact_title });
    box.appendChild(el("label", { "for": "hl-contact-input" },
                       TEXTS.contact_prompt));
    var row = el("div", { "class": "hl-contact-row" });
    var field = el("input", { id: "hl-contact-input", type: "text", name: "contact", maxlength: "200", required: "",
                              autocomplete: "email", "class": "hl-input", placeholder: TEXTS.contact_placeholder,
                              "aria-describedby": "hl-contact-error" });
    row.appendChild(field);
    row.appendChild(el("button", { type: "submit", "class": "hl-send" }, TEXTS.send));
    box.appendChild(row);
    // What was wrong with the last try, under the field: replaced by the next try, not piled up in the log.
    var problem = el("p", { id: "hl-contact-error", "class": "hl-contact-error", role: "alert", hidden: "" });
    box.appendChild(problem);
    box.addEventListener("submit", function (event) {
      event.preventDefault();
      request("POST", "/api/v1/sessions/" + encodeURIComponent(sessionId) + "/contact", { contact: field.value })
        .then(function (data) { box.remove(); addNotice(data.message); startPolling(); })
        .catch(function (error) {
          problem.textContent = error.message;
          problem.hidden = false;
          field.setAttribute("aria-invalid", "true");
          field.focus();
        });
    });
    log.appendChild(box);
    scrollDown();
  }

  // When a live chat with the team has ended: how was it? (1-5, once; the answer can be changed by asking
  // again from another tab, and the last one counts.)
  var ratingAsked = false;
  function askRating() {
    if (ratingAsked || !sessionId) { return; }
    ratingAsked = true;
    var box = el("div", { "class": "hl-rating", role: "group", "aria-label": TEXTS.rate_prompt });
    box.appendChild(el("div", { "class": "hl-rating-prompt" }, TEXTS.rate_prompt));
    var row = el("div", { "class": "hl-rating-row" });
    [1, 2, 3, 4, 5].forEach(function (n) {
      var star = el("button", { type: "button", "class": "hl-star", "data-rating": String(n),
                                "aria-label": TEXTS.rate_label.replace("{n}", String(n)) }, String(n));
      star.addEventListener("click", function () {
        request("POST", "/api/v1/sessions/" + encodeURIComponent(sessionId) + "/rating", { rating: n })
          .then(function (data) { box.remove(); addNotice(data.message); })
          .catch(function (error) { addNotice(TEXTS.rating_failed + " " + error.message); });
      });
      row.appendChild(star);
    });
    box.appendChild(row);
    log.appendChild(box);
    scrollDown();
  }

  var THUMB = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path fill="currentColor" ' +
    'd="M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6C6.2 8 6 8.5 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z"/></svg>';

  var typing = el("div", { "class": "hl-typing", "aria-label": TEXTS.typing });
  typing.innerHTML = "<span></span><span></span><span></span>";

  function request(method, path, payload) {
    var options = { method: method, headers: {} };
    if (payload !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(payload);
    }
    return fetch(base + path, options).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var error = new Error((data && data.error && data.error.message) || "request failed");
          error.status = response.status;
          error.code = data && data.error && data.error.code;
          error.retryAfter = (data && data.error && data.error.retry_after) ||
            parseInt(response.headers.get("Retry-After") || "", 10);
          throw error;
        }
        return data;
      }, function () {  // not our JSON: a proxy's error page while the app restarts, say
        var error = new Error(TEXTS.unavailable);
        error.status = response.status;
        error.retry = true;
        throw error;
      });
    }, function () {  // no answer at all: the network, or the server is down
      var error = new Error(TEXTS.offline);
      error.retry = true;
      throw error;
    });
  }

  function remember(id) {
    sessionId = id;
    try { window.localStorage.setItem(storageKey, id); } catch (e) { /* private mode: no resume */ }
  }

  var busy = false;
  var LOADING_RETRIES = 6;
  function sendMessage(message, shown) {
    if (busy || !message.trim()) { return; }
    busy = true;
    send.disabled = true;
    addUser(shown || message);
    log.appendChild(typing);
    scrollDown();
    var payload = { message: message };
    if (sessionId) { payload.session_id = sessionId; }
    if (metadata) { payload.metadata = metadata; }
    // The page the customer asks from, for the team's live chat: its address without the query or the
    // fragment (they can carry tokens or personal data), and only a web page's (not a file opened locally).
    if (/^https?:$/.test(window.location.protocol)) {
      payload.page = (window.location.origin + window.location.pathname).slice(0, 1000);
    }
    // The model still loading (the app just started): ask again by itself, the typing dots showing, for
    // about half a minute before saying it could not be sent.
    function post(attempt) {
      return request("POST", "/api/v1/chat", payload).catch(function (error) {
        if (error.code !== "model_unavailable" || attempt >= LOADING_RETRIES) { throw error; }
        var seconds = Math.min(Math.max(error.retryAfter || 3, 1), 10);
        return new Promise(function (resolve) { window.setTimeout(resolve, seconds * 1000); })
          .then(function () { return post(attempt + 1); });
      });
    }
    post(0).then(function (reply) {
      remember(reply.session_id);
      typing.remove();
      if (reply.status === "agent") {  // a person is chatting: the message is theirs, the bot stays quiet
        shownIds[reply.message_id] = true;  // shown as typed; a poll must not show it twice
        setAgent(true);
        startPolling();
        return;
      }
      setAgent(false);
      if (reply.rated_turn_id) {  // "that's wrong": the answer it was about now shows its thumbs-down
        var rated = log.querySelector('.hl-rate[data-turn-id="' + reply.rated_turn_id + '"]');
        Array.prototype.forEach.call(rated ? rated.querySelectorAll("button") : [], function (b) {
          b.setAttribute("aria-pressed", b.classList.contains("hl-thumb-down") ? "true" : "false");
        });
      }
      addBot(reply);
      // "off_topic" (a message off the site's topic, declined) is no handoff: nobody is asked to take it over
      if (reply.status === "handoff") { askContact(); startPolling(); }
    }).catch(function (error) {
      typing.remove();
      if (error.code === "unknown_session") {
        sessionId = null;
        try { window.localStorage.removeItem(storageKey); } catch (e) { /* ignore */ }
      }
      if (error.retry || error.status >= 500) {  // not sent: the customer can send it again as typed
        if (!input.value) { input.value = message; }
        addNotice((error.retry ? error.message : TEXTS.unavailable) + " " + TEXTS.kept);
      } else {
        addNotice(error.status === 429 ? TEXTS.too_fast : TEXTS.failed + " " + error.message);
      }
    }).then(function () {
      busy = false;
      send.disabled = false;
      input.focus();
    });
  }

  function feedback(turnId, helpful, group, button) {
    var again = button.getAttribute("aria-pressed") === "true";  // pressed before: nothing new to offer
    request("POST", "/api/v1/feedback", { turn_id: turnId, helpful: helpful }).then(function (data) {
      Array.prototype.forEach.call(group.querySelectorAll("button"), function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      if (helpful || again) { return; }
      if (data && data.reply) {  // the bot's line, the intents ranked next as chips, and a person
        addBot({ answer: data.reply, status: "not_helpful", suggestions: data.suggestions, offer_person: true });
      } else {
        addNotice(TEXTS.feedback_thanks);
      }
    }).catch(function (error) { addNotice(TEXTS.feedback_failed + " " + error.message); });
  }

  function resume() {
    if (!sessionId) {
      addBot({ answer: TEXTS.greeting, status: "greeting" });
      return;
    }
    request("GET", "/api/v1/sessions/" + encodeURIComponent(sessionId)).then(function (data) {
      // Bot turns and the live chat's messages, in the order they happened.
      var entries = data.turns.map(function (turn) { return { at: turn.created_at, turn: turn }; })
        .concat((data.messages || []).map(function (m) { return { at: m.created_at, message: m }; }));
      entries.sort(function (a, b) { return a.at < b.at ? -1 : (a.at > b.at ? 1 : 0); });
      var titles = {};  // a clicked chip is shown by its title, as it was when clicked
      entries.forEach(function (entry) {
        if (entry.message) { showMessage(entry.message); return; }
        var turn = entry.turn;
        var clicked = turn.message.charAt(0) === "/" ? turn.message.slice(1) : null;
        addUser(clicked === null ? turn.message : (titles[clicked] || clicked.replace(/_/g, " ")));
        addBot({ answer: turn.answer, status: turn.status, suggestions: turn.suggestions,
                 turn_id: turn.turn_id, helpful: turn.helpful, chosen_intent: turn.chosen_intent,
                 asked_again: turn.asked_again });
        (turn.suggestions || []).forEach(function (s) { titles[s.intent] = s.title; });
      });
      // Still waiting for a person (asked, or the bot handed off, and not yet dealt with): say so, ask for a
      // contact unless one was left or a person is already here, and keep polling.
      var waiting = !!data.waiting_for_person;
      if (waiting && !data.agent_active) { addNotice(TEXTS.taken_over); }
      agentActive = !!data.agent_active;
      if (waiting && !data.contact_left && !data.agent_active) { askContact(); }
      if (waiting) { startPolling(); }
      if (data.can_rate && data.rating === null) { askRating(); }  // the chat ended before a rating
    }).catch(function () {
      sessionId = null;
      try { window.localStorage.removeItem(storageKey); } catch (e) { /* ignore */ }
      addBot({ answer: TEXTS.greeting, status: "greeting" });
    });
  }

  var opened = false;
  function open() {
    panel.hidden = false;
    launcher.classList.remove("hl-unread");
    if (polling) { schedule(); }  // poll sooner now that the customer is looking
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", TEXTS.close_chat);
    if (!opened) { opened = true; resume(); }
    input.focus();
  }
  function shut() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", TEXTS.open_chat);
    launcher.focus();
  }

  launcher.addEventListener("click", function () { if (panel.hidden) { open(); } else { shut(); } });
  close.addEventListener("click", shut);
  panel.addEventListener("keydown", function (event) { if (event.key === "Escape") { shut(); } });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    input.value = "";
    sendMessage(text);
  });
  function askForPerson() {
    if (!sessionId) { addNotice(TEXTS.message_first); return; }
    request("POST", "/api/v1/sessions/" + encodeURIComponent(sessionId) + "/handoff", {}).then(function (data) {
      addNotice(data.message);
      askContact();
      startPolling();
    }).catch(function (error) { addNotice(TEXTS.person_failed + " " + error.message); });
  }
  human.addEventListener("click", askForPerson);

  window.HelpLoop = { open: open, close: shut };
  if (sessionId) { open(); }
})();
