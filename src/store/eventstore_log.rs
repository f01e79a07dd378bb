//! The scale-out backend: the log in an EventStoreDB/KurrentDB stream, through the
//! `eventstore` gRPC client (feature `eventstore`).
//!
//! # Mapping
//! - One ledger is one stream, named `ledger-<id>` ([`stream_name`]); its category is `ledger`.
//!   The stream revision of an event is its `seq`, so the chain's order is the stream's order
//!   and `$all` positions are never relied on.
//! - Event data is the event's canonical bytes (RFC 8785), byte for byte, with content type
//!   JSON and the body's type name (`donation_received`, ...) as the event type, so the
//!   server's own tools and projections can read it.
//! - The event id is derived from the event's hash ([`event_id`]): a UUID (version 8, RFC 9562)
//!   made of the first 16 bytes of the SHA-256. A retried append of the same batch at the same
//!   expected revision is recognised by the server as the same write (idempotent by event id)
//!   instead of being written twice.
//! - An append sends an exact expected revision (`NoStream` for the first batch). The
//!   server's wrong-expected-version answer becomes [`StoreError::Conflict`], as with sled, and
//!   the writer catches up and re-decides.
//!
//! # Reads are checked, not trusted
//! Every event read is re-hashed from its data and checked against its revision (`seq`), its
//! event id (derived from the hash) and the ledger. Opening re-checks the last
//! [`TAIL_CHECK_EVENTS`] links.
//!
//! # The head
//! [`EventLog::head`] asks the server (the last event of the stream). [`EventLog::watch_head`]
//! is fed by this log's own appends and by a catch-up subscription to the stream in a
//! background task, so appends by other processes (other API servers on the same ledger) are
//! seen too. The task ends when the last handle on the log is dropped.
//!
//! # Consistency
//! Reads and appends require the leader (`requires_leader`), so a read after an acknowledged
//! append always sees it, whatever node preference the connection string asks for.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use events::{ChainError, ChainVerifier, Hash, Id, SealedEvent};
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ExpectedRevision,
    ReadStreamOptions, RecordedEvent, StreamPosition, SubscribeToStreamOptions, SubscriptionEvent,
};
use tokio::sync::watch;

use super::{check_continues, check_limit, EventLog, Head, StoreError, READ_EVENTS_MAX};

/// The prefix of a ledger's stream name.
pub const STREAM_PREFIX: &str = "ledger-";
/// The most events one append takes.
pub const APPEND_EVENTS_MAX: usize = 4096;
/// The most bytes of event data one append takes. EventStoreDB refuses appends over its
/// `MaxAppendSize` (1 MiB by default, data and metadata together); this leaves room for the
/// metadata.
pub const APPEND_BYTES_MAX: usize = 1_000_000;
/// How many events at the end of the stream are re-checked (hashes and links) on connect.
pub const TAIL_CHECK_EVENTS: usize = 4096;
/// How long one call to the server may take before it counts as failed.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `connect` waits for the server's first answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an append is sent when the server's answer is lost (a timeout or a dropped
/// connection). The same event ids make the repeats safe.
pub const APPEND_ATTEMPTS_MAX: usize = 3;
/// The pause before resubscribing after the head subscription drops.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// The stream that holds a ledger's log.
pub fn stream_name(ledger: &Id) -> String {
    format!("{STREAM_PREFIX}{}", ledger.as_str())
}

/// The EventStoreDB event id of an event: the first 16 bytes of its hash as a version 8
/// (custom) UUID, RFC 9562 variant. The same event always gets the same id.
pub fn event_id(hash: &Hash) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

struct Inner {
    client: Client,
    ledger: Id,
    stream: String,
    head_tx: Arc<watch::Sender<Head>>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// A ledger's log in an EventStoreDB/KurrentDB stream. Cheap to clone.
#[derive(Clone)]
pub struct EventStoreLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventStoreLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStoreLog")
            .field("stream", &self.inner.stream)
            .finish_non_exhaustive()
    }
}

fn server_error(what: &str, e: eventstore::Error) -> StoreError {
    StoreError::Io(format!("EventStoreDB {what}: {e}"))
}

