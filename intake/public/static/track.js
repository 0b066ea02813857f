// The resident's tracking page: the token rides in the link's fragment (never sent to a server),
// and goes to the API as the X-Tracking-Token header.
(function () {
  "use strict";
  var main = document.getElementById("track");
  var words = JSON.parse(main.dataset.words);
  var token = decodeURIComponent(window.location.hash.slice(1));
  var state = document.getElementById("state");
  var when = new Intl.DateTimeFormat(words.locale, {
    timeZone: words.zone, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false
  });
  function time(iso) { return iso ? when.format(new Date(iso)) : "—"; }
  function put(id, text) { document.getElementById(id).textContent = text || "—"; }
  var other = document.getElementById("lang-switch");
  other.href += window.location.hash; // the other language keeps the token
  if (!token) { state.textContent = words.no_token; return; }
  fetch("/v1/cases/" + encodeURIComponent(main.dataset["case"]), { headers: { "X-Tracking-Token": token } })
    .then(function (r) {
      if (r.status === 404) { throw new Error(words.not_found); }
      if (!r.ok) { throw new Error(words.failed); }
      return r.json();
    })
    .then(function (view) {
      put("status", words.status[view.status] || view.status);
      put("category", words.categories[view.category] || view.category);
      put("unit", words.units[view.unit_id] || view.unit_name);
      put("respond", time(view.response_due));
      put("resolve", time(view.resolution_due));
      var list = document.getElementById("timeline");
      view.timeline.forEach(function (entry) {
        var item = document.createElement("li");
        var text = time(entry.at) + " " + (words.events[entry.type] || entry.type);
        if (entry.result) { text += ": " + entry.result; }
        if (entry.note) { text += ": " + entry.note; }
        item.textContent = text;
        list.appendChild(item);
      });
      document.getElementById("facts").hidden = false;
      state.textContent = "";
    })
    .catch(function (e) { state.textContent = e.message; });
})();
