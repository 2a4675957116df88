//! SQL functions registered in every audit session.
//!
//! | function | returns | meaning |
//! |---|---|---|
//! | `json_get(json, key)` | utf8 | value of `key` in a JSON object (strings as is, other values as JSON text); NULL if absent or not JSON |
//! | `json_get_f64(json, key)` | f64 | numeric value of `key` (numbers, or strings that parse as numbers) |
//! | `json_find_f64(json, suffix)` | f64 | value of the first key (in key order) equal to `suffix` or ending with `.suffix`, e.g. `json_find_f64(attrs, 'cluster_size')` finds `minhash_dedup.cluster_size` |
//! | `json_keys(json)` | list<utf8> | the object's keys, sorted |
//! | `domain(url)` | utf8 | lower-cased host without `www.`, port or user info |
//! | `sample_key(id, seed)` | u64 | xxh3(id) with the seed: `ORDER BY sample_key(id, 42) LIMIT n` is a seeded, reproducible random sample |
//!
//! The `meta` column is a JSON object, so these make it queryable without a JSON
//! extension. The `json_*` functions also take the `attrs` column, a nested struct (see
//! `crate::attrs`), with the same SQL and meaning: its fields read as dotted keys
//! (`json_get_f64(attrs, 'length_filter.chars')`), an attribute that is NULL in a row is
//! absent from it (`json_keys` lists only the set ones, `json_find_f64` skips unset ones),
//! and integers read as numbers. (The JSON-string `attrs` of runs written before the struct
//! still work.) Plain nested access works too: `attrs.length_filter.chars` or
//! `attrs['length_filter']['chars']` keeps the integer type.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, ListBuilder, StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use serde_json::{Map, Value};

type DfResult<T> = datafusion::common::Result<T>;

/// Register every audit UDF on a context.
pub fn register_all(ctx: &SessionContext) {
    for f in [
        json_get(),
        json_get_f64(),
        json_find_f64(),
        json_keys(),
        domain(),
        sample_key(),
    ] {
        ctx.register_udf(f);
    }
}

/// Evaluate `f` over the arguments as Utf8 arrays (after broadcasting scalars); returns a
/// scalar when every argument was a scalar, as DataFusion expects.
fn eval_strings(
    args: &[ColumnarValue],
    f: impl Fn(&[&arrow::array::StringArray], usize) -> DfResult<ArrayRef>,
) -> DfResult<ColumnarValue> {
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let casted: Vec<ArrayRef> = arrays
        .iter()
        .map(|a| arrow::compute::cast(a, &DataType::Utf8))
        .collect::<Result<_, _>>()?;
    let strs: Vec<&arrow::array::StringArray> =
        casted.iter().map(|a| a.as_string::<i32>()).collect();
    let n = strs.first().map(|a| a.len()).unwrap_or(0);
    let out = f(&strs, n)?;
    if all_scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}

fn object(s: &str) -> Option<Map<String, Value>> {
    serde_json::from_str::<Map<String, Value>>(s).ok()
}

fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Apply `get(obj, key)` row by row, reusing the parsed object while the JSON text repeats
/// (common with scalar broadcasting and sorted data).
fn per_row<T>(
    json: &arrow::array::StringArray,
    key: &arrow::array::StringArray,
    n: usize,
    mut emit: impl FnMut(Option<T>),
    get: impl Fn(&Map<String, Value>, &str) -> Option<T>,
) {
    let mut cache: Option<(usize, Option<Map<String, Value>>)> = None;
    for i in 0..n {
        if json.is_null(i) || key.is_null(i) {
            emit(None);
            continue;
        }
        let text = json.value(i);
        let hit = matches!(&cache, Some((j, _)) if json.value(*j) == text);
        if !hit {
            cache = Some((i, object(text)));
        }
        let r = cache
            .as_ref()
            .and_then(|(_, o)| o.as_ref())
            .and_then(|o| get(o, key.value(i)));
        emit(r);
    }
}

/// The object functions: each takes a JSON-object string column or an `attrs` struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ObjOp {
    Get,
    GetF64,
    FindF64,
    Keys,
}

/// A `json_*` UDF over JSON text or a struct column (see the module doc).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ObjUdf {
    name: &'static str,
    op: ObjOp,
    signature: Signature,
}