fn corrupt(seq: u64, reason: String) -> StoreError {
    StoreError::Corrupt(ChainError::Malformed {
        seq: Some(seq),
        reason,
    })
}

/// The server did not answer, or answered in a way that leaves the outcome unknown: worth
/// sending the same append again.
fn outcome_unknown(e: &eventstore::Error) -> bool {
    matches!(
        e,
        eventstore::Error::ConnectionClosed
            | eventstore::Error::DeadlineExceeded
            | eventstore::Error::ServerError(_)
            | eventstore::Error::NotLeaderException(_)
            | eventstore::Error::GrpcConnectionError(_)
    )
}

/// Checks an event as the server returned it: data re-hashed, revision, id and ledger.
fn check_recorded(ledger: &Id, recorded: &RecordedEvent) -> Result<SealedEvent, StoreError> {
    let seq = recorded.revision;
    if !recorded.is_json {
        return Err(corrupt(
            seq,
            "the stored event is not marked as JSON".into(),
        ));
    }
    let event = SealedEvent::from_canonical(recorded.data.to_vec()).map_err(|e| match e {
        ChainError::Malformed { reason, .. } => corrupt(seq, reason),
        other => StoreError::Corrupt(other),
    })?;
    if event.seq() != seq {
        return Err(StoreError::Corrupt(ChainError::SeqGap {
            expected: seq,
            found: event.seq(),
        }));
    }
    let id = event_id(&event.hash());
    if recorded.id != id {
        return Err(corrupt(
            seq,
            format!(
                "event id {} is not {id}, the id derived from the data's hash {}",
                recorded.id,
                event.hash()
            ),
        ));
    }
    if &event.record().ledger != ledger {
        return Err(corrupt(
            seq,
            format!(
                "the event belongs to ledger {}, not {ledger}",
                event.record().ledger
            ),
        ));
    }
    Ok(event)
}

