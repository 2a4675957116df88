//! The run's attribute schema: which `attrs` keys its nodes set, and their types.
//!
//! In memory a document's attributes are `BTreeMap<String, f64>` keyed `<prefix>.<name>`
//! (`length_filter.chars`, `langid.score`). In the shards they are one **nested Arrow
//! struct** column, `attrs`: one child struct per prefix (the part before the first dot,
//! the stage that set it), one typed field per attribute: `Int64` for counts
//! (`tokenize.n_tokens`, `dedup.cluster_size`), `Float64` for scores. So readers address
//! them as plain nested fields, ints stay ints:
//!
//! ```sql
//! -- DuckDB
//! SELECT attrs.length_filter.chars, attrs.langid.score FROM 'out/shards/*.parquet';
//! ```
//!
//! A key without a dot is a top-level field of `attrs`. A child struct is NULL in a row
//! where none of its fields is set (the stage did not see the document); a field is NULL
//! where its stage did not set it.
//!
//! Every shard of a run (every sink, every rank, and the rejects) has the same `attrs`
//! type, so the type must be known before the first row is written: each stage declares
//! the attributes it may set ([`crate::stage::Transform::attrs`],
//! [`crate::stage::Stage::attrs`]), and the runtime collects the declarations of every node
//! of the graph into an [`AttrSchema`] ([`AttrSchema::from_nodes`]). Keys are sorted, so
//! the schema depends only on the config. A document carrying an undeclared attribute
//! fails the write with an error naming the key: a stage that sets an attribute must
//! declare it. A run whose nodes declare no attribute writes no `attrs` column (Parquet
//! has no empty struct).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, Int64Builder, StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields};

use crate::error::{Error, Result};
use crate::stage::Node;

/// The type of one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttrType {
    /// An integer-valued attribute (counts, ids): `Int64`.
    Int,
    /// A score or ratio: `Float64`.
    Float,
}

impl AttrType {
    /// The Arrow type of a field of this kind.
    pub fn data_type(self) -> DataType {
        match self {
            AttrType::Int => DataType::Int64,
            AttrType::Float => DataType::Float64,
        }
    }
}

/// One attribute a stage may set: its full key (`<prefix>.<name>`) and type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttrDecl {
    /// The key, as in `Document::attrs`.
    pub key: String,
    /// Its type.
    pub ty: AttrType,
}

impl AttrDecl {
    /// An integer attribute.
    pub fn int(key: impl Into<String>) -> Self {
        AttrDecl {
            key: key.into(),
            ty: AttrType::Int,
        }
    }
    /// A float attribute.
    pub fn float(key: impl Into<String>) -> Self {
        AttrDecl {
            key: key.into(),
            ty: AttrType::Float,
        }
    }
}

/// A top-level member of the `attrs` struct.
#[derive(Debug, Clone)]
enum Member {
    /// A child struct: prefix and its `(name, type, key index)` fields, sorted by name.
    Group(String, Vec<(String, AttrType, usize)>),
    /// A top-level field (a key without a dot).
    Scalar(String, AttrType, usize),
}

/// The run's `attrs` schema: every declared key, its type and its place in the struct.
#[derive(Debug, Clone, Default)]
pub struct AttrSchema {
    /// Declared keys, sorted, with their types.
    keys: Vec<(String, AttrType)>,
    index: HashMap<String, usize>,
    members: Vec<Member>,
    /// Per key prefix, the nodes that declare keys under it (for error messages).
    owners: BTreeMap<String, Vec<String>>,
}

