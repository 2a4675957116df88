//! The id grammar: document ids, mixture copies and packed segments, parsed into parts.
//!
//! Every id a run writes can be taken apart without knowing the config, and
//! [`crate::stages`] build them only through [`escape`] and [`escape_key`], so the
//! separators `:` `@` `#` never appear inside a part:
//!
//! ```text
//! entry    = doc-id [ "#" epoch ] [ "@" start ]     (a packed row's doc_ids item)
//! doc-id   = source ":" file ":" position           (JSONL line, Parquet row, WARC record)
//!          | source ":" key                         (id_field / id_column value)
//! position = digits | digits "+" digits             (WARC: gzip member + offset inside it)
//! ```
//!
//! * `source` and `key` have `%`, `:`, `@`, `#` percent-encoded; `file` (the input's file
//!   name) has `%`, `@`, `#` encoded, and may hold `:` (the position is after the last one).
//! * So a doc id holds no `@` or `#`: the last `@` of an entry is a segment start (token
//!   offset inside a split document, from `pack`), the last `#` before it an epoch (a copy
//!   made by `mix`), and a doc id has exactly one `:` (key form) or more (file form).
//! * `position` is the line (JSONL, 1-based), the row (Parquet, 0-based) or the WARC
//!   record's byte offset (plain file), gzip member offset (the Common Crawl index offset)
//!   or `member+inner` (a record inside a multi-record member).
//!
//! Documented with examples in docs/concepts.md ("Ids").

use std::borrow::Cow;

/// Percent-encode `%`, `@`, `#` (and `:` when `colon`).
fn encode(s: &str, colon: bool) -> Cow<'_, str> {
    if !s
        .bytes()
        .any(|b| matches!(b, b'%' | b'@' | b'#') || (colon && b == b':'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '@' => out.push_str("%40"),
            '#' => out.push_str("%23"),
            ':' if colon => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A file name as it appears in an id (`%`, `@`, `#` encoded).
pub fn escape(file: &str) -> Cow<'_, str> {
    encode(file, false)
}

/// A source name or an id-field value as it appears in an id (`%`, `:`, `@`, `#` encoded).
pub fn escape_key(key: &str) -> Cow<'_, str> {
    encode(key, true)
}

/// Undo [`escape`] / [`escape_key`].
pub fn unescape(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3);
        let c = match code {
            Some("25") => Some('%'),
            Some("40") => Some('@'),
            Some("23") => Some('#'),
            Some("3A") | Some("3a") => Some(':'),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The id of a document read from position `pos` of file `file` by source `source`.
pub fn file_id(source: &str, file: &str, pos: impl std::fmt::Display) -> String {
    format!("{}:{}:{pos}", escape_key(source), escape(file))
}

/// The id of a document whose id comes from a field (`id_field`, `id_column`).
pub fn key_id(source: &str, key: &str) -> String {
    format!("{}:{}", escape_key(source), escape_key(key))
}

/// Where in its input a document was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// `file:position`: a line, a row or a WARC record offset.
    File {
        /// The input's file name (unescaped).
        file: String,
        /// The position as written (`42`, `940`, `1024+512`).
        position: String,
    },
    /// An id-field value (unescaped): found by scanning the source's inputs.
    Key(String),
}

/// A parsed doc id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocId {
    /// The source name (unescaped).
    pub source: String,
    /// Where the document came from.
    pub locator: Locator,
}

/// A parsed `doc_ids` entry (or any id: a plain doc id has no epoch and no start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The document id as written (escaped), without epoch and start.
    pub doc_id: String,
    /// The parsed document id.
    pub doc: DocId,
    /// `#<epoch>`: the copy number `mix` gave an upsampled document (none for the first).
    pub epoch: Option<u32>,
    /// `@<start>`: the token offset inside the document where this segment starts.
    pub start: Option<u64>,
}

fn is_position(p: &str) -> bool {
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match p.split_once('+') {
        Some((a, b)) => ok(a) && ok(b),
        None => ok(p),
    }
}

