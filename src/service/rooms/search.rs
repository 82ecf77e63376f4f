//! Full-text search over room events: an inverted index in RocksDB, kept in the batch of each
//! event it indexes.
//!
//! What is indexed: the `body` of `m.room.message`, the `name` of `m.room.name` and the `topic`
//! of `m.room.topic` (encrypted events have none of these, so encrypted rooms are not searchable
//! on the server, as the spec says). Text is cut into words at every character that is not a
//! letter or a digit, and lowercased. Each word of an event is one posting, keyed
//! `word ‖ stream position`, so a word's postings are in stream order and "does event N have
//! word W" is one point read. A redaction deletes the event's postings in its own batch.
//!
//! A query matches the events having every word of it. The rarest word's postings are read
//! newest first and each is checked against the other words by point reads; hits are then
//! ordered by recency or by a BM25-like rank of the word counts. If the index is missing (a
//! store from before it, or the `search_index` marker deleted) it is rebuilt in the background
//! at start-up, while search answers from what is indexed so far.

use std::collections::{HashMap, HashSet};

use ruma::events::TimelineEventType;
use ruma::{OwnedEventId, OwnedRoomId, RoomId};
use serde_json::Value;

use super::Rooms;
use super::pdu::Pdu;
use crate::error::Result;
use crate::store::{Batch, Table, key, prefix};

/// The marker of a complete index in `meta`.
const INDEX_MARKER: &[u8] = b"search_index";
/// Longest word indexed, in bytes; longer ones are cut (a search for them still matches).
const MAX_WORD: usize = 64;
/// Postings read per step of a scan.
const SCAN_STEP: usize = 512;
/// Postings of a word counted to pick the rarest one; past this, a word counts as common.
const RARITY_PROBE: usize = 50_000;

/// A field of an event's content that search covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchField {
    Body = 0,
    Name = 1,
    Topic = 2,
}

impl SearchField {
    fn from_byte(byte: u8) -> Option<SearchField> {
        [SearchField::Body, SearchField::Name, SearchField::Topic]
            .into_iter()
            .find(|field| *field as u8 == byte)
    }
}

/// An event matching a query.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub stream: u64,
    pub room_id: OwnedRoomId,
    /// How well it matches: higher is better.
    pub rank: f64,
}

/// What to look for.
pub struct SearchQuery<'a> {
    /// The words, as [`words`] cuts them.
    pub words: &'a [String],
    /// The rooms to look in.
    pub rooms: &'a HashSet<OwnedRoomId>,
    pub fields: &'a [SearchField],
    /// Only events below this stream position.
    pub below: Option<u64>,
    /// The most hits returned (the newest).
    pub cap: usize,
}

/// The words of a text, lowercased, each once, in order of first appearance.
pub fn words(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    tokens(text).filter(|word| seen.insert(word.clone())).collect()
}

/// Every word of a text, lowercased and cut to [`MAX_WORD`], repeats included.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| cut(&word.to_lowercase()).to_owned())
}

/// A word cut to [`MAX_WORD`] bytes at a character boundary.
fn cut(word: &str) -> &str {
    let mut end = word.len().min(MAX_WORD);
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    &word[..end]
}

/// The searchable field of an event and its text, if it has one.
fn searchable(pdu: &Pdu) -> Option<(SearchField, String)> {
    let (field, name) = match pdu.kind {
        TimelineEventType::RoomMessage => (SearchField::Body, "body"),
        TimelineEventType::RoomName => (SearchField::Name, "name"),
        TimelineEventType::RoomTopic => (SearchField::Topic, "topic"),
        _ => return None,
    };
    let content = pdu.content_value();
    Some((field, content.get(name).and_then(Value::as_str)?.to_owned()))
}

/// Each word of a text with how often it occurs, and the number of words.
fn word_counts(text: &str) -> (HashMap<String, u32>, u32) {
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut total = 0u32;
    for word in tokens(text) {
        *counts.entry(word).or_default() += 1;
        total = total.saturating_add(1);
    }
    (counts, total)
}

fn posting_key(word: &str, stream: u64) -> Vec<u8> {
    key(&[word.as_bytes(), &stream.to_be_bytes()])
}