impl AttrSchema {
    /// The schema of the given declarations (`(node, decls)` per node). A key declared by
    /// several nodes must have one type; a prefix cannot be both a key and a group.
    pub fn from_nodes<'a>(
        nodes: impl IntoIterator<Item = (&'a str, Vec<AttrDecl>)>,
    ) -> Result<Self> {
        let mut keys: BTreeMap<String, (AttrType, &'a str)> = BTreeMap::new();
        for (node, decls) in nodes {
            for d in decls {
                if d.key.is_empty() || d.key.starts_with('.') || d.key.ends_with('.') {
                    return Err(Error::msg(format!(
                        "node `{node}` declares the attribute `{}`: keys are `<prefix>.<name>`",
                        d.key
                    )));
                }
                match keys.get(&d.key) {
                    Some((ty, other)) if *ty != d.ty => {
                        return Err(Error::msg(format!(
                            "attribute `{}` is declared {:?} by node `{other}` and {:?} by node `{node}`",
                            d.key, ty, d.ty
                        )));
                    }
                    Some(_) => {}
                    None => {
                        keys.insert(d.key.clone(), (d.ty, node));
                    }
                }
            }
        }
        let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, (_, node)) in &keys {
            let v = owners.entry(prefix(k).to_string()).or_default();
            if !v.iter().any(|n| n == node) {
                v.push(node.to_string());
            }
        }
        let mut schema = Self::from_keys(keys.into_iter().map(|(k, (t, _))| (k, t)))?;
        schema.owners = owners;
        Ok(schema)
    }

    /// The schema of these keys (any order; duplicates must agree on the type).
    pub fn from_keys(keys: impl IntoIterator<Item = (String, AttrType)>) -> Result<Self> {
        let mut sorted: BTreeMap<String, AttrType> = BTreeMap::new();
        for (k, t) in keys {
            if let Some(old) = sorted.insert(k.clone(), t) {
                if old != t {
                    return Err(Error::msg(format!(
                        "attribute `{k}` has two types ({old:?} and {t:?})"
                    )));
                }
            }
        }
        let keys: Vec<(String, AttrType)> = sorted.into_iter().collect();
        let mut members: Vec<Member> = Vec::new();
        let mut groups: HashMap<String, usize> = HashMap::new();
        let mut scalars: HashMap<String, usize> = HashMap::new();
        for (i, (k, t)) in keys.iter().enumerate() {
            match k.split_once('.') {
                Some((prefix, name)) => {
                    if scalars.contains_key(prefix) {
                        return Err(Error::msg(format!(
                            "attribute `{prefix}` is a value and `{k}` makes it a group"
                        )));
                    }
                    let g = *groups.entry(prefix.to_string()).or_insert_with(|| {
                        members.push(Member::Group(prefix.to_string(), Vec::new()));
                        members.len() - 1
                    });
                    let Member::Group(_, fields) = &mut members[g] else {
                        unreachable!("groups index groups")
                    };
                    fields.push((name.to_string(), *t, i));
                }
                None => {
                    if groups.contains_key(k.as_str()) {
                        return Err(Error::msg(format!(
                            "attribute `{k}` is a value and a group of other attributes"
                        )));
                    }
                    members.push(Member::Scalar(k.clone(), *t, i));
                    scalars.insert(k.clone(), members.len() - 1);
                }
            }
        }
        let index = keys
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        Ok(AttrSchema {
            keys,
            index,
            members,
            owners: BTreeMap::new(),
        })
    }

    /// True when no attribute is declared (the shards then have no `attrs` column).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The declared keys, sorted, with their types.
    pub fn keys(&self) -> &[(String, AttrType)] {
        &self.keys
    }

    /// The type of a declared key.
    pub fn get(&self, key: &str) -> Option<AttrType> {
        self.index.get(key).map(|&i| self.keys[i].1)
    }

    /// The Arrow type of the `attrs` column (`None` when nothing is declared).
    pub fn data_type(&self) -> Option<DataType> {
        if self.is_empty() {
            return None;
        }
        let top: Vec<Field> = self
            .members
            .iter()
            .map(|m| match m {
                Member::Group(p, fields) => Field::new(
                    p,
                    DataType::Struct(Fields::from(
                        fields
                            .iter()
                            .map(|(n, t, _)| Field::new(n, t.data_type(), true))
                            .collect::<Vec<_>>(),
                    )),
                    true,
                ),
                Member::Scalar(k, t, _) => Field::new(k, t.data_type(), true),
            })
            .collect();
        Some(DataType::Struct(Fields::from(top)))
    }

