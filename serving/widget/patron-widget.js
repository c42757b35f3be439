/* Patron recommendation widget: dependency-free. Renders every .patron-widget element.
   Settings (data-* attributes, or the page URL's query for the demo page):
   api (base URL, default same origin), endpoint (recommend | cross_sell | up_sell |
   similar_items), customer-id, item-id (comma-separated for a basket), n, title. */
(function () {
  var TITLES = {recommend: "Recommended for you", cross_sell: "Bought together",
                up_sell: "Upgrade", similar_items: "Similar items"};
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
      title: get("title") || TITLES[endpoint] || "Recommended for you"
    };
  }

  function body(s) {
    var b = { n: s.n };
    if (s.customerId) b.customer_id = s.customerId;
    if (s.endpoint !== "recommend") b.item_ids = s.itemIds;  // one shape for item endpoints
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
    var seen = {};  // one card per name: variants of one product are not two suggestions
    (data.items || []).forEach(function (it) {
      var label = it.name || ("Item " + it.item_id);
      if (seen[label]) return;
      seen[label] = true;
      var li = document.createElement("li");
      li.className = "patron-item";
      li.setAttribute("data-item-id", String(it.item_id));
      if (it.image) {
        var img = document.createElement("img");
        img.src = it.image;
        img.alt = label;
        img.className = "patron-image";
        li.appendChild(img);
      }
      var name = document.createElement(it.url ? "a" : "div");
      name.className = "patron-name";
      name.textContent = label;
      if (it.url) name.href = it.url;
      li.appendChild(name);
      if (it.price !== null && it.price !== undefined) {
        var p = document.createElement("div");
        p.className = "patron-price";
        p.textContent = Number(it.price).toFixed(2);
        li.appendChild(p);
      }
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
