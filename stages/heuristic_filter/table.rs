//! The rule table: every heuristic rule is one [`Rule`] row — its name (the reject reason
//! and the `attrs` key), its thresholds ([`Limit`]: the `languages.<lang>` field that
//! overrides each, the comparison, the zh and other-language defaults, the validation), and
//! the function that measures it. Adding a rule is one row here plus its documented field
//! in [`super::LangParams`]; overrides, `disable`, validation and evaluation all read the
//! table.
//!
//! Measurements share one [`Ctx`] per document: lines, paragraphs, non-symbol words and
//! the n-gram tables are computed on first use and reused by every rule that needs them.

use std::collections::HashSet;

use super::rules::*;
use super::LangRules;
use crate::document::Document;

/// Which side of a threshold fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// The value must be ≥ the limit (`< limit` fails).
    Min,
    /// The value must be ≤ the limit (`> limit` fails).
    Max,
}

/// How a configured limit is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A share: must lie in [0, 1].
    Fraction,
    /// Any number (counts, lengths, per-word ratios that may exceed 1).
    Any,
}

/// One threshold of a rule.
#[derive(Debug)]
pub struct Limit {
    /// The `languages.<lang>` field that overrides it (`""`: not configurable, only
    /// `disable`).
    pub param: &'static str,
    pub cmp: Cmp,
    /// Built-in value for Chinese (`None`: off).
    pub zh: Option<f64>,
    /// Built-in value for every other language (`None`: off).
    pub other: Option<f64>,
    pub check: Check,
}

/// What a rule measured on one document.
pub enum Value {
    /// Nothing to measure (e.g. fewer than `n` words): no outcome.
    Skip,
    /// One value, compared with the rule's limits.
    One(f64),
    /// One value, compared with the rule's limits multiplied by the factor.
    Scaled(f64, f64),
    /// Per-n values with their own maximum (the n-gram rules): `(n, value, max)`, reported
    /// as `top_{n}_gram` / `dup_{n}_gram`.
    PerN(Vec<(usize, f64, f64)>),
}