    /// The `attrs` field of a shard schema (`None` when nothing is declared).
    pub fn field(&self) -> Option<Field> {
        self.data_type().map(|t| Field::new("attrs", t, false))
    }

    /// The `attrs` column of these documents' attributes. An undeclared key, or a
    /// non-integer value of an `Int` attribute, is an error naming the key and document.
    pub fn to_array<'a>(
        &self,
        rows: impl ExactSizeIterator<Item = (&'a str, &'a BTreeMap<String, f64>)>,
    ) -> Result<Option<ArrayRef>> {
        let n = rows.len();
        let mut vals: Vec<Vec<Option<f64>>> = vec![vec![None; n]; self.keys.len()];
        for (row, (id, attrs)) in rows.enumerate() {
            for (k, v) in attrs {
                let Some(&i) = self.index.get(k) else {
                    let hint = match self.owners.get(prefix(k)) {
                        Some(nodes) => format!(
                            "; node `{}` declares other `{}.*` attributes: add it to that stage's `attrs()`",
                            nodes.join("`, `"),
                            prefix(k)
                        ),
                        None => "; a stage that sets an attribute must list it in its `attrs()`"
                            .to_string(),
                    };
                    return Err(Error::msg(format!(
                        "document `{id}` carries the attribute `{k}`, which no node of this run declares{hint}"
                    )));
                };
                if !v.is_finite() {
                    continue;
                }
                if self.keys[i].1 == AttrType::Int && (v.fract() != 0.0 || v.abs() >= 9.2e18) {
                    return Err(Error::msg(format!(
                        "document `{id}`: the integer attribute `{k}` has the value {v}"
                    )));
                }
                vals[i][row] = Some(*v);
            }
        }
        let Some(DataType::Struct(top_fields)) = self.data_type() else {
            return Ok(None);
        };
        let leaf = |i: usize| -> ArrayRef {
            let v = &vals[i];
            match self.keys[i].1 {
                AttrType::Int => {
                    let mut b = Int64Builder::with_capacity(n);
                    for x in v {
                        b.append_option(x.map(|x| x as i64));
                    }
                    Arc::new(b.finish())
                }
                AttrType::Float => {
                    let mut b = Float64Builder::with_capacity(n);
                    for x in v {
                        b.append_option(*x);
                    }
                    Arc::new(b.finish())
                }
            }
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.members.len());
        for (m, f) in self.members.iter().zip(top_fields.iter()) {
            match m {
                Member::Scalar(_, _, i) => cols.push(leaf(*i)),
                Member::Group(_, fields) => {
                    let DataType::Struct(child_fields) = f.data_type() else {
                        unreachable!("a group is a struct")
                    };
                    let children: Vec<ArrayRef> = fields.iter().map(|(_, _, i)| leaf(*i)).collect();
                    // NULL where the stage set none of its attributes.
                    let valid: Vec<bool> = (0..n)
                        .map(|r| fields.iter().any(|(_, _, i)| vals[*i][r].is_some()))
                        .collect();
                    let s = StructArray::try_new(
                        child_fields.clone(),
                        children,
                        Some(NullBuffer::from(valid)),
                    )?;
                    cols.push(Arc::new(s));
                }
            }
        }
        Ok(Some(Arc::new(StructArray::try_new(
            top_fields, cols, None,
        )?)))
    }
}

/// The struct member a key lives in: the part before the first dot (the key itself when
/// it has none).
fn prefix(key: &str) -> &str {
    key.split_once('.').map_or(key, |(p, _)| p)
}

