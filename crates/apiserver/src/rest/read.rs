//! GET, LIST and WATCH. LIST and WATCH are served from the watch cache; a LIST without a
//! resourceVersion first waits for the cache to reach the store's current revision, so it
//! sees every write acknowledged before it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use rkube_core::status::ApiError;
use rkube_core::validation::FieldError;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::filter::Filter;
use super::{Ctx, load};
use crate::cache::{CacheEvent, Entry, EventType};
use crate::conversion;
use crate::response::{self, Accept, Response};
use crate::table;

/// `GET …/<name>`.
pub async fn get(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (obj, _) = load(ctx).await?;
    Ok(render_one(ctx, &obj))
}

/// Renders one object as the client asked: Table, metadata only, or the object.
pub fn render_one(ctx: &Ctx<'_>, obj: &Value) -> Response {
    match ctx.accept {
        Accept::Table => {
            let rv = rkube_core::meta::resource_version(obj).to_string();
            response::json(
                200,
                &table::table(ctx.srv, &ctx.rt, &[obj], &rv, &ctx.query),
            )
        }
        Accept::PartialMetadata => response::json(200, &table::partial_metadata(obj)),
        other => response::negotiated(200, other, obj),
    }
}

/// Continue token contents: the revision of the first page and the last key returned.
fn encode_continue(rv: i64, last_key: &str) -> String {
    let j = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key});
    base64::engine::general_purpose::URL_SAFE.encode(j.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid continue token: {token:?}; the continue token is malformed"
        ))
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let j: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = j.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = j.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

/// `GET …/<plural>`: a list, served from the watch cache.
pub async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let filter = Filter::from_query(&ctx.rt, &ctx.query)?;
    let limit: usize = match ctx.query.non_empty("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
        None => 0,
    };
    let cont = ctx
        .query
        .non_empty("continue")
        .map(decode_continue)
        .transpose()?;
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("");
    let exact = match ctx.query.non_empty("resourceVersionMatch") {
        None | Some("NotOlderThan") => None,
        Some("Exact") if rv_param.is_empty() || rv_param == "0" => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[FieldError::forbidden(
                    "resourceVersionMatch",
                    &format!(
                        "resourceVersionMatch \"Exact\" is forbidden for resourceVersion {rv_param:?}"
                    ),
                )],
            ));
        }
        Some("Exact") => Some(rv_param.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version {rv_param:?}"))
        })?),
        Some(other) => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[FieldError::not_supported(
                    "resourceVersionMatch",
                    json!(other),
                    &["Exact", "NotOlderThan", ""],
                )],
            ));
        }
    };
    if cont.is_none() && rv_param != "0" {
        // A consistent read: the cache must have caught up with every acknowledged write.
        let current = ctx
            .srv
            .store
            .current_revision()
            .await
            .map_err(ApiError::internal)?;
        let wanted = rv_param.parse::<i64>().unwrap_or(0).max(current);
        if !ctx.srv.cache.wait_for(wanted).await {
            return Err(ApiError::timeout(format!(
                "Too large resource version: {wanted}, current: {}",
                ctx.srv.cache.revision()
            )));
        }
    }
    let prefix = ctx.rt.namespace_prefix(ctx.namespace());
    let after = cont.as_ref().map(|(_, k)| k.as_str());
    // Later pages show the list as it was when the first page was served, and an Exact
    // LIST the revision asked for, as long as the history reaches back that far.
    let at = exact.or(cont.as_ref().map(|(rv, _)| *rv));
    let (entries, rev) = match at {
        Some(rv) => match ctx.srv.cache.list_at(&prefix, after, rv) {
            Ok(found) => found,
            Err(too_old) if exact.is_some() => {
                return Err(ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    too_old.oldest
                )));
            }
            // A continue token past the history: carry on from the current state.
            Err(_) => ctx.srv.cache.list(&prefix, after),
        },
        None => ctx.srv.cache.list(&prefix, after),
    };
    let mut items: Vec<Arc<Entry>> = Vec::new();
    let mut next = None;
    for e in entries {
        if !filter.matches(&e) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            next = items.last().map(|l| encode_continue(rev, &l.key));
            break;
        }
        items.push(e);
    }
    let list_rv = cont.map(|(rv, _)| rv).unwrap_or(rev).to_string();
    match ctx.accept {
        Accept::Table => {
            let objs: Vec<Value> = items
                .iter()
                .map(|e| conversion::entry_object(&ctx.rt, e))
                .collect();
            let refs: Vec<&Value> = objs.iter().collect();
            let mut t = table::table(ctx.srv, &ctx.rt, &refs, &list_rv, &ctx.query);
            if let Some(n) = &next {
                t["metadata"]["continue"] = json!(n);
            }
            Ok(response::json(200, &t))
        }
        Accept::PartialMetadata => {
            let metas: Vec<Value> = items.iter().map(|e| e.partial_metadata()).collect();
            let mut meta = json!({"resourceVersion": list_rv});
            if let Some(n) = &next {
                meta["continue"] = json!(n);
            }
            Ok(response::json(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": metas}),
            ))
        }
        accept => {
            // Assembled from the stored bytes: no object is parsed or re-serialised.
            let mut out =
                Vec::with_capacity(items.iter().map(|e| e.value.len() + 40).sum::<usize>() + 256);
            out.extend_from_slice(
                format!(
                    "{{\"kind\":{:?},\"apiVersion\":{:?},\"metadata\":{{\"resourceVersion\":{:?}",
                    ctx.rt.list_kind(),
                    ctx.rt.api_version(),
                    list_rv
                )
                .as_bytes(),
            );
            if let Some(n) = &next {
                out.extend_from_slice(format!(",\"continue\":{n:?}").as_bytes());
            }
            out.extend_from_slice(b"},\"items\":[");
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                conversion::write_entry(&ctx.rt, &mut out, e);
            }
            out.extend_from_slice(b"]}");
            if accept == Accept::Yaml {
                let v: Value = serde_json::from_slice(&out).map_err(ApiError::internal)?;
                return Ok(response::negotiated(200, accept, &v));
            }
            Ok(response::json_bytes(200, out))
        }
    }
}

