// Operator side of the live chat: new messages appear without reloading the page; Ctrl+Enter sends.
(function () {
  "use strict";
  var list = document.getElementById("live-messages");
  var form = document.getElementById("reply-form");
  var text = document.getElementById("reply-text");
  var lastKey = 0;  // when the reader last typed in the reply box: the others see "… is typing a reply"
  var replying = false;  // the page goes away to send a reply or a note and comes straight back: no leaving
  var noteForm = document.getElementById("note-form");
  if (noteForm) { noteForm.addEventListener("submit", function () { replying = true; }); }
  if (text && form) {
    text.addEventListener("input", function () { lastKey = Date.now(); });
    form.addEventListener("submit", function () { replying = true; });
    text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        if (text.value.trim()) { replying = true; form.submit(); }
      }
    });
    if (window.location.hash === "#live-chat") { text.focus(); }
    var canned = document.getElementById("canned");
    var answers = document.getElementById("canned-answers");
    if (canned && answers) {
      var book = JSON.parse(answers.textContent);  // data, not code: never executed
      canned.addEventListener("change", function () {
        var answer = book[canned.value];
        if (!answer) { return; }
        text.value = text.value.trim() ? text.value.replace(/\s*$/, "\n\n") + answer : answer;
        canned.value = "";
        lastKey = Date.now();
        text.focus();
      });
    }
  }
  if (!list || !list.getAttribute("data-poll")) { return; }
  var url = list.getAttribute("data-poll");
  var after = parseInt(list.getAttribute("data-after") || "0", 10);
  var state = document.getElementById("live-state");
  // The newest message shown (sent with a reply: a colleague's later one stops it, RepliesCrossed).
  var seen = document.getElementById("reply-seen");
  var colleagues = document.getElementById("colleagues");  // who else from the team has it open (core.presence)

  function typing() { return !!(text && text.value.trim() && Date.now() - lastKey < 6000); }

  // The page is going away (closed, or another page): the others stop seeing this reader here at once.
  window.addEventListener("pagehide", function () {
    var leave = colleagues && colleagues.getAttribute("data-leave");
    var token = form && form.querySelector('input[name="csrf_token"]');
    if (replying || !leave || !token || !navigator.sendBeacon) { return; }
    var body = new FormData();
    body.append("csrf_token", token.value);
    navigator.sendBeacon(leave, body);
  });

  function add(message) {
    var item = document.createElement("li");
    item.className = "live-" + message.sender;
    item.setAttribute("data-id", String(message.id));
    var who = document.createElement("span");
    who.className = "muted";
    var name = { agent: message.agent, note: "note by " + message.agent }[message.sender] || "customer";
    who.textContent = message.at + " · " + name + ":";
    item.appendChild(who);
    item.appendChild(document.createTextNode(" " + message.text));  // text, never markup
    list.appendChild(item);
  }

  // On a messaging app, or e-mailed: each of the team's messages marked sending, sent, delivered, read or not
  // delivered, as it changes (the app's receipts). The words are the page's (admin_ui.operator.DELIVERY_SAID).
  var SAID = JSON.parse(list.getAttribute("data-said") || "{}");
  function mark(delivery) {
    Object.keys(delivery || {}).forEach(function (id) {
      var item = list.querySelector('li[data-id="' + id + '"]');
      var state = delivery[id];
      if (!item || !SAID[state.status]) { return; }
      var span = item.querySelector("span.delivery");
      if (!span) {
        span = document.createElement("span");
        item.appendChild(document.createTextNode(" "));
        item.appendChild(span);
      }
      span.className = "delivery " + (/failed$/.test(state.status) ? "tag" : "muted");
      span.textContent = SAID[state.status];
      span.title = state.error || "";
    });
  }

  function poll() {
    fetch(url + "?after=" + after + (typing() ? "&typing=1" : ""), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        data.messages.forEach(function (message) {
          if (message.id > after) { add(message); after = message.id; }
        });
        if (seen) { seen.value = String(after); }
        mark(data.delivery);
        if (colleagues) {
          colleagues.textContent = data.colleagues_said || "";
          colleagues.hidden = !data.colleagues_said;
        }
        var replyWindow = document.getElementById("reply-window");
        if (replyWindow && data.reply_window) {  // the customer wrote again: the window moved
          replyWindow.textContent = data.reply_window.text;
          replyWindow.className = data.reply_window.open ? "muted" : "warn";
          var template = document.getElementById("template-form");  // WhatsApp: offered once it closed
          if (template) { template.hidden = data.reply_window.open; }
        }
        var page = document.getElementById("page-link");  // the widget's page: the customer moved on
        if (page && data.page && page.textContent !== data.page) {
          page.textContent = data.page;
          page.href = data.page;
          page.parentNode.hidden = false;  // the first page this customer wrote from
        }
        if (!data.waiting && state) { state.textContent = "The handoff was marked handled: the bot answers again."; }
        if (data.waiting) { window.setTimeout(poll, 3000); }
      })
      .catch(function () { window.setTimeout(poll, 10000); });
  }
  window.setTimeout(poll, 3000);
})();
