//! Paging over every session in the store, for operators' listings.
//!
//! A store's scan batch is only a hint (Redis `SCAN COUNT` may answer with
//! more or fewer keys), so a page cannot simply be one batch. A [`Cursor`]
//! names the store batch to read again *and* the last user already handed
//! out from it: each batch is read in user order, so resuming inside a batch
//! skips exactly what an earlier page showed, and every page holds at most
//! `limit` entries however large the store's batches are.

use crate::store::{ScanPage, SessionRecord, SessionStatus, SessionStore, StoreError};

/// The most entries one page may hold.
pub const MAX_LIMIT: usize = 1000;

/// The longest cursor a client may send back, in characters.
pub const MAX_CURSOR_LEN: usize = 512;

/// How many store batches one page may read at most: a filter that matches
/// few sessions ends a page early (with a cursor) rather than reading the
/// whole store in one request.
const MAX_BATCHES_PER_PAGE: usize = 16;

/// The marker every cursor starts with, so that a cursor from another
/// version of this format is refused rather than misread.
const CURSOR_VERSION: &str = "c1";

/// Where a listing resumes: a store batch, and the last user of it already
/// shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The store's cursor of the batch to read (`None`: the first batch).
    store: Option<String>,
    /// The last user of that batch already shown (`None`: none yet).
    after: Option<String>,
    /// The batch size the store was asked for when the batch was read
    /// (with `after`): a Redis batch read again must be asked for with the
    /// same `COUNT` to hold the same keys, whatever the next page's limit.
    batch: Option<usize>,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Longer than [`MAX_CURSOR_LEN`].
    #[error("the cursor is longer than {MAX_CURSOR_LEN} characters")]
    TooLong,
    /// Not a cursor this host made.
    #[error("the cursor is not one this API gave out; start again without one")]
    Malformed,
}

impl Cursor {
    /// The cursor as the opaque string clients send back: the version and
    /// both parts hex-encoded, so that any store cursor or key survives a
    /// query string unescaped.
    pub fn encode(&self) -> String {
        let part = |value: &Option<String>| value.as_deref().map(hex).unwrap_or_default();
        let batch = self
            .batch
            .map(|batch| batch.to_string())
            .unwrap_or_default();
        format!(
            "{CURSOR_VERSION}.{}.{}.{batch}",
            part(&self.store),
            part(&self.after)
        )
    }

    /// Reads a cursor made by [`Cursor::encode`] for a store of `kind`.
    pub fn decode(text: &str, kind: &str) -> Result<Cursor, CursorError> {
        if text.len() > MAX_CURSOR_LEN {
            return Err(CursorError::TooLong);
        }
        let mut parts = text.split('.');
        let (Some(CURSOR_VERSION), Some(store), Some(after), Some(batch), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CursorError::Malformed);
        };
        let part = |encoded: &str| -> Result<Option<String>, CursorError> {
            if encoded.is_empty() {
                return Ok(None);
            }
            unhex(encoded).map(Some).ok_or(CursorError::Malformed)
        };
        let batch = match batch {
            "" => None,
            digits => match digits.parse::<usize>() {
                Ok(batch) if (1..=MAX_LIMIT).contains(&batch) && !digits.starts_with('+') => {
                    Some(batch)
                }
                _ => return Err(CursorError::Malformed),
            },
        };
        let cursor = Cursor {
            store: part(store)?,
            after: part(after)?,
            batch,
        };
        // Redis refuses a non-numeric SCAN cursor with an error that would
        // otherwise surface as a store failure.
        let numeric = |s: &str| s.parse::<u64>().is_ok();
        if kind == "redis" && !cursor.store.as_deref().is_none_or(numeric) {
            return Err(CursorError::Malformed);
        }
        Ok(cursor)
    }
}

/// A stored entry that could not be read as a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    /// The user its key names.
    pub user_id: String,
    /// What is wrong with it.
    pub error: String,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    /// The sessions, in user order within each store batch.
    pub sessions: Vec<SessionRecord>,
    /// Entries that could not be read (shown whatever the filter).
    pub invalid: Vec<InvalidEntry>,
    /// Where the next page starts; `None` when the listing is complete.
    pub next: Option<Cursor>,
}

/// One entry of a store batch, either readable or not.
enum Entry {
    Session(Box<SessionRecord>),
    Invalid(InvalidEntry),
}

