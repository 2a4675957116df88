//! A loaded fastText supervised model that returns the probability of one label, equal to
//! what the official fastText (C++ / Python bindings) returns for the same line.
//!
//! Loading and most of prediction go through the pure-Rust `fasttext` crate 0.8, which also
//! trains our models. That crate has a defect on **quantized** models trained with
//! hierarchical softmax (`-loss hs`, e.g. `lid.176.ftz`) or negative sampling (`-loss ns`):
//! its quantized prediction path normalises every loss with a softmax over the output rows.
//! For `hs` those rows are the *internal nodes* of the Huffman tree, not labels, so the answer
//! is garbage (Chinese comes out as Serbian); for `ns` C++ uses one sigmoid per label.
//!
//! The fix here, without forking the crate: the hidden vector is the same for every loss
//! (the average of the input rows of the line's words, n-grams and `</s>`), and the crate
//! exposes it for quantized models too (`get_sentence_vector_into`). The output matrix of such
//! a model is dense unless it was quantized with `-qout`. So for `hs` we rebuild the Huffman
//! tree from the label counts exactly as C++ `HierarchicalSoftmaxLoss::buildTree` does and
//! score a label as the sum of `log(p + 1e-5)` along its path (exact sigmoid, as C++ `dfs`);
//! for `ns` we apply C++'s 512-entry sigmoid table per label. Quantized `hs`/`ns` models whose
//! output matrix is also quantized (`-qout`) are refused at load: the crate keeps that matrix
//! private, and we would rather refuse than return numbers that differ from fastText.
//!
//! Every accepted path is pinned against reference probabilities from the official
//! bindings in `tests/golden/classifier_parity/` (and `lid.176.ftz` in the unit tests when
//! `samples/models/lid.176.ftz` is present).

use std::path::{Path, PathBuf};

use fasttext::args::LossName;
use fasttext::FastText;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How a model is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The crate's own prediction (dense models; quantized softmax / one-vs-all).
    Crate,
    /// Our quantized hierarchical-softmax path.
    QuantHs,
    /// Our quantized negative-sampling path.
    QuantNs,
}

/// One internal node of the label Huffman tree.
#[derive(Debug, Clone, Copy)]
struct HsNode {
    parent: i32,
    left: i32,
    right: i32,
    count: i64,
    binary: bool,
}

/// A loaded supervised model.
pub struct Model {
    ft: FastText,
    path: PathBuf,
    sha256: String,
    labels: Vec<String>,
    mode: Route,
    /// For `QuantHs`: per label, the (output row, go-right) steps from the root to the leaf.
    hs_paths: Vec<Vec<(usize, bool)>>,
    sigmoid_table: Vec<f32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("labels", &self.labels)
            .field("mode", &self.mode)
            .finish()
    }
}

/// `log(x + 1e-5)`, fastText's `std_log`.
fn std_log(x: f32) -> f32 {
    (x + 1e-5).ln()
}

/// C++ fastText's sigmoid lookup table (512 buckets over [-8, 8]).
fn build_sigmoid_table() -> Vec<f32> {
    (0..=512)
        .map(|i| {
            let x = (i * 2 * 8) as f32 / 512.0 - 8.0;
            (1.0f64 / (1.0f64 + f64::from((-x).exp()))) as f32
        })
        .collect()
}

fn table_sigmoid(table: &[f32], x: f32) -> f32 {
    if x < -8.0 {
        0.0
    } else if x > 8.0 {
        1.0
    } else {
        let i = ((x + 8.0) * 512.0 / 8.0 / 2.0) as usize;
        table[i.min(table.len() - 1)]
    }
}