/// The attributes a built node declares (transforms and stages; none for the others).
pub fn declared(node: &Node) -> Vec<AttrDecl> {
    match node {
        Node::Transform(t) => t.attrs(),
        Node::Stage(s) => s.attrs(),
        Node::Source(_) | Node::Sink(_) => Vec::new(),
    }
}

/// The attribute schema of a built graph: the declarations of every transform and stage
/// (`names[i]` is node `i`'s name), handed to every sink with [`Sink::use_attrs`] (and to
/// stages that write documents themselves).
///
/// [`Sink::use_attrs`]: crate::stage::Sink::use_attrs
pub fn for_graph(names: &[String], nodes: &mut [Node]) -> Result<Arc<AttrSchema>> {
    let decls: Vec<(&str, Vec<AttrDecl>)> = names
        .iter()
        .zip(nodes.iter())
        .map(|(name, node)| (name.as_str(), declared(node)))
        .collect();
    let schema = Arc::new(AttrSchema::from_nodes(decls)?);
    for node in nodes.iter_mut() {
        match node {
            Node::Sink(s) => s.use_attrs(schema.clone()),
            Node::Stage(s) => s.use_attrs(schema.clone()),
            Node::Source(_) | Node::Transform(_) => {}
        }
    }
    Ok(schema)
}

