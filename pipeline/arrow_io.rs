//! The one module that owns the Document ⇄ Arrow `RecordBatch` schemas.
//!
//! Three schemas leave the engine:
//! * **document shards**: `id, source, text?, lang, url, tokens, n_tokens, n_chars, attrs?, meta`;
//! * **packed shards** (after `pack`): `id, input_ids, n_tokens, doc_offsets, doc_ids,
//!   doc_urls, source_mix (source, tokens, license), n_pad, doc_starts`;
//! * **rejects**: `id, source, stage, reason, score, detail, url, n_chars, text_prefix, attrs?, meta`.
//!
//! `attrs` is a nested struct typed by the run's [`AttrSchema`]: one child struct per
//! stage prefix, one `Int64` (counts) or `Float64` (scores) field per attribute, e.g.
//! `attrs: {length_filter: {chars: int64}, langid: {score: double}}`. DuckDB reads
//! `attrs.length_filter.chars`, polars `pl.col("attrs").struct.field("length_filter")`,
//! pyarrow and HF datasets nested dicts with ints as ints. Every shard and reject file of
//! a run has the same `attrs` type; a run that declares no attribute has no `attrs`
//! column. See `crate::attrs`.
//!
//! `meta` stays a JSON-object string (sorted keys, so the bytes are deterministic): its
//! keys are open-ended (ingest `meta_columns`, WARC headers, per-stage notes) and not known
//! before the run, and a string reads the same in every reader (`meta->>'url'` in DuckDB).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Builder, LargeStringArray, ListArray, ListBuilder, RecordBatch,
    StringArray, StringBuilder, StructBuilder, UInt32Array, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

use crate::attrs::AttrSchema;
use crate::document::Document;
use crate::error::{Error, Result};

fn list_u32(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))),
        nullable,
    )
}

/// Schema of document shards, with the run's `attrs` type.
pub fn doc_schema(with_text: bool, attrs: &AttrSchema) -> SchemaRef {
    let mut f = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
    ];
    if with_text {
        f.push(Field::new("text", DataType::Utf8, false));
    }
    f.extend([
        Field::new("lang", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        list_u32("tokens", true),
        Field::new("n_tokens", DataType::UInt32, false),
        Field::new("n_chars", DataType::UInt64, false),
    ]);
    f.extend(attrs.field());
    f.push(Field::new("meta", DataType::Utf8, false));
    Arc::new(Schema::new(f))
}

fn source_mix_fields() -> Fields {
    Fields::from(vec![
        Field::new("source", DataType::Utf8, true),
        Field::new("tokens", DataType::UInt32, true),
        Field::new("license", DataType::Utf8, true),
    ])
}

/// Schema of packed-sequence shards.
pub fn packed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        list_u32("input_ids", false),
        Field::new("n_tokens", DataType::UInt32, false),
        list_u32("doc_offsets", false),
        Field::new(
            "doc_ids",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new(
            "doc_urls",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new(
            "source_mix",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(source_mix_fields()),
                true,
            ))),
            false,
        ),
        Field::new("n_pad", DataType::UInt32, false),
        Field::new(
            "doc_starts",
            DataType::List(Arc::new(Field::new("item", DataType::UInt64, true))),
            false,
        ),
    ]))
}

/// Schema of reject files, with the run's `attrs` type.
pub fn reject_schema(attrs: &AttrSchema) -> SchemaRef {
    let mut f = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("score", DataType::Float64, true),
        Field::new("detail", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, true),
        Field::new("n_chars", DataType::UInt64, false),
        Field::new("text_prefix", DataType::Utf8, false),
    ];
    f.extend(attrs.field());
    f.push(Field::new("meta", DataType::Utf8, false));
    Arc::new(Schema::new(f))
}

/// The `attrs` column of these documents (`None` when the run declares no attribute).
fn attrs_array(docs: &[Document], attrs: &AttrSchema) -> Result<Option<ArrayRef>> {
    attrs.to_array(docs.iter().map(|d| (d.id.as_str(), &d.attrs)))
}

/// Serialize meta as a JSON object with sorted keys.
pub fn meta_json(meta: &BTreeMap<String, String>) -> String {
    serde_json::to_string(meta).unwrap_or_else(|_| "{}".into())
}