/// The label Huffman tree, built exactly as C++ `HierarchicalSoftmaxLoss::buildTree`
/// (labels are sorted by decreasing count in the dictionary). Returns, per label, the path
/// from the root down: (output-matrix row of the internal node, whether the step goes right).
fn hs_paths(counts: &[i64]) -> Vec<Vec<(usize, bool)>> {
    let osz = counts.len();
    if osz == 0 {
        return Vec::new();
    }
    let n = 2 * osz - 1;
    let mut tree = vec![
        HsNode {
            parent: -1,
            left: -1,
            right: -1,
            count: 1_000_000_000_000_000,
            binary: false,
        };
        n
    ];
    for (t, &c) in tree.iter_mut().zip(counts) {
        t.count = c;
    }
    let mut leaf = osz as i64 - 1;
    let mut node = osz;
    for i in osz..n {
        let mut mini = [0usize; 2];
        for m in mini.iter_mut() {
            if leaf >= 0 && tree[leaf as usize].count < tree[node].count {
                *m = leaf as usize;
                leaf -= 1;
            } else {
                *m = node;
                node += 1;
            }
        }
        tree[i].left = mini[0] as i32;
        tree[i].right = mini[1] as i32;
        tree[i].count = tree[mini[0]].count + tree[mini[1]].count;
        tree[mini[0]].parent = i as i32;
        tree[mini[1]].parent = i as i32;
        tree[mini[1]].binary = true;
    }
    (0..osz)
        .map(|label| {
            let mut steps = Vec::new();
            let mut j = label;
            while tree[j].parent != -1 {
                let p = tree[j].parent as usize;
                steps.push((p - osz, tree[j].binary));
                j = p;
            }
            steps.reverse();
            steps
        })
        .collect()
}