/// Parse a document id (`source:file:position` or `source:key`).
pub fn parse_doc_id(id: &str) -> Result<DocId, String> {
    if id.contains(['@', '#']) {
        return Err(format!(
            "{id:?}: a document id holds no '@' or '#' (those end segment and copy ids)"
        ));
    }
    let (source, local) = id
        .split_once(':')
        .ok_or_else(|| format!("{id:?}: expected <source>:<file>:<position> or <source>:<key>"))?;
    let locator = match local.rsplit_once(':') {
        Some((file, pos)) if is_position(pos) && !file.is_empty() => Locator::File {
            file: unescape(file),
            position: pos.to_string(),
        },
        Some(_) => {
            return Err(format!(
                "{id:?}: expected <source>:<file>:<position> (position: digits or digits+digits)"
            ))
        }
        None if !local.is_empty() => Locator::Key(unescape(local)),
        None => return Err(format!("{id:?}: empty id after the source")),
    };
    Ok(DocId {
        source: unescape(source),
        locator,
    })
}

/// Parse a `doc_ids` entry: `doc-id [#epoch] [@start]`.
pub fn parse_entry(entry: &str) -> Result<Entry, String> {
    let mut rest = entry;
    let mut start = None;
    if let Some((head, s)) = rest.rsplit_once('@') {
        start = Some(
            s.parse::<u64>()
                .map_err(|_| format!("{entry:?}: segment start {s:?} is not a number"))?,
        );
        rest = head;
    }
    let mut epoch = None;
    if let Some((head, e)) = rest.rsplit_once('#') {
        epoch = Some(
            e.parse::<u32>()
                .map_err(|_| format!("{entry:?}: epoch {e:?} is not a number"))?,
        );
        rest = head;
    }
    let doc = parse_doc_id(rest)?;
    Ok(Entry {
        doc_id: rest.to_string(),
        doc,
        epoch,
        start,
    })
}

/// A packed row reference `shards/<file>.parquet#<row>` (or `<file>.parquet#<row>`).
pub fn parse_row_ref(s: &str) -> Option<(String, usize)> {
    let (file, row) = s.rsplit_once('#')?;
    if !file.ends_with(".parquet") {
        return None;
    }
    Some((file.to_string(), row.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_back_to_its_parts() {
        let id = file_id("web", "warcfile.warc.gz", "940");
        assert_eq!(id, "web:warcfile.warc.gz:940");
        let e = parse_entry(&format!("{id}#2@4096")).unwrap();
        assert_eq!(e.doc_id, id);
        assert_eq!(e.epoch, Some(2));
        assert_eq!(e.start, Some(4096));
        assert_eq!(
            e.doc.locator,
            Locator::File {
                file: "warcfile.warc.gz".into(),
                position: "940".into()
            }
        );
        // A split offset and a WARC offset can no longer be confused.
        let e = parse_entry("web:warcfile.warc.gz:940@4096").unwrap();
        assert_eq!(
            (e.doc_id.as_str(), e.start),
            ("web:warcfile.warc.gz:940", Some(4096))
        );
        let e = parse_entry("web:f.warc.gz:1024+512").unwrap();
        assert_eq!(e.start, None);
        // Hostile names: separators inside parts are escaped and come back unchanged.
        let id = file_id("we:b", "a@b#c:d%.jsonl", 7);
        assert_eq!(id, "we%3Ab:a%40b%23c:d%25.jsonl:7");
        let e = parse_entry(&format!("{id}@3")).unwrap();
        assert_eq!(e.doc.source, "we:b");
        assert_eq!(
            e.doc.locator,
            Locator::File {
                file: "a@b#c:d%.jsonl".into(),
                position: "7".into()
            }
        );
        let id = key_id("zh_wiki", "urn:doc@1#x");
        let e = parse_entry(&format!("{id}#1")).unwrap();
        assert_eq!(e.doc.locator, Locator::Key("urn:doc@1#x".into()));
        assert_eq!(e.epoch, Some(1));
        assert_eq!(
            key_id("zh_wiki", "cmrc2018_dev_0"),
            "zh_wiki:cmrc2018_dev_0"
        );
        assert!(parse_entry("nocolon").is_err());
        assert!(parse_entry("a:b@x").is_err());
        assert_eq!(
            parse_row_ref("shards/shards-r0000-00000.parquet#12"),
            Some(("shards/shards-r0000-00000.parquet".into(), 12))
        );
    }
}