/// A posting's value: field, occurrences, words in the field, room.
fn posting_value(field: SearchField, occurrences: u32, total: u32, room_id: &RoomId) -> Vec<u8> {
    let mut value = vec![field as u8, occurrences.min(255) as u8];
    value.extend_from_slice(&(total.min(u32::from(u16::MAX)) as u16).to_be_bytes());
    value.extend_from_slice(room_id.as_bytes());
    value
}

/// A posting's value read back: (field, occurrences, words in the field, room).
fn read_posting(value: &[u8]) -> Option<(SearchField, u32, u32, &[u8])> {
    let field = SearchField::from_byte(*value.first()?)?;
    let occurrences = u32::from(*value.get(1)?);
    let total = u32::from(u16::from_be_bytes(value.get(2..4)?.try_into().ok()?));
    Some((field, occurrences, total, value.get(4..)?))
}

/// How well a field with these word counts matches: BM25's saturation of each word's count,
/// with the field's length against a typical chat message of 12 words.
fn rank(matches: &[(u32, u32)]) -> f64 {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    const TYPICAL_LENGTH: f64 = 12.0;
    matches
        .iter()
        .map(|&(occurrences, total)| {
            let occurrences = f64::from(occurrences);
            let norm = K1 * (1.0 - B + B * f64::from(total.max(1)) / TYPICAL_LENGTH);
            occurrences * (K1 + 1.0) / (occurrences + norm)
        })
        .sum()
}

impl Rooms {
    /// Indexes the searchable text of an event at stream position `stream` in `batch`.
    pub(super) fn index_text(&self, batch: &mut Batch<'_>, pdu: &Pdu, stream: u64) {
        let Some((field, text)) = searchable(pdu) else { return };
        let (counts, total) = word_counts(&text);
        for (word, occurrences) in counts {
            batch.put(
                Table::SearchPostings,
                &posting_key(&word, stream),
                &posting_value(field, occurrences, total, &pdu.room_id),
            );
        }
    }

    /// Deletes the postings of an event's text (it was redacted) in `batch`.
    pub(super) fn unindex_text(&self, batch: &mut Batch<'_>, original: &Pdu, stream: u64) {
        let Some((_, text)) = searchable(original) else { return };
        for word in words(&text) {
            batch.delete(Table::SearchPostings, &posting_key(&word, stream));
        }
    }

    /// The events having every word of the query, newest first.
    pub fn search(&self, query: &SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        let Some(rarest) = self.rarest_word(query.words, query.below)? else {
            return Ok(Vec::new());
        };
        let others: Vec<&String> = query.words.iter().filter(|word| **word != rarest).collect();
        let word_prefix = prefix(&[rarest.as_bytes()]);
        let mut cursor = query.below.map_or(u64::MAX, |below| below.saturating_sub(1));
        let mut hits = Vec::new();
        loop {
            let mut start = word_prefix.clone();
            start.extend_from_slice(&cursor.to_be_bytes());
            let rows = self.store.range(Table::SearchPostings, &word_prefix, &start, false, SCAN_STEP)?;
            let exhausted = rows.len() < SCAN_STEP;
            // Candidates: postings of the rarest word in the rooms and fields asked for.
            let mut candidates = Vec::with_capacity(rows.len());
            for (row_key, value) in rows {
                let Some(stream) = row_key[word_prefix.len()..].try_into().ok().map(u64::from_be_bytes) else {
                    continue;
                };
                cursor = stream.saturating_sub(1);
                let Some((field, occurrences, total, room)) = read_posting(&value) else {
                    continue;
                };
                let Ok(room_id) = RoomId::parse(String::from_utf8_lossy(room).as_ref()) else {
                    continue;
                };
                if query.below.is_none_or(|below| stream < below) && query.fields.contains(&field) && query.rooms.contains(&room_id) {
                    candidates.push((stream, room_id, vec![(occurrences, total)]));
                }
            }
            // Each other word must be in each candidate: one batched read per word.
            for word in &others {
                let keys: Vec<Vec<u8>> = candidates.iter().map(|(stream, ..)| posting_key(word, *stream)).collect();
                let postings = self.store.multi_get(Table::SearchPostings, &keys)?;
                let mut found = postings.iter().map(|posting| posting.as_deref().and_then(read_posting));
                candidates.retain_mut(|(.., matches)| match found.next().flatten() {
                    Some((_, occurrences, total, _)) => {
                        matches.push((occurrences, total));
                        true
                    }
                    None => false,
                });
            }
            for (stream, room_id, matches) in candidates {
                hits.push(SearchHit {
                    stream,
                    room_id,
                    rank: rank(&matches),
                });
                if hits.len() >= query.cap {
                    return Ok(hits);
                }
            }
            if exhausted || cursor == 0 {
                return Ok(hits);
            }
        }
    }