/// How a cached change appears to one watcher, given its filter: objects entering the
/// selection are ADDED, leaving it DELETED.
fn project(filter: &Filter, ev: &CacheEvent, prefix: &str) -> Option<EventType> {
    if !ev.entry.key.starts_with(prefix) {
        return None;
    }
    let now = filter.matches(&ev.entry);
    if filter.is_everything() {
        return Some(ev.kind);
    }
    let before = ev.prev.as_ref().is_some_and(|p| filter.matches(p));
    match ev.kind {
        EventType::Deleted => before.then_some(EventType::Deleted),
        EventType::Added => now.then_some(EventType::Added),
        EventType::Modified => match (before, now) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// `GET …?watch=true`: a stream of events, one JSON object per line.
pub async fn watch(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let filter = Filter::from_query(&ctx.rt, &ctx.query)?;
    let mut prefix = ctx.rt.namespace_prefix(ctx.namespace());
    if let Some(name) = &ctx.info.name {
        // A watch on one object (`…/<name>?watch=true`).
        prefix = ctx.rt.key(ctx.namespace(), name);
    }
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("");
    let send_initial = ctx.query.flag("sendInitialEvents");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let timeout = ctx
        .query
        .non_empty("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    // Unset or "0" means: the current state as synthetic ADDED events, then changes.
    let initial_state = send_initial || rv_param.is_empty() || rv_param == "0";
    let after: i64 = if initial_state {
        0
    } else {
        rv_param
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param:?}")))?
    };
    let view = WatchView {
        srv: ctx.srv.clone(),
        rt: ctx.rt.clone(),
        query: ctx.query.clone(),
        accept: ctx.accept,
    };
    let mut lines: Vec<Bytes> = Vec::new();
    let mut first = true;
    let (backlog, mut rx, start_rev) = match ctx.srv.cache.watch(after) {
        Ok(w) => w,
        Err(too_old) => {
            let e = ApiError::gone(format!(
                "too old resource version: {after} ({})",
                too_old.oldest
            ));
            return Ok(response::json_bytes(200, error_line(&e)));
        }
    };
    let mut last_rev = start_rev;
    if initial_state {
        let (entries, _) = ctx.srv.cache.list(&prefix, None);
        for e in entries
            .iter()
            .filter(|e| e.key.starts_with(&prefix) && e.rv <= start_rev && filter.matches(e))
        {
            lines.push(view.line("ADDED", e, &mut first));
        }
        if send_initial && bookmarks {
            lines.push(view.bookmark(start_rev, true));
        }
    }
    for ev in &backlog {
        last_rev = ev.rv();
        if let Some(kind) = project(&filter, ev, &prefix) {
            lines.push(view.line(kind.as_str(), &ev.entry, &mut first));
        }
    }

    let (tx, body_rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut bookmark_tick = tokio::time::interval(Duration::from_secs(60));
        bookmark_tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = bookmark_tick.tick(), if bookmarks => {
                    if tx.send(view.bookmark(last_rev, false)).await.is_err() { return; }
                }
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv() <= last_rev { continue; }
                        last_rev = ev.rv();
                        if let Some(kind) = project(&filter, &ev, &prefix)
                            && tx.send(view.line(kind.as_str(), &ev.entry, &mut first)).await.is_err() {
                                return;
                            }
                    }
                    // A watcher that fell too far behind is closed; the client resumes from
                    // the last resourceVersion it saw.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
            }
        }
    });
    let stream = tokio_stream_from(body_rx).map(|b| Ok(hyper::body::Frame::data(b)));
    let mut resp = http::Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// What the background watch task needs of the request after the handler returns.
struct WatchView {
    srv: Arc<crate::ApiServer>,
    rt: rkube_core::registry::ResourceType,
    query: crate::request::Query,
    accept: Accept,
}

impl WatchView {
    /// One event line: `{"type":…,"object":…}` and a newline.
    fn line(&self, kind: &str, entry: &Entry, first: &mut bool) -> Bytes {
        let mut out = Vec::with_capacity(entry.value.len() + 64);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        match self.accept {
            Accept::Table => {
                let obj = conversion::entry_object(&self.rt, entry);
                let mut t = table::table(
                    &self.srv,
                    &self.rt,
                    &[&obj],
                    &entry.rv.to_string(),
                    &self.query,
                );
                if !*first {
                    // Column definitions travel once, as upstream sends them.
                    t["columnDefinitions"] = json!([]);
                }
                *first = false;
                out.extend_from_slice(&serde_json::to_vec(&t).unwrap_or_default());
            }
            Accept::PartialMetadata => {
                let m = entry.partial_metadata();
                out.extend_from_slice(&serde_json::to_vec(&m).unwrap_or_default());
            }
            _ => conversion::write_entry(&self.rt, &mut out, entry),
        }
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    /// A BOOKMARK; `initial_end` marks the end of `sendInitialEvents`.
    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta});
        let mut line =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
