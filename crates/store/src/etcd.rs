//! The etcd v3 backend, for `--datastore-endpoint etcd://host:port`.
//!
//! Each [`Store`] operation is one etcd request, mostly a transaction so that existence and
//! revision checks happen atomically on the server: create compares `create_revision == 0`,
//! conditional update/delete compare `mod_revision`, and the failure branch reads the key so the
//! error says why (missing or at which revision). Lists page through the prefix in chunks, all
//! pinned to the revision of the first page, so a big list is still one consistent snapshot.
//! Watches start at `after + 1` with previous values; etcd's compaction answers become
//! [`Error::Compacted`].
//!
//! etcd keys are bytes; this backend only accepts UTF-8 keys (the apiserver writes nothing else).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, EventType, GetOptions,
    PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};

use crate::{Error, Event, KeyValue, Result, Store, WatchStream};

/// Keys fetched per page of a list.
const LIST_PAGE: i64 = 1000;

/// How long a watch on compacted history waits for etcd to say how far it compacted.
const COMPACTED_ANSWER_WAIT: Duration = Duration::from_secs(3);

/// A store backed by an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

/// Turns `etcd://host:port`, `http://host:port` or `host:port` into the client's URL form.
pub fn normalize_endpoint(endpoint: &str) -> Result<String> {
    let e = endpoint.trim();
    if let Some(rest) = e.strip_prefix("etcd://") {
        Ok(format!("http://{rest}"))
    } else if e.starts_with("http://") {
        Ok(e.to_string())
    } else if e.starts_with("https://") {
        Err(Error::Backend(format!(
            "{e}: TLS to etcd is not supported yet; use etcd:// or http://"
        )))
    } else if e.is_empty() || e.contains("://") {
        Err(Error::Backend(format!("{e:?} is not an etcd endpoint")))
    } else {
        Ok(format!("http://{e}"))
    }
}

/// The end of the key range holding every key that starts with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // empty prefix (or all 0xff): to the end of the key space
}

/// The first key of the prefix range (etcd rejects an empty key).
fn prefix_start(prefix: &str) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    }
}

