//! The `Document` model and `DocBatch`, the unit that flows between nodes.
//!
//! Why our own struct rather than Arrow inside: stages edit strings per document
//! (decode, extract, segment, shingle, tokenize); Arrow arrays are immutable and a
//! builder round-trip per edit costs time and clarity. Arrow lives at the edges
//! (Parquet in and out, audits); `crate::arrow_io` owns the Document ⇄ RecordBatch schema.

use std::collections::BTreeMap;
use std::ops::Range;

/// One document (or, after `pack`, one packed training sequence).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    /// Stable, source-scoped id derived from (source, file, position). Never random.
    pub id: String,
    /// Input name from the config (the source node's name unless overridden).
    pub source: String,
    /// UTF-8 text. Always valid UTF-8 by construction.
    pub text: String,
    /// ISO-639 language code from `langid` (e.g. "zh", "en").
    pub lang: Option<String>,
    /// Word segmentation as byte spans into `text`, computed once by `segment_zh`
    /// and reused by filters, dedup and classifiers. Invalidated (set to None) by any
    /// stage that edits `text`.
    pub words: Option<Vec<Range<u32>>>,
    /// Token ids from `tokenize` (or the packed sequence after `pack`).
    pub tokens: Option<Vec<u32>>,
    /// Numeric scores, keyed `<stage>.<metric>`, e.g. `langid.score`.
    pub attrs: BTreeMap<String, f64>,
    /// String metadata: url, domain, warc offset, charset, ...
    pub meta: BTreeMap<String, String>,
    /// Set on packed sequences only (see the `pack` stage).
    pub packed: Option<Packed>,
    /// Set by the runtime when the document is sent to a `rejected` port.
    pub reject: Option<RejectInfo>,
    /// Where the document entered the run (set by the runtime for every document a source
    /// emits): a global order key independent of the rank count. Provenance, not content:
    /// ignored by `==` and never written to shards.
    pub origin: Origin,
}

/// A document's global order key: `(split index << 40) | record index within the split`.
/// Split `k` is read by rank `k % world_size`, so the key is the same whatever the number
/// of ranks, and ascending keys are the single-process input order of a one-source chain.
/// Compares equal to every other `Origin` (it is provenance, not content).
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Origin(pub u64);

impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Origin {
    /// Bits of the record index.
    pub const RECORD_BITS: u32 = 40;

    /// The key of record `record` of split `split`.
    pub fn new(split: usize, record: u64) -> Origin {
        Origin(((split as u64) << Self::RECORD_BITS) | (record & ((1 << Self::RECORD_BITS) - 1)))
    }

    /// The split index.
    pub fn split(self) -> usize {
        (self.0 >> Self::RECORD_BITS) as usize
    }

    /// The rank that reads this document's split in a run of `world_size` ranks.
    pub fn rank(self, world_size: usize) -> usize {
        self.split() % world_size.max(1)
    }
}

/// Packing information for one packed sequence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Packed {
    /// Start offset (in tokens) of every document segment inside `tokens`.
    pub doc_offsets: Vec<u32>,
    /// Ids of the documents whose tokens make up this sequence, aligned with `doc_offsets`.
    pub doc_ids: Vec<String>,
    /// Url of each segment's document (`meta.url`, empty when none), aligned with `doc_ids`.
    pub doc_urls: Vec<String>,
    /// Tokens per (source, licence) in this sequence; the licence is the document's
    /// `meta.license`, or `unknown`.
    pub source_mix: BTreeMap<(String, String), u32>,
    /// Number of padding tokens at the end of the sequence.
    pub n_pad: u32,
    /// Token offset of every segment inside its source document (0 unless the document was
    /// split across sequences), aligned with `doc_ids`.
    pub doc_starts: Vec<u64>,
    /// The length bucket (tokens per row) when `pack` runs with `buckets`; `None` otherwise.
    pub bucket: Option<u32>,
}

/// Why a document was rejected. The runtime fills `stage` with the node name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RejectInfo {
    /// Node name that rejected the document.
    pub stage: String,
    /// Short machine-readable reason, e.g. `too_short`, `lang`, `duplicate`.
    pub reason: String,
    /// The score that triggered the reject, when there is one.
    pub score: Option<f64>,
    /// Free-form detail (e.g. all failing rules, `duplicate_of=<id>`).
    pub detail: String,
}

impl Document {
    /// A new document with id, source and text; everything else empty.
    pub fn new(id: impl Into<String>, source: impl Into<String>, text: impl Into<String>) -> Self {
        Document {
            id: id.into(),
            source: source.into(),
            text: text.into(),
            ..Default::default()
        }
    }

    /// Replace the text and drop everything derived from the old text.
    pub fn set_text(&mut self, text: String) {
        self.text = text;
        self.words = None;
        self.tokens = None;
    }

    /// The words as `&str` slices, if `segment_zh` has run.
    pub fn word_strs(&self) -> Option<impl Iterator<Item = &str>> {
        let text = &self.text;
        self.words.as_ref().map(move |w| {
            w.iter()
                .map(move |r| &text[r.start as usize..r.end as usize])
        })
    }

    /// Approximate in-memory size, used for byte counters.
    pub fn byte_len(&self) -> u64 {
        self.text.len() as u64
    }
}

/// A batch of documents. `seq` restores input order after parallel work.
#[derive(Debug, Clone, Default)]
pub struct DocBatch {
    /// Sequence number within the producing port's stream, starting at 0.
    pub seq: u64,
    /// Index of the consuming node's input this batch arrived on (fan-in), set by the runtime.
    pub input: usize,
    /// The documents.
    pub docs: Vec<Document>,
}

impl DocBatch {
    /// A batch with the given sequence number.
    pub fn new(seq: u64, docs: Vec<Document>) -> Self {
        DocBatch {
            seq,
            input: 0,
            docs,
        }
    }
}