/// One heuristic rule.
pub struct Rule {
    /// Rule name: the reject reason, `attrs` key suffix and `disable` entry.
    pub name: &'static str,
    /// Thresholds; the rule runs when any of them is set (per-n rules: when their map is
    /// non-empty).
    pub limits: &'static [Limit],
    /// A line-share rule: runs only on documents with ≥ `min_lines_for_line_rules` lines.
    pub line_share: bool,
    /// Per-n thresholds come from `top_n_grams` / `dup_n_grams` instead of `limits`.
    pub per_n: bool,
    /// The value is a count (an `Int64` attribute); otherwise a ratio (`Float64`).
    pub count: bool,
    /// Measure the document.
    pub eval: fn(&mut Ctx<'_>) -> Value,
}

const fn lim(param: &'static str, cmp: Cmp, zh: Option<f64>, other: Option<f64>) -> Limit {
    Limit {
        param,
        cmp,
        zh,
        other,
        check: Check::Any,
    }
}

const fn share(param: &'static str, cmp: Cmp, zh: Option<f64>, other: Option<f64>) -> Limit {
    Limit {
        param,
        cmp,
        zh,
        other,
        check: Check::Fraction,
    }
}

const fn rule(
    name: &'static str,
    limits: &'static [Limit],
    eval: fn(&mut Ctx<'_>) -> Value,
) -> Rule {
    Rule {
        name,
        limits,
        line_share: false,
        per_n: false,
        count: false,
        eval,
    }
}

impl Rule {
    /// The same rule, measuring a count.
    const fn counts(self) -> Rule {
        Rule {
            count: true,
            ..self
        }
    }
}

const fn line_rule(
    name: &'static str,
    limits: &'static [Limit],
    eval: fn(&mut Ctx<'_>) -> Value,
) -> Rule {
    Rule {
        line_share: true,
        ..rule(name, limits, eval)
    }
}

const fn per_n_rule(name: &'static str, eval: fn(&mut Ctx<'_>) -> Value) -> Rule {
    Rule {
        per_n: true,
        ..rule(name, &[], eval)
    }
}

use Cmp::{Max, Min};

/// Every rule, in evaluation order: the first failing one is the reject reason.
pub static RULES: &[Rule] = &[
    rule(
        "chars",
        &[
            lim("min_chars", Min, Some(50.0), Some(0.0)),
            lim("max_chars", Max, Some(1e6), Some(1e6)),
        ],
        |c| Value::One(c.n_chars as f64),
    )
    .counts(),
    rule(
        "cjk_share",
        &[share("min_cjk_share", Min, Some(0.3), None)],
        |c| Value::One(cjk_share(c.text)),
    ),
    rule(
        "flagged_ratio",
        &[share("max_flagged_ratio", Max, Some(0.015), None)],
        |c| match c.flagged() {
            Some((chars, _)) => Value::One(ratio(chars, c.n_chars)),
            None => Value::Skip,
        },
    ),
    rule(
        "flagged_distinct",
        &[lim("max_flagged_distinct", Max, Some(6.0), None)],
        |c| match c.flagged() {
            // The limit holds per `flagged_distinct_chars` characters (long clean texts
            // collect distinct flagged words by chance; see `LangParams`).
            Some((_, distinct)) => {
                let per = c.lr.rules.flagged_distinct_chars.max(1);
                Value::Scaled(distinct as f64, c.n_chars.div_ceil(per).max(1) as f64)
            }
            None => Value::Skip,
        },
    )
    .counts(),
    rule("lorem_ipsum", &[lim("", Max, Some(0.0), Some(0.0))], |c| {
        Value::One(has_lorem_ipsum(c.text) as u8 as f64)
    })
    .counts(),
    rule(
        "c4_bad_lines",
        &[share("max_c4_bad_line_ratio", Max, Some(0.3), Some(0.3))],
        |c| {
            let lines = c.lines();
            let bad = lines.iter().filter(|l| is_c4_bad_line(l)).count();
            Value::One(ratio(bad, lines.len()))
        },
    ),
    rule(
        "words",
        &[
            lim("min_words", Min, Some(50.0), Some(50.0)),
            lim("max_words", Max, None, None),
        ],
        |c| Value::One(c.non_symbol().0 as f64),
    )
    .counts(),
    rule(
        "avg_word_len",
        &[
            lim("min_avg_word_len", Min, Some(1.0), Some(3.0)),
            lim("max_avg_word_len", Max, Some(6.0), Some(10.0)),
        ],
        |c| {
            let (n, chars) = c.non_symbol();
            Value::One(ratio(chars, n))
        },
    ),
    rule(
        "hash_ratio",
        &[share("max_hash_ratio", Max, Some(0.1), Some(0.1))],
        |c| Value::One(ratio(c.text.matches('#').count(), c.n_words)),
    ),
    rule(
        "ellipsis_ratio",
        &[share("max_ellipsis_ratio", Max, Some(0.1), Some(0.1))],
        |c| {
            let n = c.text.matches("...").count() + c.text.matches('…').count();
            Value::One(ratio(n, c.n_words))
        },
    ),
    line_rule(
        "bullet_lines",
        &[share("max_bullet_lines_ratio", Max, Some(0.9), Some(0.9))],
        |c| {
            let lines = c.lines();
            let n = lines
                .iter()
                .map(|l| l.trim_start())
                .filter(|t| t.starts_with('•') || t.starts_with('-'))
                .count();
            Value::One(ratio(n, lines.len()))
        },
    ),
    line_rule(
        "end_ellipsis_lines",
        &[share(
            "max_end_ellipsis_lines_ratio",
            Max,
            Some(0.3),
            Some(0.3),
        )],
        |c| {
            let lines = c.lines();
            let n = lines
                .iter()
                .map(|l| l.trim_end())
                .filter(|t| t.ends_with("...") || t.ends_with('…'))
                .count();
            Value::One(ratio(n, lines.len()))
        },
    ),
    rule(
        "alpha_words",
        // zh 0.5: jieba emits punctuation and number tokens.
        &[share("min_alpha_words_ratio", Min, Some(0.5), Some(0.8))],
        |c| {
            let n = c
                .words()
                .filter(|w| w.chars().any(char::is_alphabetic))
                .count();
            Value::One(ratio(n, c.n_words))
        },
    ),
    rule(
        "stop_words",
        // Off for a language without a stopword list unless configured (see `Rules`).
        &[lim("min_stop_words", Min, Some(2.0), Some(2.0))],
        |c| {
            let stop = &c.lr.stopwords;
            Value::One(c.words().filter(|w| stop.contains(*w)).count() as f64)
        },
    )
    .counts(),
    rule(
        "dup_para_frac",
        &[share("dup_para_frac", Max, Some(0.3), Some(0.3))],
        |c| {
            let (dups, _, n) = c.para_dups();
            Value::One(ratio(dups, n))
        },
    ),
    rule(
        "dup_para_char_frac",
        &[share("dup_para_char_frac", Max, Some(0.2), Some(0.2))],
        |c| Value::One(ratio(c.para_dups().1, c.n_chars)),
    ),
    rule(
        "dup_line_frac",
        // zh: FineWeb-2 cmn_Hani.
        &[share("dup_line_frac", Max, Some(0.287), Some(0.3))],
        |c| {
            let dups = c.line_dups().0;
            Value::One(ratio(dups, c.lines().len()))
        },
    ),
    rule(
        "dup_line_char_frac",
        &[share("dup_line_char_frac", Max, Some(0.2), Some(0.2))],
        |c| Value::One(ratio(c.line_dups().1, c.n_chars)),
    ),
    per_n_rule("top_n_gram", |c| {
        let (lr, n_chars) = (c.lr, c.n_chars);
        let ws = c.word_stats();
        let v = lr
            .rules
            .top_n_grams
            .iter()
            .filter_map(|(&n, &max)| {
                ws.top_ngram_chars(n)
                    .map(|chars| (n, ratio(chars, n_chars), max))
            })
            .collect();
        Value::PerN(v)
    }),
    per_n_rule("dup_n_gram", |c| {
        let (lr, n_chars) = (c.lr, c.n_chars);
        let ws = c.word_stats();
        let v = lr
            .rules
            .dup_n_grams
            .iter()
            .map(|(&n, &max)| (n, ratio(ws.dup_ngram_chars(n), n_chars), max))
            .collect();
        Value::PerN(v)
    }),
    line_rule(
        "line_punct_ratio",
        // zh: FineWeb-2 cmn_Hani.
        &[share("min_line_punct_ratio", Min, Some(0.106), Some(0.12))],
        |c| {
            let lr = c.lr;
            let end = &lr.rules.line_end_punct;
            let lines = c.lines();
            let n = lines
                .iter()
                .filter(|l| {
                    l.trim_end()
                        .chars()
                        .last()
                        .is_some_and(|ch| end.contains(&ch))
                })
                .count();
            match lines.len() {
                0 => Value::Skip,
                total => Value::One(ratio(n, total)),
            }
        },
    ),
    line_rule(
        "short_line_ratio",
        &[share("max_short_line_ratio", Max, Some(0.67), Some(0.67))],
        |c| {
            let short = c.lr.rules.short_line_chars;
            let lines = c.lines();
            let n = lines.iter().filter(|l| nchars(l.trim()) <= short).count();
            match lines.len() {
                0 => Value::Skip,
                total => Value::One(ratio(n, total)),
            }
        },
    ),
    rule(
        "char_dup_ratio",
        &[share("max_char_dup_ratio", Max, Some(0.1), Some(0.01))],
        |c| {
            let non_nl = c.n_chars - c.text.matches('\n').count();
            Value::One(ratio(c.line_dups().1, non_nl))
        },
    ),
    rule(
        "newline_ratio",
        &[lim("max_newline_ratio", Max, Some(0.178), Some(0.3))],
        |c| Value::One(ratio(c.text.matches('\n').count(), c.n_words)),
    ),
    rule(
        "char_ngram_rep",
        &[share("max_char_ngram_rep", Max, Some(0.4), None)],
        |c| {
            // One n-gram table at a time: the word n-gram tables are done with.
            c.word_stats = None;
            Value::One(char_ngram_repetition(c.text, c.lr.rules.char_ngram))
        },
    ),
];

/// The index of a rule in [`RULES`].
pub fn rule_index(name: &str) -> Option<usize> {
    RULES.iter().position(|r| r.name == name)
}

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One document's shared measurements, computed on first use.
pub struct Ctx<'a> {
    pub(super) lr: &'a LangRules,
    pub(super) doc: &'a Document,
    pub(super) text: &'a str,
    pub(super) n_chars: usize,
    /// Words as segmented (`Document::words`), symbols included.
    pub(super) n_words: usize,
    lines: Option<Vec<&'a str>>,
    flagged: Option<Option<(usize, usize)>>,
    non_symbol: Option<(usize, usize)>,
    line_dups: Option<(usize, usize)>,
    para_dups: Option<(usize, usize, usize)>,
    word_stats: Option<WordStats>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(lr: &'a LangRules, doc: &'a Document) -> Self {
        let text = doc.text.as_str();
        Ctx {
            lr,
            doc,
            text,
            n_chars: nchars(text),
            n_words: doc.words.as_ref().map_or(0, |w| w.len()),
            lines: None,
            flagged: None,
            non_symbol: None,
            line_dups: None,
            para_dups: None,
            word_stats: None,
        }
    }

    /// Words are walked from the spans each time they are needed: a `Vec<&str>` of them
    /// cost 16 bytes per word (~3.5 bytes per byte of Chinese text).
    pub(super) fn words(&self) -> impl Iterator<Item = &'a str> {
        self.doc.word_strs().into_iter().flatten()
    }

