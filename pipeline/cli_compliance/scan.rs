//! Pass 1 over the output: per-source totals and the seeded sample draw.

use super::*;

#[derive(Default)]
pub(super) struct SourceAcc {
    /// Distinct documents (hash of the base id): copies count once.
    pub(super) docs: HashSet<u64>,
    /// Documents and segments as they occur in the output (copies included).
    pub(super) occurrences: u64,
    pub(super) tokens: u64,
    pub(super) bytes: u64,
    pub(super) licenses: BTreeMap<String, u64>,
    pub(super) langs: BTreeMap<String, u64>,
    /// Distinct documents with a hit, per keyword category.
    pub(super) keyword_docs: BTreeMap<String, HashSet<u64>>,
    /// Content bytes per domain (documents with a url).
    pub(super) domains: BTreeMap<String, u64>,
    /// The `n` smallest (key, base id): the sample.
    pub(super) heap: BinaryHeap<(u64, String)>,
}

/// Per ingest node: distinct documents, tokens, bytes (a source name may span nodes).
#[derive(Default)]
pub(super) struct OriginAcc {
    pub(super) docs: HashSet<u64>,
    pub(super) tokens: u64,
    pub(super) bytes: u64,
}

pub(super) struct Scan<'a> {
    pub(super) n: usize,
    pub(super) seed: u64,
    pub(super) lib: Option<&'a KeywordLibrary>,
    pub(super) sources: BTreeMap<String, SourceAcc>,
    /// Input file basename -> ingest node, to attribute documents to nodes by their id.
    pub(super) file_node: HashMap<String, String>,
    pub(super) origins: BTreeMap<String, OriginAcc>,
}

impl<'a> Scan<'a> {
    pub(super) fn new(
        n: usize,
        seed: u64,
        lib: Option<&'a KeywordLibrary>,
        view: &RunView,
    ) -> Self {
        let mut file_node = HashMap::new();
        for inp in view.manifest["inputs"].as_array().into_iter().flatten() {
            if let (Some(node), Some(path)) = (inp["node"].as_str(), inp["path"].as_str()) {
                let name = path.rsplit('/').next().unwrap_or(path);
                file_node.insert(name.to_string(), node.to_string());
            }
        }
        Scan {
            n,
            seed,
            lib,
            sources: BTreeMap::new(),
            file_node,
            origins: BTreeMap::new(),
        }
    }

    /// The ingest node a document id comes from: ids are `<source>:<file>:<line|row>` or
    /// `<source>:<file>@<offset>` (docs/concepts.md#ids).
    pub(super) fn origin(&self, id: &str) -> Option<&String> {
        let rest = id.split_once(':')?.1;
        let file = rest.rsplit_once('@').map(|(f, _)| f).unwrap_or(rest);
        let file = file.rsplit_once(':').map(|(f, _)| f).unwrap_or(file);
        self.file_node.get(file).or_else(|| {
            self.file_node
                .get(rest.split(['@', ':']).next().unwrap_or(""))
        })
    }

    pub(super) fn add(&mut self, u: Unit) {
        let acc = self.sources.entry(u.source.clone()).or_default();
        let base = base_id(&u.id);
        let h = xxh3_64(base.as_bytes());
        let bytes = u.text.as_ref().map(|t| t.len() as u64).unwrap_or(0);
        acc.occurrences += 1;
        acc.tokens += u.tokens;
        acc.bytes += bytes;
        let lic = u.license.clone().unwrap_or_else(|| "unknown".into());
        *acc.licenses.entry(lic).or_default() += if u.tokens > 0 { u.tokens } else { bytes };
        if let Some(host) = u.url.as_deref().and_then(host_of) {
            *acc.domains.entry(host).or_default() += bytes;
        }
        if let (Some(lib), Some(t)) = (self.lib, u.text.as_deref()) {
            for (cat, _) in lib.hits(t) {
                acc.keyword_docs.entry(cat).or_default().insert(h);
            }
        }
        if let Some(node) = self.origin(base).cloned() {
            let o = self.origins.entry(node).or_default();
            o.docs.insert(h);
            o.tokens += u.tokens;
            o.bytes += bytes;
        }
        let acc = self.sources.entry(u.source.clone()).or_default();
        if !acc.docs.insert(h) {
            return; // a copy, or a further segment of a document already counted
        }
        if let Some(l) = &u.lang {
            *acc.langs.entry(l.clone()).or_default() += 1;
        }
        if self.n == 0 {
            return;
        }
        let key = xxh3_64_with_seed(base.as_bytes(), self.seed);
        if acc.heap.len() < self.n {
            acc.heap.push((key, base.to_string()));
        } else if acc.heap.peek().is_some_and(|(top, _)| key < *top) {
            acc.heap.pop();
            acc.heap.push((key, base.to_string()));
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct SampleRow {
    pub(super) source: String,
    pub(super) key: u64,
    pub(super) doc_id: String,
    pub(super) trace: Vec<String>,
    pub(super) url: String,
    pub(super) license: String,
    pub(super) lang: String,
    pub(super) text: String,
    pub(super) hits: String,
}

#[derive(Debug, Default)]
pub(super) struct CrawlInput {
    pub(super) node: String,
    pub(super) source: String,
    pub(super) path: String,
    pub(super) records: u64,
    pub(super) bytes: u64,
    pub(super) bad_records: u64,
    pub(super) first_date: Option<String>,
    pub(super) last_date: Option<String>,
    pub(super) warcinfo: BTreeMap<String, String>,
    pub(super) domains: BTreeMap<String, u64>,
    pub(super) error: Option<String>,
}