fn obj_udf(name: &'static str, op: ObjOp) -> ScalarUDF {
    let n = if op == ObjOp::Keys { 1 } else { 2 };
    ScalarUDF::new_from_impl(ObjUdf {
        name,
        op,
        signature: Signature::any(n, Volatility::Immutable),
    })
}

fn keys_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

impl ScalarUDFImpl for ObjUdf {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.op {
            ObjOp::Get => DataType::Utf8,
            ObjOp::GetF64 | ObjOp::FindF64 => DataType::Float64,
            ObjOp::Keys => keys_type(),
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let args = &args.args;
        if matches!(args[0].data_type(), DataType::Struct(_)) {
            return eval_struct(self.op, args);
        }
        match self.op {
            ObjOp::Get => eval_strings(args, |a, n| {
                let mut b = StringBuilder::new();
                per_row(
                    a[0],
                    a[1],
                    n,
                    |v: Option<String>| b.append_option(v),
                    |o, k| {
                        o.get(k).and_then(|v| match v {
                            Value::Null => None,
                            Value::String(s) => Some(s.clone()),
                            other => Some(other.to_string()),
                        })
                    },
                );
                Ok(Arc::new(b.finish()) as ArrayRef)
            }),
            ObjOp::GetF64 | ObjOp::FindF64 => {
                let lookup: fn(&Map<String, Value>, &str) -> Option<f64> =
                    if self.op == ObjOp::GetF64 {
                        |o, k| o.get(k).and_then(value_f64)
                    } else {
                        |o, suffix| {
                            o.iter()
                                .find(|(k, _)| suffix_match(k, suffix))
                                .and_then(|(_, v)| value_f64(v))
                        }
                    };
                eval_strings(args, |a, n| {
                    let mut b = Float64Builder::with_capacity(n);
                    per_row(a[0], a[1], n, |v| b.append_option(v), lookup);
                    Ok(Arc::new(b.finish()) as ArrayRef)
                })
            }
            ObjOp::Keys => eval_strings(args, |a, n| {
                let mut b = ListBuilder::new(StringBuilder::new());
                for i in 0..n {
                    match (!a[0].is_null(i)).then(|| object(a[0].value(i))).flatten() {
                        Some(o) => {
                            // serde_json's Map is a BTreeMap here: keys come out sorted.
                            for k in o.keys() {
                                b.values().append_value(k);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Ok(Arc::new(b.finish()) as ArrayRef)
            }),
        }
    }
}

/// `key` is `suffix` or ends with `.suffix`.
fn suffix_match(key: &str, suffix: &str) -> bool {
    key == suffix
        || (key.len() > suffix.len()
            && key.ends_with(suffix)
            && key.as_bytes()[key.len() - suffix.len() - 1] == b'.')
}

/// The object functions over an `attrs` struct column: its leaves as dotted keys, sorted;
/// a NULL leaf is an absent key.
fn eval_struct(op: ObjOp, args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let n = arrays[0].len();
    let leaves = crate::attrs::flatten(arrays[0].as_ref())
        .map_err(|e| datafusion::common::DataFusionError::Execution(e.to_string()))?;
    let keys = match arrays.get(1) {
        Some(k) => Some(arrow::compute::cast(k, &DataType::Utf8)?),
        None => None,
    };
    let keys = keys.as_ref().map(|k| k.as_string::<i32>());
    // The leaf a row's key names (the key column is usually one literal: look it up once).
    let mut last: Option<(String, Option<usize>)> = None;
    let mut find = |i: usize, exact: bool| -> Option<usize> {
        let k = keys?;
        if k.is_null(i) {
            return None;
        }
        let key = k.value(i);
        if exact {
            if let Some((lk, hit)) = &last {
                if lk == key {
                    return *hit;
                }
            }
            let hit = leaves.binary_search_by(|(x, _)| x.as_str().cmp(key)).ok();
            last = Some((key.to_string(), hit));
            hit
        } else {
            leaves
                .iter()
                .position(|(x, v)| v.is_valid(i) && suffix_match(x, key))
        }
    };
    let out: ArrayRef = match op {
        ObjOp::Get => {
            let mut b = StringBuilder::new();
            for i in 0..n {
                let v = find(i, true)
                    .map(|j| &leaves[j].1)
                    .filter(|v| v.is_valid(i))
                    .map(|v| {
                        serde_json::Number::from_f64(v.value(i))
                            .map_or_else(|| v.value(i).to_string(), |x| x.to_string())
                    });
                b.append_option(v);
            }
            Arc::new(b.finish())
        }
        ObjOp::GetF64 | ObjOp::FindF64 => {
            let mut b = Float64Builder::with_capacity(n);
            for i in 0..n {
                let j = find(i, op == ObjOp::GetF64);
                b.append_option(
                    j.map(|j| &leaves[j].1)
                        .filter(|v| v.is_valid(i))
                        .map(|v| v.value(i)),
                );
            }
            Arc::new(b.finish())
        }
        ObjOp::Keys => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for i in 0..n {
                if arrays[0].is_null(i) {
                    b.append(false);
                    continue;
                }
                for (k, v) in &leaves {
                    if v.is_valid(i) {
                        b.values().append_value(k);
                    }
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
    };
    if all_scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}

/// `json_get(json, key) -> utf8`.
pub fn json_get() -> ScalarUDF {
    obj_udf("json_get", ObjOp::Get)
}

/// `json_get_f64(json, key) -> f64`.
pub fn json_get_f64() -> ScalarUDF {
    obj_udf("json_get_f64", ObjOp::GetF64)
}

/// `json_find_f64(json, suffix) -> f64`.
pub fn json_find_f64() -> ScalarUDF {
    obj_udf("json_find_f64", ObjOp::FindF64)
}

/// `json_keys(json) -> list<utf8>`.
pub fn json_keys() -> ScalarUDF {
    obj_udf("json_keys", ObjOp::Keys)
}

/// The registrable host of a URL: lower-cased, without scheme, user info, port, or a
/// leading `www.`. `None` when there is no host.
pub fn url_domain(url: &str) -> Option<String> {
    let s = url.trim();
    let s = match s.find("://") {
        Some(i) => &s[i + 3..],
        None => s.strip_prefix("//").unwrap_or(s),
    };
    let end = s.find(['/', '?', '#']).unwrap_or(s.len());
    let mut host = &s[..end];
    if let Some(at) = host.rfind('@') {
        host = &host[at + 1..];
    }
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep what is inside the brackets.
        host = rest.split(']').next().unwrap_or("");
    } else if let Some(colon) = host.find(':') {
        host = &host[..colon];
    }
    let host = host.trim_end_matches('.').to_lowercase();
    let host = host
        .strip_prefix("www.")
        .map(str::to_string)
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// `domain(url) -> utf8`.
pub fn domain() -> ScalarUDF {
    create_udf(
        "domain",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            eval_strings(args, |a, n| {
                let mut b = StringBuilder::new();
                for i in 0..n {
                    b.append_option(if a[0].is_null(i) {
                        None
                    } else {
                        url_domain(a[0].value(i))
                    });
                }
                Ok(Arc::new(b.finish()) as ArrayRef)
            })
        }),
    )
}

/// `sample_key(id, seed) -> u64`.
pub fn sample_key() -> ScalarUDF {
    create_udf(
        "sample_key",
        vec![DataType::Utf8, DataType::Int64],
        DataType::UInt64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let ids = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
            let seeds = arrow::compute::cast(&arrays[1], &DataType::Int64)?;
            let ids = ids.as_string::<i32>();
            let seeds = seeds.as_primitive::<arrow::datatypes::Int64Type>();
            let mut b = UInt64Builder::with_capacity(ids.len());
            for i in 0..ids.len() {
                if ids.is_null(i) || seeds.is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(xxhash_rust::xxh3::xxh3_64_with_seed(
                        ids.value(i).as_bytes(),
                        seeds.value(i) as u64,
                    ));
                }
            }
            let out: ArrayRef = Arc::new(b.finish());
            if all_scalar {
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
            } else {
                Ok(ColumnarValue::Array(out))
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            url_domain("https://www.Example.com:8080/a?b").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            url_domain("http://user:pw@zh.wikipedia.org/wiki/x").as_deref(),
            Some("zh.wikipedia.org")
        );
        assert_eq!(
            url_domain("//news.sina.com.cn").as_deref(),
            Some("news.sina.com.cn")
        );
        assert_eq!(url_domain("http://[::1]:80/").as_deref(), Some("::1"));
        assert_eq!(url_domain("https:///path"), None);
        assert_eq!(url_domain(""), None);
    }
}