/// The `(key, values as f64)` leaves of an `attrs` struct column, sorted by key: nested
/// structs are flattened to dotted keys (`length_filter.chars`), integers read as f64, and
/// a leaf is NULL where it or any struct above it is NULL.
pub fn flatten(col: &dyn Array) -> Result<Vec<(String, Float64Array)>> {
    fn walk(
        prefix: &str,
        s: &StructArray,
        parent: Option<&NullBuffer>,
        out: &mut Vec<(String, Float64Array)>,
    ) -> Result<()> {
        let nulls = NullBuffer::union(parent, s.nulls());
        for (f, c) in s.fields().iter().zip(s.columns()) {
            let key = if prefix.is_empty() {
                f.name().clone()
            } else {
                format!("{prefix}.{}", f.name())
            };
            if let Some(child) = c.as_struct_opt() {
                walk(&key, child, nulls.as_ref(), out)?;
                continue;
            }
            let v = arrow::compute::cast(c, &DataType::Float64)?;
            let v = v.as_primitive::<arrow::datatypes::Float64Type>();
            let all = NullBuffer::union(nulls.as_ref(), v.nulls());
            out.push((key, Float64Array::new(v.values().clone(), all)));
        }
        Ok(())
    }
    let s = col.as_struct_opt().ok_or_else(|| {
        Error::msg(format!(
            "`attrs` is not a struct column ({})",
            col.data_type()
        ))
    })?;
    let mut out = Vec::new();
    walk("", s, None, &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Read an `attrs` column back into per-row maps: the struct column of this schema, or the
/// JSON-object strings of runs written before it. Unset (NULL) attributes are absent.
pub fn read_column(col: &dyn Array) -> Result<Vec<BTreeMap<String, f64>>> {
    let n = col.len();
    if col.as_struct_opt().is_some() {
        let leaves = flatten(col)?;
        let mut out = vec![BTreeMap::new(); n];
        for (k, v) in &leaves {
            for (r, m) in out.iter_mut().enumerate() {
                if v.is_valid(r) {
                    m.insert(k.clone(), v.value(r));
                }
            }
        }
        return Ok(out);
    }
    let s = arrow::compute::cast(col, &DataType::Utf8)
        .map_err(|_| Error::msg(format!("`attrs` column of type {}", col.data_type())))?;
    let s = s.as_string::<i32>();
    Ok((0..n)
        .map(|r| {
            if s.is_null(r) {
                return BTreeMap::new();
            }
            serde_json::from_str::<BTreeMap<String, serde_json::Value>>(s.value(r))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> AttrSchema {
        AttrSchema::from_nodes([
            ("len", vec![AttrDecl::int("length_filter.chars")]),
            (
                "lid",
                vec![AttrDecl::float("langid.score"), AttrDecl::float("q")],
            ),
            ("tok", vec![AttrDecl::int("tokenize.n_tokens")]),
            ("tok2", vec![AttrDecl::int("tokenize.n_tokens")]),
        ])
        .unwrap()
    }

    #[test]
    fn nested_typed_struct() {
        let s = schema();
        let t = s.data_type().unwrap();
        assert_eq!(
            t.to_string(),
            DataType::Struct(Fields::from(vec![
                Field::new(
                    "langid",
                    DataType::Struct(Fields::from(vec![Field::new(
                        "score",
                        DataType::Float64,
                        true
                    )])),
                    true
                ),
                Field::new(
                    "length_filter",
                    DataType::Struct(Fields::from(vec![Field::new(
                        "chars",
                        DataType::Int64,
                        true
                    )])),
                    true
                ),
                Field::new("q", DataType::Float64, true),
                Field::new(
                    "tokenize",
                    DataType::Struct(Fields::from(vec![Field::new(
                        "n_tokens",
                        DataType::Int64,
                        true
                    )])),
                    true
                ),
            ]))
            .to_string()
        );
        let a: BTreeMap<String, f64> = [
            ("length_filter.chars".to_string(), 298.0),
            ("langid.score".to_string(), 0.5),
        ]
        .into();
        let b: BTreeMap<String, f64> = [("tokenize.n_tokens".to_string(), 7.0)].into();
        let col = s
            .to_array([("a", &a), ("b", &b)].into_iter())
            .unwrap()
            .unwrap();
        let st = col.as_struct();
        let lf = st.column_by_name("length_filter").unwrap().as_struct();
        assert!(lf.is_valid(0) && lf.is_null(1));
        let chars = lf.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(chars.value(0), 298);
        // Round trip: the maps come back, unset keys absent.
        assert_eq!(read_column(&col).unwrap(), vec![a, b]);
        let keys: Vec<String> = flatten(&col).unwrap().into_iter().map(|x| x.0).collect();
        assert_eq!(
            keys,
            [
                "langid.score",
                "length_filter.chars",
                "q",
                "tokenize.n_tokens"
            ]
        );
    }

    #[test]
    fn undeclared_and_non_integer_values_fail() {
        let s = schema();
        let a: BTreeMap<String, f64> = [("length_filter.words".to_string(), 3.0)].into();
        let e = s
            .to_array([("d1", &a)].into_iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("length_filter.words") && e.contains("d1"), "{e}");
        // Every 53-bit id (`dedup.cluster_id`) is an integer and goes through exactly.
        let big = ((1u64 << 53) - 1) as f64;
        let c: BTreeMap<String, f64> = [("tokenize.n_tokens".to_string(), big)].into();
        let col = s.to_array([("d3", &c)].into_iter()).unwrap().unwrap();
        assert_eq!(read_column(&col).unwrap()[0]["tokenize.n_tokens"], big);
        let b: BTreeMap<String, f64> = [("tokenize.n_tokens".to_string(), 2.5)].into();
        let e = s
            .to_array([("d2", &b)].into_iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenize.n_tokens"), "{e}");
    }

    #[test]
    fn conflicting_declarations_fail() {
        let e = AttrSchema::from_nodes([
            ("a", vec![AttrDecl::int("x.y")]),
            ("b", vec![AttrDecl::float("x.y")]),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("`a`") && e.contains("`b`"), "{e}");
        assert!(
            AttrSchema::from_nodes([("a", vec![AttrDecl::int("x"), AttrDecl::int("x.y")])])
                .is_err()
        );
    }

    #[test]
    fn json_strings_of_older_runs_read_back() {
        let col = arrow::array::StringArray::from(vec![Some(r#"{"a.b": 2.0, "c": 0.5}"#), None]);
        let m = read_column(&col).unwrap();
        assert_eq!(m[0]["a.b"], 2.0);
        assert!(m[1].is_empty());
    }
}
