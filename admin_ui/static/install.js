/* The widget's install page: the tag and the preview follow the choices as they are made (the server builds
 * the tag, tag.json, so the page and the form's own submit agree), the colour picker and its text field
 * agree, and Copy puts the tag on the clipboard. */
(function () {
  "use strict";
  var form = document.getElementById("widget-form");
  if (!form) { return; }
  var snippet = document.querySelector("#snippet code");
  var preview = document.getElementById("preview");
  var picker = document.getElementById("color-pick");
  var color = document.getElementById("color");
  var copy = document.getElementById("copy-snippet");
  var tagUrl = form.action.replace(/\/?$/, "/tag.json");
  var previewUrl = preview.src.split("?")[0];
  var timer = null;
  var asked = 0;

  function query() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {  // the choices made, not every empty field
      if (value && !(key === "position" && value === "right")) { params.append(key, value); }
    });
    return params.toString();
  }

  function showErrors(errors) {
    Array.prototype.forEach.call(form.querySelectorAll(".field-error, .field-break"), function (node) {
      node.remove();
    });
    Object.keys(errors).forEach(function (name) {
      note(name, name + "-error", "flash error field-error", errors[name]);
    });
  }

  function note(name, id, className, text) {  // a line under the field, as the server writes it
    var field = document.getElementById(name) || form.querySelector('[name="' + name + '"]');
    if (!field) { return; }
    var span = document.createElement("span");
    span.className = className;
    span.id = id;
    span.textContent = text;
    var line = document.createElement("br");
    line.className = "field-break";
    field.parentNode.appendChild(line);
    field.parentNode.appendChild(span);
  }

  function update() {
    var q = query();
    var mine = ++asked;
    fetch(tagUrl + (q ? "?" + q : ""), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data || mine !== asked) { return; }  // an older answer arriving after a newer one
        if (snippet.textContent !== data.snippet) {
          snippet.textContent = data.snippet;
          preview.src = previewUrl + (q ? "?" + q : "");
        }
        showErrors(data.errors);
        if (data.answering) {
          note("metadata", "metadata-answering", "muted field-error",
               data.answering + (data.answering === "1" ? " intent can" : " intents can") + " answer there");
        }
        window.history.replaceState(null, "", form.action + (q ? "?" + q : ""));
      })
      .catch(function () { /* the form's Update button still works */ });
  }

  function soon() {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, 400);
  }

  form.addEventListener("input", function (event) {
    if (event.target === picker) { color.value = picker.value; }
    if (event.target === color && /^#[0-9a-f]{6}$/i.test(color.value.trim())) { picker.value = color.value.trim(); }
    if (event.target.name !== "site") { soon(); }
  });
  form.addEventListener("change", function (event) {
    if (event.target.type === "radio") { soon(); }
  });

  copy.addEventListener("click", function () {
    var text = snippet.textContent;
    function done() {
      copy.textContent = "Copied";
      window.setTimeout(function () { copy.textContent = "Copy"; }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { select(); });
    } else {
      select();
      try { if (document.execCommand("copy")) { done(); } } catch (e) { /* selected: Ctrl+C copies */ }
    }
  });

  function select() {
    var range = document.createRange();
    range.selectNodeContents(snippet);
    var chosen = window.getSelection();
    chosen.removeAllRanges();
    chosen.addRange(range);
  }
})();
