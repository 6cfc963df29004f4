// The inbox says when there is news (a conversation starts waiting for a person, leaves the inbox, or a
// customer writes) without reloading under the operator's feet: a banner with a link, and the count in the
// tab's title so it shows from another tab.
(function () {
  "use strict";
  var all = document.getElementById("tick-all");  // ticks every conversation of the page, for "mark handled"
  if (all) {
    all.addEventListener("change", function () {
      Array.prototype.forEach.call(document.querySelectorAll('input[name="ids"]'), function (box) {
        box.checked = all.checked;
      });
    });
  }
  var news = document.getElementById("inbox-news");
  if (!news) { return; }
  var url = news.getAttribute("data-url");
  var signature = news.getAttribute("data-signature");
  var title = document.title;

  function show(data) {
    var text = data.waiting + " conversation" + (data.waiting === 1 ? "" : "s") + " waiting for a person";
    if (data.customer_wrote) { text += ", " + data.customer_wrote + " with a new message from the customer"; }
    news.querySelector("span").textContent = "Something changed: " + text + ".";
    news.hidden = false;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data) {
          document.title = (data.waiting ? "(" + data.waiting + ") " : "") + title;
          if (data.signature !== signature) { show(data); }
          // who else from the team has each waiting conversation open: kept current in place, not news
          Array.prototype.forEach.call(document.querySelectorAll("[data-open-by]"), function (cell) {
            cell.textContent = (data.open_by || {})[cell.getAttribute("data-open-by")] || "";
          });
        }
        window.setTimeout(poll, 10000);
      })
      .catch(function () { window.setTimeout(poll, 30000); });
  }
  window.setTimeout(poll, 10000);
})();
