/* Patron recommendation widget: dependency-free. Renders every .patron-widget element.
   Settings (data-* attributes, or the page URL's query for the demo page):
   api (base URL, default same origin), endpoint (recommend | cross_sell | up_sell |
   similar_items), customer-id, item-id (comma-separated for a basket), n, title. */
(function () {
  "use strict";

  function settings(el) {
    var q = new URLSearchParams(window.location.search);
    function get(name) {
      var key = name.replace(/-([a-z])/g, function (_, c) { return c.toUpperCase(); });
      var v = el.dataset[key];
      if (v === undefined || v === "") v = q.get(name.replace(/-/g, "_"));
      return v === null ? undefined : v;
    }
    var itemId = get("item-id");
    var endpoint = get("endpoint") || (itemId ? "cross_sell" : "recommend");
    return {
      api: (get("api") || "").replace(/\/$/, ""),
      endpoint: endpoint,
      customerId: get("customer-id"),
      itemIds: itemId ? itemId.split(",") : [],
      n: parseInt(get("n") || "6", 10),
      title: get("title") || (endpoint === "recommend" ? "Guess you like" : "Goes well with")
    };
  }

  function body(s) {
    var b = { n: s.n };
    if (s.customerId) b.customer_id = s.customerId;
    if (s.endpoint === "cross_sell") b.item_ids = s.itemIds;
    else if (s.endpoint === "up_sell" || s.endpoint === "similar_items") b.item_id = s.itemIds[0];
    else if (s.itemIds.length) b.context_items = s.itemIds;
    return b;
  }

  function render(el, s, data) {
    el.textContent = "";
    var h = document.createElement("h3");
    h.textContent = s.title;
    el.appendChild(h);
    var ul = document.createElement("ul");
    ul.className = "patron-items";
    ul.setAttribute("data-strategy", data.strategy || "");
    ul.setAttribute("data-variant", data.variant || "");
    (data.items || []).forEach(function (it) {
      var li = document.createElement("li");
      li.className = "patron-item";
      li.setAttribute("data-item-id", String(it.item_id));
      var name = document.createElement("div");
      name.className = "patron-name";
      name.textContent = it.name || ("Item " + it.item_id);
      li.appendChild(name);
      if (it.reason) {
        var r = document.createElement("div");
        r.className = "patron-reason";
        r.textContent = it.reason;
        li.appendChild(r);
      }
      ul.appendChild(li);
    });
    el.appendChild(ul);
    el.setAttribute("data-loaded", String((data.items || []).length));
  }

  function load(el) {
    var s = settings(el);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", s.api + "/" + s.endpoint);
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.onload = function () {
      if (xhr.status === 200) {
        render(el, s, JSON.parse(xhr.responseText));
      } else {
        el.innerHTML = "";
        var p = document.createElement("p");
        p.className = "patron-error";
        p.textContent = "No recommendations (" + xhr.status + ")";
        el.appendChild(p);
        el.setAttribute("data-loaded", "error");
      }
    };
    xhr.onerror = function () { el.setAttribute("data-loaded", "error"); };
    xhr.send(JSON.stringify(body(s)));
  }

  function init() {
    var els = document.querySelectorAll(".patron-widget");
    for (var i = 0; i < els.length; i++) load(els[i]);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