/// Documents → a document-shard batch. An attribute `attrs` does not declare is an error.
pub fn docs_to_batch(
    docs: &[Document],
    with_text: bool,
    attrs_schema: &AttrSchema,
) -> Result<RecordBatch> {
    // Sized up front: the text and token buffers are most of a batch, and growing them by
    // doubling would copy (and page-fault) them several times over.
    let n = docs.len();
    let sum = |f: &dyn Fn(&Document) -> usize| docs.iter().map(f).sum::<usize>();
    let mut id = StringBuilder::with_capacity(n, sum(&|d| d.id.len()));
    let mut source = StringBuilder::with_capacity(n, sum(&|d| d.source.len()));
    let text_bytes = if with_text { sum(&|d| d.text.len()) } else { 0 };
    let mut text = StringBuilder::with_capacity(if with_text { n } else { 0 }, text_bytes);
    let mut lang = StringBuilder::with_capacity(n, 2 * n);
    let mut url =
        StringBuilder::with_capacity(n, sum(&|d| d.meta.get("url").map_or(0, |u| u.len())));
    let n_tok = sum(&|d| d.tokens.as_ref().map_or(0, |t| t.len()));
    let mut tokens = ListBuilder::with_capacity(UInt32Builder::with_capacity(n_tok), n);
    let mut n_tokens = UInt32Builder::with_capacity(n);
    let mut n_chars = UInt64Builder::with_capacity(n);
    let attrs = attrs_array(docs, attrs_schema)?;
    let mut meta = StringBuilder::with_capacity(n, 16 * n);
    for d in docs {
        id.append_value(&d.id);
        source.append_value(&d.source);
        if with_text {
            text.append_value(&d.text);
        }
        lang.append_option(d.lang.as_deref());
        url.append_option(d.meta.get("url").map(|s| s.as_str()));
        match &d.tokens {
            Some(t) => {
                tokens.values().append_slice(t);
                tokens.append(true);
                n_tokens.append_value(t.len() as u32);
            }
            None => {
                tokens.append(false);
                n_tokens.append_value(0);
            }
        }
        n_chars.append_value(d.text.chars().count() as u64);
        meta.append_value(meta_json(&d.meta));
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(id.finish()), Arc::new(source.finish())];
    if with_text {
        cols.push(Arc::new(text.finish()));
    }
    cols.extend([
        Arc::new(lang.finish()) as ArrayRef,
        Arc::new(url.finish()),
        Arc::new(tokens.finish()),
        Arc::new(n_tokens.finish()),
        Arc::new(n_chars.finish()),
    ]);
    cols.extend(attrs);
    cols.push(Arc::new(meta.finish()));
    Ok(RecordBatch::try_new(
        doc_schema(with_text, attrs_schema),
        cols,
    )?)
}

/// Packed sequences → a packed-shard batch.
pub fn packed_to_batch(docs: &[Document]) -> Result<RecordBatch> {
    let mut id = StringBuilder::new();
    let mut input_ids = ListBuilder::new(UInt32Builder::new());
    let mut n_tokens = UInt32Builder::new();
    let mut offsets = ListBuilder::new(UInt32Builder::new());
    let mut doc_ids = ListBuilder::new(StringBuilder::new());
    let mut doc_urls = ListBuilder::new(StringBuilder::new());
    let mut mix = ListBuilder::new(StructBuilder::from_fields(source_mix_fields(), 0));
    let mut n_pad = UInt32Builder::new();
    let mut starts = ListBuilder::new(UInt64Builder::new());
    for d in docs {
        let p = d
            .packed
            .as_ref()
            .ok_or_else(|| Error::msg(format!("document `{}` is not a packed sequence", d.id)))?;
        id.append_value(&d.id);
        let toks = d.tokens.as_deref().unwrap_or(&[]);
        input_ids.values().append_slice(toks);
        input_ids.append(true);
        n_tokens.append_value(toks.len() as u32 - p.n_pad.min(toks.len() as u32));
        offsets.values().append_slice(&p.doc_offsets);
        offsets.append(true);
        for i in &p.doc_ids {
            doc_ids.values().append_value(i);
        }
        doc_ids.append(true);
        for (k, _) in p.doc_ids.iter().enumerate() {
            doc_urls
                .values()
                .append_value(p.doc_urls.get(k).map_or("", |u| u.as_str()));
        }
        doc_urls.append(true);
        for ((s, l), t) in &p.source_mix {
            let sb = mix.values();
            sb.field_builder::<StringBuilder>(0)
                .expect("source field")
                .append_value(s);
            sb.field_builder::<UInt32Builder>(1)
                .expect("tokens field")
                .append_value(*t);
            sb.field_builder::<StringBuilder>(2)
                .expect("license field")
                .append_value(l);
            sb.append(true);
        }
        mix.append(true);
        n_pad.append_value(p.n_pad);
        if p.doc_starts.len() == p.doc_ids.len() {
            starts.values().append_slice(&p.doc_starts);
        } else {
            // Sequences built without starts: recover them from the `@<k>` id suffix.
            for i in &p.doc_ids {
                let k = i.rsplit_once('@').and_then(|(_, k)| k.parse().ok());
                starts.values().append_value(k.unwrap_or(0));
            }
        }
        starts.append(true);
    }
    Ok(RecordBatch::try_new(
        packed_schema(),
        vec![
            Arc::new(id.finish()),
            Arc::new(input_ids.finish()),
            Arc::new(n_tokens.finish()),
            Arc::new(offsets.finish()),
            Arc::new(doc_ids.finish()),
            Arc::new(doc_urls.finish()),
            Arc::new(mix.finish()),
            Arc::new(n_pad.finish()),
            Arc::new(starts.finish()),
        ],
    )?)
}