/// sha256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl Model {
    /// Load a `.bin` or `.ftz` supervised model.
    pub fn load(path: &Path) -> Result<Model> {
        let sha256 = file_sha256(path)?;
        let ft = FastText::load_model(path).map_err(|e| {
            Error::msg(format!(
                "{}: cannot load fastText model: {e}",
                path.display()
            ))
        })?;
        Self::from_fasttext(ft, path.to_path_buf(), sha256)
    }

    /// Wrap an in-memory model (e.g. one just trained).
    pub fn from_fasttext(ft: FastText, path: PathBuf, sha256: String) -> Result<Model> {
        let (labels, counts) = ft.get_labels();
        if labels.is_empty() {
            return Err(Error::msg(format!(
                "{}: model has no labels (not a supervised classifier)",
                path.display()
            )));
        }
        let loss = ft.args().loss;
        let qout = ft.quant_output().is_some();
        let mode = match (ft.is_quant(), loss) {
            (true, LossName::HierarchicalSoftmax) => Route::QuantHs,
            (true, LossName::NegativeSampling) => Route::QuantNs,
            _ => Route::Crate,
        };
        if mode != Route::Crate && qout {
            return Err(Error::msg(format!(
                "{}: quantized model with loss {loss:?} and a quantized output matrix (-qout) is not supported: \
                 its predictions could not be made to match fastText; quantize without -qout",
                path.display()
            )));
        }
        let hs_paths = if mode == Route::QuantHs {
            hs_paths(&counts)
        } else {
            Vec::new()
        };
        Ok(Model {
            ft,
            path,
            sha256,
            labels,
            mode,
            hs_paths,
            sigmoid_table: build_sigmoid_table(),
        })
    }

    /// Labels in model order (e.g. `__label__hq`).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Path the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sha256 of the model file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Which prediction path the model uses (for the manifest and tests).
    pub fn mode(&self) -> Route {
        self.mode
    }

    /// The underlying crate model.
    pub fn fasttext(&self) -> &FastText {
        &self.ft
    }

    /// Index of a label, accepting `hq` or `__label__hq`.
    pub fn label_index(&self, label: &str) -> Option<usize> {
        let prefix = &self.ft.args().label;
        self.labels.iter().position(|l| {
            l == label || (l.starts_with(prefix.as_str()) && &l[prefix.len()..] == label)
        })
    }

    /// Probability of label `idx` for a preprocessed line, as fastText's `predict(line, k=-1)`
    /// reports it (that includes fastText's `+1e-5` from `log(p + 1e-5)`); 0 when fastText
    /// would not list the label. `None` when the line has no tokens at all.
    pub fn prob(&self, line: &str, idx: usize) -> Option<f32> {
        line.split_ascii_whitespace().next()?;
        match self.mode {
            Route::Crate => {
                let preds = self.ft.predict(line, self.labels.len(), 0.0);
                let label = &self.labels[idx];
                Some(
                    preds
                        .iter()
                        .find(|p| &p.label == label)
                        .map_or(0.0, |p| p.prob),
                )
            }
            Route::QuantHs => {
                let hidden = self.ft.get_sentence_vector(line);
                let out = self.ft.output_matrix();
                let floor = std_log(0.0);
                let mut score = 0.0f32;
                for &(row, right) in &self.hs_paths[idx] {
                    let dot: f32 = out
                        .row(row as i64)
                        .iter()
                        .zip(&hidden)
                        .map(|(a, b)| a * b)
                        .sum();
                    let f = 1.0f32 / (1.0 + (-dot).exp());
                    score += if right { std_log(f) } else { std_log(1.0 - f) };
                    // fastText's DFS prunes a branch once its score drops below log(threshold).
                    if score < floor {
                        return Some(0.0);
                    }
                }
                Some(score.exp())
            }
            Route::QuantNs => {
                let hidden = self.ft.get_sentence_vector(line);
                let out = self.ft.output_matrix();
                let dot: f32 = out
                    .row(idx as i64)
                    .iter()
                    .zip(&hidden)
                    .map(|(a, b)| a * b)
                    .sum();
                Some(std_log(table_sigmoid(&self.sigmoid_table, dot)).exp())
            }
        }
    }

    /// Probabilities of every label for a line, in model label order (`None` for an empty line).
    pub fn probs(&self, line: &str) -> Option<Vec<f32>> {
        (0..self.labels.len()).map(|i| self.prob(line, i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huffman_paths_are_prefix_free_and_complete() {
        let paths = hs_paths(&[50, 20, 20, 5, 1]);
        assert_eq!(paths.len(), 5);
        // the most frequent label has the shortest path
        assert!(paths[0].len() <= paths[4].len());
        for (i, a) in paths.iter().enumerate() {
            for (j, b) in paths.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "path {i} is a prefix of {j}");
                }
            }
        }
        // a single label has an empty path (probability 1)
        assert_eq!(hs_paths(&[3]), vec![Vec::<(usize, bool)>::new()]);
    }

    #[test]
    fn sigmoid_table_matches_cpp_construction() {
        let t = build_sigmoid_table();
        assert_eq!(t.len(), 513);
        assert!((table_sigmoid(&t, 0.0) - 0.5).abs() < 1e-6);
        assert_eq!(table_sigmoid(&t, 9.0), 1.0);
        assert_eq!(table_sigmoid(&t, -9.0), 0.0);
    }

    /// lid.176.ftz is a quantized hierarchical-softmax model: the crate's own path gets it
    /// wrong, ours must give the official fastText answers (references from
    /// `fasttext-predict 0.9.2.4`, 4 decimals, see /work/shared/data/model-fasttext-lid176).
    #[test]
    fn lid176_matches_official_fasttext() {
        let p = Path::new("samples/models/lid.176.ftz");
        if !p.is_file() {
            eprintln!("skipping: {} not present", p.display());
            return;
        }
        let m = Model::load(p).expect("load");
        assert_eq!(m.mode(), Route::QuantHs);
        let cases = [
            ("这是一个中文句子，用于测试语言识别。", "zh", 0.9987),
            ("This is an English sentence.", "en", 0.9264),
            ("これは日本語の文です。", "ja", 0.9999),
            ("這是一個繁體中文句子。", "zh", 0.9994),
            ("混合 mixed 中英文 text", "zh", 0.8651),
        ];
        for (text, label, want) in cases {
            let idx = m.label_index(label).expect("label");
            let got = m.prob(text, idx).expect("prob");
            assert!((got - want).abs() < 6e-5, "{text}: {got} vs {want}");
        }
    }
}
