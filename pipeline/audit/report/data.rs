//! The report's data side: SQL result rows, number formatting, escaping, and what the
//! run's manifest says about its graph (node order, kinds, thresholds).

use std::collections::BTreeMap;

use maud::Render;
use serde_json::{Map, Value};

use super::super::{format_batches, Audit, Format};
use crate::error::Result;

/// One result row, as JSON.
pub type Row = Map<String, Value>;

/// Run `sql` and return its rows.
pub fn rows(audit: &Audit, sql: &str) -> Result<Vec<Row>> {
    let (schema, batches) = audit.sql(sql)?;
    let json = format_batches(&schema, &batches, Format::Json)?;
    let v: Vec<Row> = serde_json::from_str(&json)?;
    Ok(v)
}

/// A string cell ('' for NULL).
pub fn s(r: &Row, k: &str) -> String {
    match r.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(x)) => x.clone(),
        Some(v) => v.to_string(),
    }
}

/// A numeric cell (0 for NULL).
pub fn f(r: &Row, k: &str) -> f64 {
    match r.get(k) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(x)) => x.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A number for people: integers with thousands separators, other values to three
/// significant digits (at most two decimals from 10 up), never 17 digits.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.abs() >= 1e15 {
        return format!("{x:.3e}");
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        let n = x as i64;
        let d = n.unsigned_abs().to_string();
        let mut o = String::new();
        for (i, c) in d.chars().enumerate() {
            if i > 0 && (d.len() - i) % 3 == 0 {
                o.push(',');
            }
            o.push(c);
        }
        if n < 0 {
            o.insert(0, '-');
        }
        return o;
    }
    let a = x.abs();
    let decimals = if a >= 1000.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else if a >= 0.01 {
        3
    } else {
        // Three significant digits of a small value.
        (2 - a.log10().floor() as i32).clamp(3, 12) as usize
    };
    if decimals == 0 {
        return num(x.round());
    }
    let s = format!("{x:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// HTML-escape text for element content and attribute values. Escapes `' " & < >` and
/// replaces control characters (other than tab and newline) with U+FFFD.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 16);
    esc_to(s, &mut o);
    o
}

fn esc_to(s: &str, o: &mut String) {
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
}

/// Data text in a template: escaped by [`esc`] (stricter than maud's default, which
/// leaves `'` and control characters). Every string from the run goes through it.
pub struct T<'a>(pub &'a str);

impl Render for T<'_> {
    fn render_to(&self, buffer: &mut String) {
        esc_to(self.0, buffer);
    }
}

/// What the run's manifest says about its graph: the config embedded at run time.
#[derive(Debug, Default)]
pub struct Graph {
    /// Node names in DAG order (topological; ties in config order).
    pub order: Vec<String>,
    /// Node name → kind.
    pub kinds: BTreeMap<String, String>,
    /// Node name → its config parameters.
    pub params: BTreeMap<String, Value>,
    /// Node name → its manifest entry (what the stage reported).
    pub manifest: BTreeMap<String, Value>,
}