impl Entry {
    fn user(&self) -> &str {
        match self {
            Entry::Session(record) => &record.user_id,
            Entry::Invalid(invalid) => &invalid.user_id,
        }
    }
}

/// The batch's entries in user order. `key_prefix` is removed from the
/// keys of invalid entries (the Redis store reports whole keys).
fn entries(page: ScanPage, key_prefix: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = page
        .records
        .into_iter()
        .map(|record| Entry::Session(Box::new(record)))
        .chain(page.invalid.into_iter().map(|invalid| {
            Entry::Invalid(InvalidEntry {
                user_id: invalid
                    .key
                    .strip_prefix(key_prefix)
                    .unwrap_or(&invalid.key)
                    .to_string(),
                error: invalid.reason,
            })
        }))
        .collect();
    entries.sort_by(|a, b| a.user().cmp(b.user()));
    entries
}

/// Reads the page of at most `limit` entries (sessions with status in
/// `status`, when given, and every invalid entry) that starts at `cursor`.
pub async fn list(
    store: &dyn SessionStore,
    status: Option<SessionStatus>,
    limit: usize,
    cursor: Cursor,
) -> Result<Listing, StoreError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let key_prefix = if store.kind() == "redis" {
        crate::store::redis::KEY_PREFIX
    } else {
        ""
    };
    let mut listing = Listing::default();
    let mut batch_cursor = cursor.store;
    let mut after = cursor.after;
    let mut batch = cursor.batch.unwrap_or(limit);
    for _ in 0..MAX_BATCHES_PER_PAGE {
        let page = store.scan(batch_cursor.as_deref(), batch).await?;
        let store_next = page.next.clone();
        for entry in entries(page, key_prefix) {
            if after.as_deref().is_some_and(|after| entry.user() <= after) {
                continue;
            }
            if listing.sessions.len() + listing.invalid.len() == limit {
                listing.next = Some(Cursor {
                    store: batch_cursor,
                    after,
                    batch: Some(batch),
                });
                return Ok(listing);
            }
            after = Some(entry.user().to_string());
            match entry {
                Entry::Session(record) => {
                    if status.is_none_or(|status| record.status == status) {
                        listing.sessions.push(*record);
                    }
                }
                Entry::Invalid(invalid) => listing.invalid.push(invalid),
            }
        }
        let Some(store_next) = store_next else {
            return Ok(listing);
        };
        batch_cursor = Some(store_next);
        after = None;
        batch = limit;
        if listing.sessions.len() + listing.invalid.len() == limit {
            break;
        }
    }
    listing.next = Some(Cursor {
        store: batch_cursor,
        after: None,
        batch: None,
    });
    Ok(listing)
}

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::store::{Capacity, HeartbeatOutcome, InsertOutcome, InvalidRecord, StopClaim};

    /// A store whose scan answers fixed batches, whatever size is asked for
    /// and in no particular order (as Redis `SCAN` may): `batches[i]` is
    /// the batch at cursor `i`.
    struct FixedBatches {
        batches: Vec<Vec<(&'static str, SessionStatus)>>,
    }

    fn record(user: &str, status: SessionStatus) -> SessionRecord {
        SessionRecord {
            user_id: user.to_string(),
            vm_id: format!("vessel-{user}"),
            ip: None,
            url: None,
            last_heartbeat: 0,
            status,
            created_at: 0,
            updated_at: 0,
            owner: String::new(),
            start_step: None,
            start_steps: Vec::new(),
            idle_timeout_ms: None,
            max_age_ms: None,
            project_path: None,
            started_by: None,
            extra: serde_json::Map::new(),
        }
    }

    #[async_trait::async_trait]
    impl SessionStore for FixedBatches {
        async fn scan(&self, cursor: Option<&str>, _: usize) -> Result<ScanPage, StoreError> {
            let index: usize = cursor.map_or(0, |c| c.parse().unwrap());
            let mut page = ScanPage::default();
            for &(user, status) in &self.batches[index] {
                if user.starts_with('!') {
                    page.invalid.push(InvalidRecord {
                        key: user.to_string(),
                        reason: "bad".into(),
                    });
                } else {
                    page.records.push(record(user, status));
                }
            }
            page.next = (index + 1 < self.batches.len()).then(|| (index + 1).to_string());
            Ok(page)
        }
        fn kind(&self) -> &'static str {
            "redis"
        }
        async fn get(&self, _: &UserId) -> Result<Option<SessionRecord>, StoreError> {
            unreachable!()
        }
        async fn put_tombstone(&self, _: &crate::store::Tombstone) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn get_tombstone(
            &self,
            _: &UserId,
            _: u64,
        ) -> Result<Option<crate::store::Tombstone>, StoreError> {
            unreachable!()
        }
        async fn insert_new(
            &self,
            _: &SessionRecord,
            _: Capacity,
        ) -> Result<InsertOutcome, StoreError> {
            unreachable!()
        }
        async fn replace_owned(&self, _: &SessionRecord, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn delete_owned(&self, _: &UserId, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn heartbeat(&self, _: &UserId, _: u64) -> Result<HeartbeatOutcome, StoreError> {
            unreachable!()
        }
        async fn renew_lease(&self, _: &UserId, _: &str, _: u64) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn try_lock(&self, _: &str, _: &str, _: u64) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn unlock(&self, _: &str, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn claim_stop(
            &self,
            _: &UserId,
            _: &StopClaim,
        ) -> Result<Option<SessionRecord>, StoreError> {
            unreachable!()
        }
        async fn ping(&self) -> Result<(), StoreError> {
            unreachable!()
        }
    }

    /// Every entry a listing with `limit` and `status` shows, page by page
    /// through encoded cursors; each page at most `limit` long.
    async fn visit(
        store: &FixedBatches,
        status: Option<SessionStatus>,
        limit: usize,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor = Cursor::default();
        for _ in 0..100 {
            let page = list(store, status, limit, cursor).await.unwrap();
            assert!(page.sessions.len() + page.invalid.len() <= limit);
            seen.extend(page.sessions.iter().map(|r| r.user_id.clone()));
            seen.extend(page.invalid.iter().map(|i| format!("!{}", i.user_id)));
            match page.next {
                Some(next) => cursor = Cursor::decode(&next.encode(), "redis").unwrap(),
                None => return seen,
            }
        }
        panic!("no end");
    }

    #[tokio::test]
    async fn pages_stay_within_their_limit_and_show_each_entry_once_whatever_the_batches() {
        use SessionStatus::{Active, Starting};
        let store = FixedBatches {
            batches: vec![
                vec![
                    ("carol", Active),
                    ("alice", Starting),
                    ("!broken", Active),
                    ("bob", Active),
                ],
                vec![],
                vec![("erin", Starting), ("dave", Active)],
            ],
        };
        let everyone = ["!!broken", "alice", "bob", "carol", "dave", "erin"];
        for limit in [1, 2, 3, 5, 1000] {
            let mut seen = visit(&store, None, limit).await;
            seen.sort();
            assert_eq!(seen, everyone, "limit {limit}");
            let mut active = visit(&store, Some(Active), limit).await;
            active.sort();
            assert_eq!(
                active,
                ["!!broken", "bob", "carol", "dave"],
                "limit {limit}"
            );
        }
    }

    #[test]
    fn a_cursor_survives_its_round_trip() {
        let cursor = Cursor {
            store: Some("1792".into()),
            after: Some("user:with odd/chars".into()),
            batch: Some(25),
        };
        assert_eq!(Cursor::decode(&cursor.encode(), "redis"), Ok(cursor));
        let first = Cursor::default();
        assert_eq!(first.encode(), "c1...");
        assert_eq!(Cursor::decode("c1...", "embedded"), Ok(first));
    }

    #[test]
    fn bad_cursors_are_refused() {
        for bad in [
            "",
            "c1",
            "c1.",
            "c1..",
            "c2...",
            "c1.zz..",
            "c1.0..",
            "c1....",
            "c1.ff..",
            "c1...0",
            "c1...1001",
            "c1...+5",
            "c1...x",
        ] {
            assert_eq!(
                Cursor::decode(bad, "embedded"),
                Err(CursorError::Malformed),
                "{bad:?}"
            );
        }
        // A store cursor Redis would refuse.
        let letters = Cursor {
            store: Some("abc".into()),
            ..Cursor::default()
        };
        assert_eq!(
            Cursor::decode(&letters.encode(), "redis"),
            Err(CursorError::Malformed)
        );
        assert!(Cursor::decode(&letters.encode(), "embedded").is_ok());
        assert_eq!(
            Cursor::decode(&"a".repeat(MAX_CURSOR_LEN + 1), "redis"),
            Err(CursorError::TooLong)
        );
    }
}