/// Rejected documents → a rejects batch.
pub fn rejects_to_batch(
    docs: &[Document],
    prefix_chars: usize,
    attrs_schema: &AttrSchema,
) -> Result<RecordBatch> {
    let mut b: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
    let mut score = Float64Builder::new();
    let mut detail = StringBuilder::new();
    let mut url = StringBuilder::new();
    let mut n_chars = UInt64Builder::new();
    let mut prefix = StringBuilder::new();
    let attrs = attrs_array(docs, attrs_schema)?;
    let mut meta = StringBuilder::new();
    for d in docs {
        let r = d.reject.clone().unwrap_or_default();
        b[0].append_value(&d.id);
        b[1].append_value(&d.source);
        b[2].append_value(&r.stage);
        b[3].append_value(&r.reason);
        score.append_option(r.score.filter(|s| s.is_finite()));
        detail.append_value(&r.detail);
        url.append_option(d.meta.get("url").map(|s| s.as_str()));
        n_chars.append_value(d.text.chars().count() as u64);
        let end = d
            .text
            .char_indices()
            .nth(prefix_chars)
            .map(|(i, _)| i)
            .unwrap_or(d.text.len());
        prefix.append_value(&d.text[..end]);
        meta.append_value(meta_json(&d.meta));
    }
    let mut cols: Vec<ArrayRef> = b
        .iter_mut()
        .map(|x| Arc::new(x.finish()) as ArrayRef)
        .collect();
    cols.extend([
        Arc::new(score.finish()) as ArrayRef,
        Arc::new(detail.finish()),
        Arc::new(url.finish()),
        Arc::new(n_chars.finish()),
        Arc::new(prefix.finish()),
    ]);
    cols.extend(attrs);
    cols.push(Arc::new(meta.finish()));
    Ok(RecordBatch::try_new(reject_schema(attrs_schema), cols)?)
}

/// Read a string column by name (Utf8 or LargeUtf8) as owned options.
pub fn string_column(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Option<String>>>> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        return Ok(Some(
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect(),
        ));
    }
    if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
        return Ok(Some(
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect(),
        ));
    }
    if let Some(a) = col.as_any().downcast_ref::<arrow::array::StringViewArray>() {
        return Ok(Some(
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect(),
        ));
    }
    Err(Error::msg(format!(
        "column `{name}` is not a string column ({})",
        col.data_type()
    )))
}

/// Read the `attrs` column back into per-row maps keyed `<prefix>.<name>` (unset
/// attributes absent): the struct column, or the JSON strings of older runs. `None` when
/// the batch has no `attrs` column (a run that declares no attribute).
pub fn attrs_column(batch: &RecordBatch) -> Result<Option<Vec<BTreeMap<String, f64>>>> {
    match batch.column_by_name("attrs") {
        Some(col) => crate::attrs::read_column(col.as_ref()).map(Some),
        None => Ok(None),
    }
}

/// Read a `list<uint32>` column by name.
pub fn u32_list_column(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Option<Vec<u32>>>>> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let l = col
        .as_any()
        .downcast_ref::<ListArray>()
        .ok_or_else(|| Error::msg(format!("column `{name}` is not a list column")))?;
    let mut out = Vec::with_capacity(l.len());
    for i in 0..l.len() {
        if l.is_null(i) {
            out.push(None);
            continue;
        }
        let v = l.value(i);
        let u = v
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| Error::msg(format!("column `{name}` is not list<uint32>")))?;
        out.push(Some(u.values().to_vec()));
    }
    Ok(Some(out))
}

/// Read a `list<uint64>` column by name.
pub fn u64_list_column(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Option<Vec<u64>>>>> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let l = col
        .as_any()
        .downcast_ref::<ListArray>()
        .ok_or_else(|| Error::msg(format!("column `{name}` is not a list column")))?;
    let mut out = Vec::with_capacity(l.len());
    for i in 0..l.len() {
        if l.is_null(i) {
            out.push(None);
            continue;
        }
        let v = l.value(i);
        let u = v
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .ok_or_else(|| Error::msg(format!("column `{name}` is not list<uint64>")))?;
        out.push(Some(u.values().to_vec()));
    }
    Ok(Some(out))
}

/// Read a `list<utf8>` column by name; a null list or string reads as empty.
pub fn string_list_column(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Vec<String>>>> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let l = col
        .as_any()
        .downcast_ref::<ListArray>()
        .ok_or_else(|| Error::msg(format!("column `{name}` is not a list column")))?;
    let mut out = Vec::with_capacity(l.len());
    for i in 0..l.len() {
        if l.is_null(i) {
            out.push(Vec::new());
            continue;
        }
        let v = l.value(i);
        let s = v
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::msg(format!("column `{name}` is not list<utf8>")))?;
        out.push(
            (0..s.len())
                .map(|k| {
                    if s.is_null(k) {
                        String::new()
                    } else {
                        s.value(k).to_string()
                    }
                })
                .collect(),
        );
    }
    Ok(Some(out))
}
