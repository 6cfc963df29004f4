/* Keyboard shortcuts for the review form: digits pick, / searches, Y/N rate the bot, C ticks "clear only with the
   earlier turns", Enter submits, S skips, P reports personal data, U takes the last answer back. */
(function () {
  "use strict";
  function typing(target) { return target && (target.tagName === "INPUT" && target.type === "text" || target.tagName === "TEXTAREA" || target.getAttribute("list")); }
  /* U: take the last answer back (on the next item's page, and on the page that says the queue is empty). */
  var change = document.getElementById("change-last");
  if (change) {
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
      if (event.key.toLowerCase() === "u") { event.preventDefault(); change.submit(); }
    });
  }
  var form = document.getElementById("judgement");
  if (!form) { return; }
  var search = document.getElementById("search");
  var newIntent = document.getElementById("new-intent");
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;  // Enter inside a text field submits the form natively
    }
    var key = event.key.toLowerCase();
    if (/^[1-9]$/.test(key)) {
      var radio = form.querySelector('input[name=choice][data-key="' + key + '"]');
      if (radio) {
        radio.checked = true;
        radio.focus();
        if (radio.value === "__search__") { search.focus(); event.preventDefault(); }
        if (radio.value === "new_intent") { newIntent.focus(); event.preventDefault(); }
      }
    } else if (key === "/") {
      document.getElementById("choice-search").checked = true;
      search.focus();
      event.preventDefault();
    } else if (key === "y" || key === "n") {
      var answer = form.querySelector('input[name=answer_ok][data-answer="' + key + '"]');
      if (answer) { answer.checked = true; }
    } else if (key === "c") {
      var needsContext = document.getElementById("needs-context");
      if (needsContext) { needsContext.checked = !needsContext.checked; }
    } else if (key === "s") {
      document.getElementById("skip").submit();
    } else if (key === "p") {
      if (window.confirm("Send this question to an operator to take out personal data?")) {
        document.getElementById("privacy").submit();
      }
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (form.reportValidity()) { tick(); form.submit(); }
    }
  });
  search.addEventListener("input", function () { document.getElementById("choice-search").checked = true; });

  /* An intent found by searching is described like the suggestions above it: title, two examples and the
     operators' note, fetched once the search box holds a known intent's name. */
  var preview = document.getElementById("search-preview");
  var known = {};
  Array.prototype.forEach.call(document.querySelectorAll("#intent-list option, input[name=choice][data-intent]"), function (option) {
    known[option.value] = true;
  });
  var shown = "";
  function describe() {
    var name = search.value.trim();
    if (name === shown) { return; }
    shown = name;
    preview.textContent = "";
    if (!Object.prototype.hasOwnProperty.call(known, name)) { return; }
    fetch(preview.getAttribute("data-url").replace("NAME", encodeURIComponent(name)), {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (info) {
        if (!info || shown !== info.name) { return; }
        var title = document.createElement("div");
        title.className = "preview-title";
        title.textContent = info.title + (info.tags ? " [" + info.tags + "]" : "") + (info.examples.length ? " — e.g. " + info.examples.map(function (e) { return "\u201c" + e + "\u201d"; }).join(" · ") : "");
        preview.appendChild(title);
        if (info.note) {
          var note = document.createElement("div");
          note.className = "note";
          note.style.whiteSpace = "pre-wrap";
          var label = document.createElement("strong");
          label.textContent = "Note: ";
          note.appendChild(label);
          note.appendChild(document.createTextNode(info.note));
          preview.appendChild(note);
        }
      })
      .catch(function () { /* the preview is a help, never a blocker */ });
  }
  search.addEventListener("input", describe);
  search.addEventListener("change", describe);

  /* Time on task: seconds this page was visible while the reviewer was at it (some input in the last
     IDLE_SECONDS), kept across a reload of the same item; sent with the answer. The server takes the
     smaller of this and the claim's age, so a tab left open over lunch does not count as work. */
  var IDLE_SECONDS = 60;
  var field = document.getElementById("active-seconds");
  var key = "helploop-active-" + field.getAttribute("data-item");
  var active = 0;
  try { active = parseFloat(window.sessionStorage.getItem(key)) || 0; } catch (e) { active = 0; }
  var lastInput = Date.now();
  var lastTick = Date.now();
  function touched() { lastInput = Date.now(); }
  ["keydown", "pointerdown", "pointermove", "wheel", "input", "focus"].forEach(function (name) {
    window.addEventListener(name, touched, {capture: true, passive: true});
  });
  function tick() {
    var now = Date.now();
    if (document.visibilityState === "visible" && now - lastInput <= IDLE_SECONDS * 1000) {
      active += Math.min(now - lastTick, 2000) / 1000;
    }
    lastTick = now;
    field.value = active.toFixed(1);
    try { window.sessionStorage.setItem(key, field.value); } catch (e) { /* private mode: this load only */ }
  }
  window.setInterval(tick, 1000);
  form.addEventListener("submit", tick);
  document.addEventListener("visibilitychange", tick);
  newIntent.addEventListener("input", function () {
    form.querySelector('input[name=choice][value="new_intent"]').checked = true;
  });
})();