    /// The word of the query with the fewest postings below `below` (counted up to
    /// [`RARITY_PROBE`], keys only); `None` when one has none at all (nothing can match).
    fn rarest_word(&self, words: &[String], below: Option<u64>) -> Result<Option<String>> {
        let mut rarest: Option<(usize, &String)> = None;
        for word in words {
            let word_prefix = prefix(&[word.as_bytes()]);
            let mut start = word_prefix.clone();
            start.extend_from_slice(&below.map_or(u64::MAX, |below| below.saturating_sub(1)).to_be_bytes());
            let count = self
                .store
                .count_keys_backward(Table::SearchPostings, &word_prefix, &start, RARITY_PROBE)?;
            if count == 0 {
                return Ok(None);
            }
            if rarest.is_none_or(|(fewest, _)| count < fewest) {
                rarest = Some((count, word));
            }
        }
        Ok(rarest.map(|(_, word)| word.clone()))
    }

    /// The event at stream position `stream` of a room's timeline.
    pub fn event_at(&self, room_id: &RoomId, stream: u64) -> Result<Option<OwnedEventId>> {
        let room = self.room(room_id)?;
        let row = self
            .store
            .get(Table::Timeline, &key(&[&room.short_id.to_be_bytes(), &stream.to_be_bytes()]))?;
        Ok(row.and_then(|id| OwnedEventId::try_from(String::from_utf8_lossy(&id).as_ref()).ok()))
    }

    /// Builds the search index when it is missing (a store from before it); returns the
    /// number of events read.
    pub fn rebuild_search_index_if_missing(&self) -> Result<u64> {
        if self.store.get(Table::Meta, INDEX_MARKER)?.is_some() {
            return Ok(0);
        }
        self.rebuild_search_index()
    }

    /// Drops the search index and builds it again from every room's timeline; returns the
    /// number of events read. Events sent meanwhile are indexed as they come, so the index is
    /// whole when this returns.
    pub fn rebuild_search_index(&self) -> Result<u64> {
        tracing::info!("building the search index");
        let mut batch = self.store.batch();
        batch.delete(Table::Meta, INDEX_MARKER);
        batch.commit()?;
        for keys in self.store.scan_keys(Table::SearchPostings, &[])?.chunks(10_000) {
            let mut batch = self.store.batch();
            for posting in keys {
                batch.delete(Table::SearchPostings, posting);
            }
            batch.commit()?;
        }
        let mut read = 0u64;
        for (room_id, _) in self.all()? {
            let mut cursor = None;
            loop {
                let events = self.timeline(&room_id, cursor, true, SCAN_STEP)?;
                let exhausted = events.len() < SCAN_STEP;
                let mut batch = self.store.batch();
                for (stream, event_id) in events {
                    cursor = Some(stream + 1);
                    read += 1;
                    if let Some(stored) = self.stored_event(&event_id)?
                        && stored.meta.redacted_by.is_none()
                    {
                        self.index_text(&mut batch, &stored.pdu.parse(&event_id, &room_id)?, stream);
                    }
                }
                batch.commit()?;
                if exhausted {
                    break;
                }
            }
        }
        self.store.put_synced(Table::Meta, INDEX_MARKER, &[1])?;
        tracing::info!(events = read, "the search index is built");
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_split_and_unique() {
        assert_eq!(words("Hello, WORLD! hello-world café 42x"), ["hello", "world", "café", "42x"]);
        assert!(words("  ... !!! ").is_empty());
    }

    #[test]
    fn denser_matches_rank_higher() {
        assert!(rank(&[(2, 4)]) > rank(&[(1, 4)]));
        assert!(rank(&[(1, 3)]) > rank(&[(1, 40)]));
    }
}