fn map_err(e: etcd_client::Error) -> Error {
    let msg = e.to_string();
    if msg.contains("required revision has been compacted") {
        Error::Compacted {
            requested: 0,
            compacted: 0,
        }
    } else {
        Error::Backend(format!("etcd: {msg}"))
    }
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv
        .key_str()
        .map_err(|_| Error::Backend("etcd returned a non-UTF-8 key".into()))?;
    Ok(KeyValue {
        key: key.to_string(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_rev(txn: &TxnResponse) -> Result<i64> {
    txn.header()
        .map(|h| h.revision())
        .ok_or_else(|| Error::Backend("etcd response without header".into()))
}

/// The key read by the failure branch of a transaction, if it exists.
fn failed_read(txn: &TxnResponse) -> Result<Option<KeyValue>> {
    for r in txn.op_responses() {
        if let TxnOpResponse::Get(g) = r {
            return g.kvs().first().map(convert).transpose();
        }
    }
    Ok(None)
}

impl EtcdStore {
    /// Connects to etcd. The connection is made lazily; a cheap read checks it here.
    pub async fn connect(endpoints: &[String]) -> Result<Arc<EtcdStore>> {
        let urls = endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect::<Result<Vec<_>>>()?;
        let client = Client::connect(&urls, None).await.map_err(map_err)?;
        let store = EtcdStore { client };
        store.current_revision().await?;
        Ok(Arc::new(store))
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    /// A conditional write: `when` holds → `then`, else read the key to explain the failure.
    async fn txn(&self, key: &str, when: Compare, then: TxnOp) -> Result<TxnResponse> {
        let txn = Txn::new()
            .when(vec![when])
            .and_then(vec![then])
            .or_else(vec![TxnOp::get(key, None)]);
        self.client().txn(txn).await.map_err(map_err)
    }

    /// Precondition for update/delete: the key exists, at `expected` if given.
    fn condition(key: &str, expected: Option<i64>) -> Compare {
        match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        }
    }

    fn why_failed(key: &str, txn: &TxnResponse) -> Result<Error> {
        Ok(match failed_read(txn)? {
            None => Error::NotFound(key.to_string()),
            Some(kv) => Error::Conflict {
                key: key.to_string(),
                current: kv.mod_revision,
            },
        })
    }

    /// One paginated read of the prefix, every page at the first page's revision.
    async fn list_at_one_revision(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let end = prefix_end(prefix);
        let mut start = prefix_start(prefix);
        let mut out = Vec::new();
        let mut rev = 0;
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if rev > 0 {
                opts = opts.with_revision(rev);
            }
            let resp = self
                .client()
                .get(start.clone(), Some(opts))
                .await
                .map_err(map_err)?;
            if rev == 0 {
                rev = resp
                    .header()
                    .map(|h| h.revision())
                    .ok_or_else(|| Error::Backend("etcd response without header".into()))?;
            }
            for kv in resp.kvs() {
                out.push(convert(kv)?);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((out, rev)),
            }
        }
    }

    /// Whether history after `after` is compacted: a read at `after + 1` fails exactly when a
    /// watch from there would.
    async fn is_compacted(&self, prefix: &str, after: i64) -> Result<bool> {
        let opts = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_keys_only()
            .with_limit(1)
            .with_revision(after + 1);
        match self.client().get(prefix_start(prefix), Some(opts)).await {
            Ok(_) => Ok(false),
            Err(e) => match map_err(e) {
                Error::Compacted { .. } => Ok(true),
                Error::Backend(m) if m.contains("future revision") => Ok(false),
                other => Err(other),
            },
        }
    }
}

struct EtcdWatch {
    stream: etcd_client::WatchStream,
    pending: VecDeque<Result<Event>>,
    after: i64,
    done: bool,
}

fn convert_event(e: &etcd_client::Event) -> Result<Option<Event>> {
    let Some(kv) = e.kv() else { return Ok(None) };
    let kv = convert(kv)?;
    let prev = e.prev_kv().map(convert).transpose()?;
    Ok(Some(match e.event_type() {
        EventType::Put => Event::Put { kv, prev },
        EventType::Delete => {
            let revision = kv.mod_revision;
            // prev is missing only if etcd compacted it already: keep the key at least.
            let prev = prev.unwrap_or(KeyValue {
                key: kv.key,
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: 0,
            });
            Event::Delete { prev, revision }
        }
    }))
}

async fn next_event(mut w: EtcdWatch) -> Option<(Result<Event>, EtcdWatch)> {
    loop {
        if let Some(item) = w.pending.pop_front() {
            if let Ok(e) = &item {
                w.after = e.revision();
            }
            return Some((item, w));
        }
        if w.done {
            return None;
        }
        match w.stream.message().await {
            Ok(Some(resp)) => {
                if resp.canceled() {
                    w.done = true;
                    let err = if resp.compact_revision() > 0 {
                        Error::Compacted {
                            requested: w.after,
                            compacted: resp.compact_revision(),
                        }
                    } else {
                        Error::Backend(format!("etcd watch canceled: {}", resp.cancel_reason()))
                    };
                    w.pending.push_back(Err(err));
                    continue;
                }
                for e in resp.events() {
                    match convert_event(e) {
                        Ok(Some(ev)) => w.pending.push_back(Ok(ev)),
                        Ok(None) => {}
                        Err(err) => {
                            w.pending.push_back(Err(err));
                            w.done = true;
                            break;
                        }
                    }
                }
            }
            Ok(None) => return None,
            Err(e) => {
                w.done = true;
                w.pending.push_back(Err(map_err(e)));
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.client().get(key, None).await.map_err(map_err)?;
        resp.kvs().first().map(convert).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        // A compaction between pages invalidates the pinned revision: start over.
        let mut attempts = 0;
        loop {
            match self.list_at_one_revision(prefix).await {
                Err(Error::Compacted { .. }) if attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        let resp = self
            .txn(
                key,
                Compare::create_revision(key, CompareOp::Equal, 0),
                TxnOp::put(key, value.to_vec(), None),
            )
            .await?;
        if resp.succeeded() {
            header_rev(&resp)
        } else {
            Err(Error::AlreadyExists(key.to_string()))
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<i64>) -> Result<i64> {
        let resp = self
            .txn(
                key,
                Self::condition(key, expected),
                TxnOp::put(key, value.to_vec(), Some(PutOptions::new())),
            )
            .await?;
        if resp.succeeded() {
            header_rev(&resp)
        } else {
            Err(Self::why_failed(key, &resp)?)
        }
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64)> {
        let resp = self
            .txn(
                key,
                Self::condition(key, expected),
                TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key())),
            )
            .await?;
        if !resp.succeeded() {
            return Err(Self::why_failed(key, &resp)?);
        }
        let rev = header_rev(&resp)?;
        for r in resp.op_responses() {
            if let TxnOpResponse::Delete(d) = r
                && let Some(prev) = d.prev_kvs().first()
            {
                return Ok((convert(prev)?, rev));
            }
        }
        Err(Error::NotFound(key.to_string()))
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        let after = if after <= 0 {
            self.current_revision().await?
        } else {
            after
        };
        let compacted = self.is_compacted(prefix, after).await?;
        let opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(after + 1)
            .with_prev_key();
        let mut stream = self
            .client()
            .watch(prefix_start(prefix), Some(opts))
            .await
            .map_err(map_err)?;
        if compacted {
            // etcd cancels such a watch shortly after creating it and says how far it compacted.
            let mut found = after + 1;
            let _ = tokio::time::timeout(COMPACTED_ANSWER_WAIT, async {
                while let Ok(Some(resp)) = stream.message().await {
                    if resp.compact_revision() > 0 {
                        found = resp.compact_revision();
                        break;
                    }
                }
            })
            .await;
            return Err(Error::Compacted {
                requested: after,
                compacted: found,
            });
        }
        let w = EtcdWatch {
            stream,
            pending: VecDeque::new(),
            after,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(w, next_event)))
    }

    async fn current_revision(&self) -> Result<i64> {
        let resp = self
            .client()
            .get(vec![0u8], Some(GetOptions::new().with_keys_only()))
            .await
            .map_err(map_err)?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| Error::Backend("etcd response without header".into()))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let opts = CompactionOptions::new().with_physical();
        match self.client().compact(revision, Some(opts)).await {
            Ok(_) => Ok(()),
            Err(e) => match map_err(e) {
                Error::Compacted { .. } => Ok(()), // already compacted at or past it
                Error::Backend(m) if m.contains("future revision") => {
                    Err(Error::FutureRevision(revision))
                }
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests;