    /// Non-empty lines, shared by the C4, Gopher and FineWeb line rules.
    pub(super) fn lines(&mut self) -> &[&'a str] {
        let text = self.text;
        self.lines
            .get_or_insert_with(|| text.split('\n').filter(|l| !l.trim().is_empty()).collect())
    }

    /// (characters inside flagged words, distinct flagged words); `None` without a list.
    fn flagged(&mut self) -> Option<(usize, usize)> {
        let (lr, text) = (self.lr, self.text);
        *self.flagged.get_or_insert_with(|| {
            let ac = lr.flagged.as_ref()?;
            let mut chars = 0usize;
            let mut distinct = HashSet::new();
            for m in ac.find_iter(text) {
                chars += nchars(&text[m.start()..m.end()]);
                distinct.insert(m.pattern());
            }
            Some((chars, distinct.len()))
        })
    }

    /// (non-symbol words, their characters).
    fn non_symbol(&mut self) -> (usize, usize) {
        let words = self.words();
        *self.non_symbol.get_or_insert_with(|| {
            words
                .filter(|w| is_non_symbol_word(w))
                .fold((0, 0), |(n, c), w| (n + 1, c + nchars(w)))
        })
    }

    /// (duplicated lines, their characters).
    fn line_dups(&mut self) -> (usize, usize) {
        if let Some(d) = self.line_dups {
            return d;
        }
        let d = find_duplicates(self.lines().iter().copied());
        *self.line_dups.insert(d)
    }

    /// (duplicated paragraphs, their characters, paragraphs).
    fn para_dups(&mut self) -> (usize, usize, usize) {
        let text = self.text;
        *self.para_dups.get_or_insert_with(|| {
            let paras: Vec<&str> = text
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            let (d, dc) = find_duplicates(paras.iter().copied());
            (d, dc, paras.len())
        })
    }

    /// Per-word hashes and lengths for the word n-gram rules.
    fn word_stats(&mut self) -> &WordStats {
        let words = self.words();
        self.word_stats.get_or_insert_with(|| WordStats::new(words))
    }
}
