/* The review items list: one box ticks or unticks every item on the page for "Settle ticked". */
(function () {
  "use strict";
  var all = document.getElementById("tick-all");
  if (!all) { return; }
  all.addEventListener("change", function () {
    Array.prototype.forEach.call(document.querySelectorAll('input[name=item][form=bulk-settle]'), function (box) {
      box.checked = all.checked;
    });
  });
})();