impl EventStoreLog {
    /// Connects to EventStoreDB/KurrentDB with a connection string (`esdb://host:2113?tls=false`,
    /// `esdb+discover://...` for a cluster; TLS and credentials as the `eventstore` crate
    /// supports them) and opens the stream of `ledger`, re-checking its tail. The connection
    /// string is not repeated in errors, since it may hold a password.
    pub async fn connect(
        connection_string: &str,
        ledger: &Id,
    ) -> Result<EventStoreLog, StoreError> {
        let settings: ClientSettings =
            connection_string
                .parse()
                .map_err(|e: eventstore::ClientSettingsParseError| {
                    // Some parse errors carry the whole string; say why without it.
                    let reason = if e.message().contains(connection_string) {
                        e.error()
                            .map(|u| u.to_string())
                            .unwrap_or_else(|| "it does not parse".into())
                    } else {
                        e.message().to_owned()
                    };
                    StoreError::Io(format!(
                        "the EventStoreDB connection string is not valid: {reason} (expected e.g. esdb://127.0.0.1:2113?tls=false)"
                    ))
                })?;
        let client =
            Client::new(settings).map_err(|e| server_error("client initialisation failed", e))?;
        let stream = stream_name(ledger);
        let head = tokio::time::timeout(CONNECT_TIMEOUT, check_tail(&client, ledger, &stream))
            .await
            .map_err(|_| {
                StoreError::Io(format!(
                    "EventStoreDB did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })??;
        tracing::info!(stream = %stream, events = head.len, "EventStoreDB ledger stream open");
        let (head_tx, _) = watch::channel(head);
        let head_tx = Arc::new(head_tx);
        let follower = tokio::spawn(follow(
            client.clone(),
            ledger.clone(),
            stream.clone(),
            head_tx.clone(),
        ));
        Ok(EventStoreLog {
            inner: Arc::new(Inner {
                client,
                ledger: ledger.clone(),
                stream,
                head_tx,
                follower,
            }),
        })
    }

    /// The ledger this log holds.
    pub fn ledger(&self) -> &Id {
        &self.inner.ledger
    }

    /// The stream this log lives in.
    pub fn stream(&self) -> &str {
        &self.inner.stream
    }

    /// The event ids stored for events `from..from + limit`, as the server reports them.
    /// Reads already check every id; this lets a test look at them.
    pub async fn stored_event_ids(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<uuid::Uuid>, StoreError> {
        let recorded = read_recorded(&self.inner.client, &self.inner.stream, from, limit).await?;
        Ok(recorded.iter().map(|r| r.id).collect())
    }

    /// Sends a batch at `expected_len` straight to the server, without the local checks of
    /// [`EventLog::append`] — what a retry after a lost acknowledgement sends. Returns the
    /// stream's length after the write as the server reports it. For the conformance suite,
    /// which shows that such a retry is recognised, not duplicated.
    pub async fn resend(
        &self,
        expected_len: u64,
        events: &[SealedEvent],
    ) -> Result<u64, StoreError> {
        self.send(expected_len, events).await
    }

    /// Publishes a head if it is further than the one known.
    fn publish(&self, head: Head) {
        publish(&self.inner.head_tx, head);
    }

    fn event_data(events: &[SealedEvent]) -> Result<Vec<EventData>, StoreError> {
        events
            .iter()
            .map(|e| {
                // The canonical bytes go out verbatim: a RawValue serializes as itself.
                let text = std::str::from_utf8(e.canonical_bytes()).map_err(|err| {
                    StoreError::NotContinuing(ChainError::Malformed {
                        seq: Some(e.seq()),
                        reason: format!("canonical bytes are not UTF-8: {err}"),
                    })
                })?;
                let raw =
                    serde_json::value::RawValue::from_string(text.to_owned()).map_err(|err| {
                        StoreError::NotContinuing(ChainError::Malformed {
                            seq: Some(e.seq()),
                            reason: format!("canonical bytes are not JSON: {err}"),
                        })
                    })?;
                let data = EventData::json(e.body().type_name(), &raw).map_err(|err| {
                    StoreError::NotContinuing(ChainError::Malformed {
                        seq: Some(e.seq()),
                        reason: err.to_string(),
                    })
                })?;
                Ok(data.id(event_id(&e.hash())))
            })
            .collect()
    }

    /// Appends at exactly `expected_len`, sending again (same ids) when the answer is lost.
    async fn send(&self, expected_len: u64, events: &[SealedEvent]) -> Result<u64, StoreError> {
        let expected = match expected_len.checked_sub(1) {
            None => ExpectedRevision::NoStream,
            Some(last) => ExpectedRevision::Exact(last),
        };
        let options = AppendToStreamOptions::default()
            .expected_revision(expected)
            .requires_leader(true)
            .deadline(OPERATION_TIMEOUT);
        let data = Self::event_data(events)?;
        let mut attempt = 1;
        loop {
            let result = self
                .inner
                .client
                .append_to_stream(self.inner.stream.as_str(), &options, data.clone())
                .await;
            match result {
                Ok(written) => return Ok(written.next_expected_version + 1),
                Err(eventstore::Error::WrongExpectedVersion { current, .. }) => {
                    let actual = match current {
                        CurrentRevision::Current(last) => last + 1,
                        CurrentRevision::NoStream => 0,
                    };
                    return Err(StoreError::Conflict {
                        expected: expected_len,
                        actual,
                    });
                }
                Err(e) if outcome_unknown(&e) && attempt < APPEND_ATTEMPTS_MAX => {
                    tracing::warn!(
                        error = %e,
                        attempt,
                        expected_len,
                        "EventStoreDB append outcome unknown; sending the same events again"
                    );
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
                Err(e) => return Err(server_error("append failed", e)),
            }
        }
    }

    /// The head at `expected_len`, or the conflict when the log is not that long.
    async fn head_at(&self, expected_len: u64) -> Result<Head, StoreError> {
        let known = *self.inner.head_tx.borrow();
        if known.len == expected_len {
            // If another process appended since, the server refuses the expected revision.
            return Ok(known);
        }
        let actual = self.head().await?;
        if actual.len != expected_len {
            return Err(StoreError::Conflict {
                expected: expected_len,
                actual: actual.len,
            });
        }
        Ok(actual)
    }
}

fn publish(head_tx: &watch::Sender<Head>, head: Head) {
    head_tx.send_if_modified(|known| {
        if head.len > known.len {
            *known = head;
            true
        } else {
            false
        }
    });
}

/// Reads up to `limit` recorded events from revision `from`, unchecked.
async fn read_recorded(
    client: &Client,
    stream: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let limit = limit.min(READ_EVENTS_MAX);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let options = ReadStreamOptions::default()
        .forwards()
        .position(StreamPosition::Position(from))
        .max_count(limit)
        .requires_leader(true)
        .deadline(OPERATION_TIMEOUT);
    read_with(client, stream, &options, limit).await
}

async fn read_with(
    client: &Client,
    stream: &str,
    options: &ReadStreamOptions,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut reader = match client.read_stream(stream, options).await {
        Ok(reader) => reader,
        Err(eventstore::Error::ResourceNotFound) => return Ok(Vec::new()),
        Err(e) => return Err(server_error("read failed", e)),
    };
    let mut out = Vec::with_capacity(limit.min(1024));
    loop {
        match reader.next().await {
            Ok(Some(resolved)) => {
                let recorded = resolved.event.ok_or_else(|| {
                    StoreError::Io("EventStoreDB returned a read result without an event".into())
                })?;
                out.push(recorded);
                if out.len() == limit {
                    return Ok(out);
                }
            }
            Ok(None) => return Ok(out),
            Err(eventstore::Error::ResourceNotFound) => return Ok(out),
            Err(e) => return Err(server_error("read failed", e)),
        }
    }
}

/// Reads the last events of the stream, checks their hashes and links, and returns the head.
async fn check_tail(client: &Client, ledger: &Id, stream: &str) -> Result<Head, StoreError> {
    let options = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .backwards()
        .max_count(TAIL_CHECK_EVENTS)
        .requires_leader(true)
        .deadline(OPERATION_TIMEOUT);
    let mut recorded = read_with(client, stream, &options, TAIL_CHECK_EVENTS).await?;
    recorded.reverse();
    let Some(first) = recorded.first() else {
        return Ok(Head::default());
    };
    let first = check_recorded(ledger, first)?;
    let mut chain = ChainVerifier::resume(first.seq(), first.record().prev);
    chain.push_sealed(&first).map_err(StoreError::Corrupt)?;
    for r in &recorded[1..] {
        let event = check_recorded(ledger, r)?;
        chain.push_sealed(&event).map_err(StoreError::Corrupt)?;
    }
    Ok(Head {
        len: chain.len(),
        hash: chain.head(),
    })
}

/// The last event of the stream, checked, as a head.
async fn fetch_head(client: &Client, ledger: &Id, stream: &str) -> Result<Head, StoreError> {
    let options = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .backwards()
        .max_count(1)
        .requires_leader(true)
        .deadline(OPERATION_TIMEOUT);
    let recorded = read_with(client, stream, &options, 1).await?;
    match recorded.first() {
        None => Ok(Head::default()),
        Some(r) => {
            let event = check_recorded(ledger, r)?;
            Ok(Head {
                len: event.seq() + 1,
                hash: event.hash(),
            })
        }
    }
}

/// Follows the stream with a catch-up subscription and publishes every new head. Appends by
/// other processes reach `watch_head` this way. Resubscribes from the known head when the
/// subscription drops.
async fn follow(client: Client, ledger: Id, stream: String, head_tx: Arc<watch::Sender<Head>>) {
    loop {
        let known = head_tx.borrow().len;
        // A subscription's start revision is exclusive: it delivers the events after it.
        let start = match known.checked_sub(1) {
            None => StreamPosition::Start,
            Some(last) => StreamPosition::Position(last),
        };
        let options = SubscribeToStreamOptions::default().start_from(start);
        let mut subscription = client.subscribe_to_stream(stream.as_str(), &options).await;
        loop {
            match subscription.next_subscription_event().await {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    let Some(recorded) = resolved.event else {
                        continue;
                    };
                    match check_recorded(&ledger, &recorded) {
                        Ok(event) => publish(
                            &head_tx,
                            Head {
                                len: event.seq() + 1,
                                hash: event.hash(),
                            },
                        ),
                        Err(e) => {
                            // Readers will meet the same error when they read this event.
                            tracing::error!(stream = %stream, error = %e, "the head subscription delivered an event that does not check");
                            break;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(stream = %stream, error = %e, "the head subscription dropped; resubscribing");
                    break;
                }
            }
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

#[async_trait]
impl EventLog for EventStoreLog {
    fn append_limits(&self) -> super::AppendLimits {
        super::AppendLimits {
            events: APPEND_EVENTS_MAX,
            bytes: APPEND_BYTES_MAX,
        }
    }

    async fn head(&self) -> Result<Head, StoreError> {
        let head = fetch_head(&self.inner.client, &self.inner.ledger, &self.inner.stream).await?;
        self.publish(head);
        Ok(head)
    }

    async fn append(
        &self,
        expected_len: u64,
        events: Vec<SealedEvent>,
    ) -> Result<Head, StoreError> {
        check_limit("events in one append", events.len(), APPEND_EVENTS_MAX)?;
        let bytes: usize = events.iter().map(|e| e.canonical_bytes().len()).sum();
        check_limit("bytes of event data in one append", bytes, APPEND_BYTES_MAX)?;
        for e in &events {
            if &e.record().ledger != self.ledger() {
                return Err(StoreError::NotContinuing(ChainError::Malformed {
                    seq: Some(e.seq()),
                    reason: format!(
                        "the event belongs to ledger {}, this log holds ledger {}",
                        e.record().ledger,
                        self.ledger()
                    ),
                }));
            }
        }
        let head = self.head_at(expected_len).await?;
        if events.is_empty() {
            return Ok(head);
        }
        let new_head = check_continues(head, &events)?;
        let written_len = self.send(expected_len, &events).await?;
        if written_len != new_head.len {
            return Err(StoreError::Io(format!(
                "EventStoreDB reports {written_len} events after appending events {}..{}",
                expected_len, new_head.len
            )));
        }
        self.publish(new_head);
        Ok(new_head)
    }

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<SealedEvent>, StoreError> {
        let recorded = read_recorded(&self.inner.client, &self.inner.stream, from, limit).await?;
        let mut out = Vec::with_capacity(recorded.len());
        for (i, r) in recorded.iter().enumerate() {
            let expected = from + i as u64;
            if r.revision != expected {
                return Err(StoreError::Corrupt(ChainError::SeqGap {
                    expected,
                    found: r.revision,
                }));
            }
            out.push(check_recorded(&self.inner.ledger, r)?);
        }
        Ok(out)
    }

    fn watch_head(&self) -> watch::Receiver<Head> {
        self.inner.head_tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_version_8_uuids_from_the_hash() {
        let hash = events::sha256(b"an event");
        let id = event_id(&hash);
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        // Everything but the version and variant bits comes from the hash.
        let bytes = id.as_bytes();
        assert_eq!(bytes[..6], hash.as_bytes()[..6]);
        assert_eq!(bytes[6] & 0x0f, hash.as_bytes()[6] & 0x0f);
        assert_eq!(bytes[7], hash.as_bytes()[7]);
        assert_eq!(bytes[8] & 0x3f, hash.as_bytes()[8] & 0x3f);
        assert_eq!(bytes[9..], hash.as_bytes()[9..16]);
        assert_eq!(
            event_id(&hash),
            id,
            "the same event always gets the same id"
        );
        assert_ne!(event_id(&events::sha256(b"another")), id);
    }

    #[test]
    fn one_ledger_is_one_stream() {
        assert_eq!(stream_name(&Id::new("erqi").unwrap()), "ledger-erqi");
    }

    #[tokio::test]
    async fn a_bad_connection_string_is_refused_without_echoing_it() {
        let ledger = Id::new("erqi").unwrap();
        let err = EventStoreLog::connect("not a url:secret", &ledger)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("connection string"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}
