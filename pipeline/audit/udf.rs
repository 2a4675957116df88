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
//! The `attrs` and `meta` columns are JSON objects (the run-dir schema), so these make
//! them queryable without a JSON extension.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, ListBuilder, StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
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

/// `json_get(json, key) -> utf8`.
pub fn json_get() -> ScalarUDF {
    create_udf(
        "json_get",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            eval_strings(args, |a, n| {
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
            })
        }),
    )
}

/// A `(json, key) -> f64` UDF that finds the number with `lookup`.
fn json_f64_udf(name: &str, lookup: fn(&Map<String, Value>, &str) -> Option<f64>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            eval_strings(args, |a, n| {
                let mut b = Float64Builder::with_capacity(n);
                per_row(a[0], a[1], n, |v| b.append_option(v), lookup);
                Ok(Arc::new(b.finish()) as ArrayRef)
            })
        }),
    )
}

/// `json_get_f64(json, key) -> f64`.
pub fn json_get_f64() -> ScalarUDF {
    json_f64_udf("json_get_f64", |o, k| o.get(k).and_then(value_f64))
}

/// `json_find_f64(json, suffix) -> f64`.
pub fn json_find_f64() -> ScalarUDF {
    json_f64_udf("json_find_f64", |o, suffix| {
        let dotted = format!(".{suffix}");
        o.iter()
            .find(|(k, _)| *k == suffix || k.ends_with(&dotted))
            .and_then(|(_, v)| value_f64(v))
    })
}

/// `json_keys(json) -> list<utf8>`.
pub fn json_keys() -> ScalarUDF {
    create_udf(
        "json_keys",
        vec![DataType::Utf8],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            eval_strings(args, |a, n| {
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
            })
        }),
    )
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