impl Graph {
    /// From the first manifest of the run (all ranks and runs of one config agree).
    pub fn of(audit: &Audit) -> Graph {
        let mut g = Graph::default();
        let Some(m) = audit.files.manifests.first().map(|rj| &rj.value) else {
            return g;
        };
        if let Some(nodes) = m["nodes"].as_object() {
            for (k, v) in nodes {
                g.manifest.insert(k.clone(), v.clone());
            }
        }
        let nodes: Vec<&Value> = m["config"]["nodes"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let names: Vec<String> = nodes
            .iter()
            .map(|n| n["name"].as_str().unwrap_or("").to_string())
            .collect();
        let mut inputs: Vec<Vec<usize>> = Vec::new();
        for n in &nodes {
            let name = n["name"].as_str().unwrap_or("").to_string();
            g.kinds
                .insert(name.clone(), n["kind"].as_str().unwrap_or("").to_string());
            g.params.insert(name, n["params"].clone());
            let ins = n["inputs"].as_array().cloned().unwrap_or_default();
            inputs.push(
                ins.iter()
                    .filter_map(|i| i.as_str())
                    .filter_map(|i| {
                        let node = i.split('.').next().unwrap_or(i);
                        names.iter().position(|x| x == node)
                    })
                    .collect(),
            );
        }
        // Kahn's algorithm, always taking the ready node that comes first in the config.
        let mut done = vec![false; names.len()];
        while g.order.len() < names.len() {
            let next = (0..names.len())
                .find(|&i| !done[i] && inputs[i].iter().all(|&j| done[j] || j == i));
            // A cycle cannot pass validation; fall back to config order if one shows up.
            let i = next.unwrap_or_else(|| (0..names.len()).find(|&i| !done[i]).unwrap_or(0));
            done[i] = true;
            g.order.push(names[i].clone());
        }
        g
    }

    /// Position of a node in DAG order (unknown nodes last).
    pub fn rank(&self, node: &str) -> usize {
        self.order
            .iter()
            .position(|n| n == node)
            .unwrap_or(usize::MAX)
    }

    /// Nodes of the given kinds, in DAG order.
    pub fn nodes_of(&self, kinds: &[&str]) -> Vec<String> {
        self.order
            .iter()
            .filter(|n| {
                self.kinds
                    .get(*n)
                    .is_some_and(|k| kinds.contains(&k.as_str()))
            })
            .cloned()
            .collect()
    }

    /// Thresholds of a node's filter on its reject score: `(label, value)`.
    pub fn node_thresholds(&self, node: &str) -> Vec<(String, f64)> {
        let p = self.params.get(node).cloned().unwrap_or(Value::Null);
        let mut out = Vec::new();
        match self.kinds.get(node).map(String::as_str) {
            Some("length_filter") => {
                if let Some(v) = p["min_chars"].as_f64().filter(|v| *v > 0.0) {
                    out.push((format!("{node} min_chars {}", num(v)), v));
                }
                if let Some(v) = p["max_chars"].as_f64() {
                    out.push((format!("{node} max_chars {}", num(v)), v));
                }
            }
            Some("quality_classifier") => {
                let v = p["threshold"].as_f64().or_else(|| {
                    self.manifest
                        .get(node)
                        .and_then(|m| m["threshold"].as_f64())
                });
                if let Some(v) = v {
                    out.push((format!("{node} threshold {}", num(v)), v));
                }
            }
            Some("langid") => {
                if let Some(keep) = p["keep"].as_object() {
                    for (lang, v) in keep {
                        if let Some(v) = v.as_f64() {
                            out.push((format!("{node} keep {lang} ≥ {}", num(v)), v));
                        }
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Thresholds that apply to a kept-document attr (`length_filter.chars`,
    /// `langid.score`, a quality classifier's attr).
    pub fn attr_thresholds(&self, attr: &str) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for node in &self.order {
            let applies = match self.kinds.get(node).map(String::as_str) {
                Some("length_filter") => attr == "length_filter.chars",
                Some("langid") => attr == "langid.score",
                Some("quality_classifier") => self
                    .manifest
                    .get(node)
                    .and_then(|m| m["attr"].as_str())
                    .is_some_and(|a| a == attr),
                _ => false,
            };
            if applies {
                out.extend(self.node_thresholds(node));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_rounded_for_people() {
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(-42.0), "-42");
        assert_eq!(num(0.123456789012345), "0.123");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(4.56789), "4.57");
        assert_eq!(num(12.3456), "12.3");
        assert_eq!(num(98765.4321), "98,765");
        assert_eq!(num(0.000123456), "0.000123");
        assert_eq!(num(-0.0001), "-0.0001");
        assert_eq!(num(1.5e18), "1.500e18");
    }

    #[test]
    fn escaping_is_strict() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{FFFD}"
        );
        let m = maud::html! { p { (T("<b>'")) } };
        assert_eq!(m.into_string(), "<p>&lt;b&gt;&#39;</p>");
    }
}
