// rowsync-axum's browser client: follows a live query's server-sent events and keeps its
// rows in a keyed store. No build step: `import { follow } from "/rowsync.js"`.
//
//   const feed = follow("/people/events", (rows, change) => render(rows));
//
// `rows` is the whole value, in the query's order, after each event: the `snapshot`, one
// `patch` per committed transaction (never part of one), or a `reset` after a resync.
// `change` is { kind, id, upserted, removed }. With `{ persist: "name" }` the rows and the
// last event id are kept in sessionStorage, so a reloaded page shows them at once and
// resumes after its last transaction (the server sends a fresh snapshot when it no longer
// holds the transactions in between).

export function follow(url, onChange, options = {}) {
  const rows = new Map(); // key (as JSON) -> row
  let order = []; // keys (as JSON), in the query's order
  let lastId = null;
  const persist = options.persist;
  if (persist) {
    try {
      const saved = JSON.parse(sessionStorage.getItem(persist));
      if (saved && saved.id) {
        lastId = saved.id;
        order = saved.order;
        for (const [key, row] of saved.rows) rows.set(key, row);
      }
    } catch (_) {
      // nothing usable saved: start from a snapshot
    }
  }
  const list = () => order.map((key) => rows.get(key)).filter((row) => row !== undefined);
  const save = () => {
    if (!persist) return;
    try {
      sessionStorage.setItem(persist, JSON.stringify({ id: lastId, order, rows: [...rows] }));
    } catch (_) {
      // storage full: a reload starts from a snapshot
    }
  };
  const replaceAll = (data) => {
    rows.clear();
    order = [];
    for (const { key, row } of data.rows) {
      const k = JSON.stringify(key);
      rows.set(k, row);
      order.push(k);
    }
  };
  const done = (event, change) => {
    lastId = event.lastEventId;
    save();
    onChange(list(), { id: lastId, ...change });
  };

  let target = url;
  if (lastId) target += (url.includes("?") ? "&" : "?") + "lastEventId=" + encodeURIComponent(lastId);
  const source = new EventSource(target);
  for (const kind of ["snapshot", "reset"]) {
    source.addEventListener(kind, (event) => {
      replaceAll(JSON.parse(event.data));
      done(event, { kind, upserted: [], removed: [] });
    });
  }
  source.addEventListener("patch", (event) => {
    const patch = JSON.parse(event.data);
    const gone = new Set(patch.remove.map((key) => JSON.stringify(key)));
    for (const key of gone) rows.delete(key);
    if (gone.size) order = order.filter((key) => !gone.has(key));
    for (const { key, row } of patch.upsert) {
      const k = JSON.stringify(key);
      if (!rows.has(k)) order.push(k);
      rows.set(k, row);
    }
    if (patch.order) order = patch.order.map((key) => JSON.stringify(key));
    done(event, { kind: "patch", upserted: patch.upsert.map((u) => u.row), removed: patch.remove });
  });
  if (options.onError) source.onerror = options.onError;
  return {
    rows: list,
    get lastEventId() {
      return lastId;
    },
    close: () => source.close(),
  };
}
