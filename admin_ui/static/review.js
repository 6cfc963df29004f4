/* Keyboard shortcuts for the review form: digits pick, / searches, Y/N rate the bot, Enter submits, S skips. */
(function () {
  "use strict";
  var form = document.getElementById("judgement");
  if (!form) { return; }
  var search = document.getElementById("search");
  var newIntent = document.getElementById("new-intent");
  function typing(target) { return target && (target.tagName === "INPUT" && target.type === "text" || target.tagName === "TEXTAREA" || target.getAttribute("list")); }
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
    } else if (key === "s") {
      document.getElementById("skip").submit();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (form.reportValidity()) { form.submit(); }
    }
  });
  search.addEventListener("input", function () { document.getElementById("choice-search").checked = true; });
  newIntent.addEventListener("input", function () {
    form.querySelector('input[name=choice][value="new_intent"]').checked = true;
  });
})();
