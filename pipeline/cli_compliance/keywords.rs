//! The keyword library: risk categories with word lists, matched with Aho-Corasick.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LibraryFile {
    /// Free text: where the lists come from, their licence.
    #[serde(default)]
    pub(super) description: Option<String>,
    pub(super) categories: Vec<LibraryCategory>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LibraryCategory {
    /// Short id, e.g. `A.1-porn`.
    pub(super) id: String,
    /// Human name.
    #[serde(default)]
    pub(super) name: Option<String>,
    /// The risk class of TC260-003 Appendix A it belongs to.
    #[serde(default)]
    pub(super) risk: Option<String>,
    /// Word-list files, one term per line (`#` comments), relative to the YAML file.
    #[serde(default)]
    pub(super) files: Vec<String>,
    /// Inline terms.
    #[serde(default)]
    pub(super) words: Vec<String>,
}

/// Risk categories with their terms, matched as substrings (ASCII case-insensitive).
pub struct KeywordLibrary {
    pub(super) path: String,
    pub(super) description: Option<String>,
    /// (id, name, risk, number of terms)
    pub(super) categories: Vec<(String, String, String, usize)>,
    pub(super) matcher: AhoCorasick,
    /// Pattern index -> category index.
    pub(super) pattern_cat: Vec<usize>,
}

impl KeywordLibrary {
    /// Loads a library YAML; every problem is reported at once.
    pub fn load(path: &Path) -> Result<KeywordLibrary> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io_doing("cannot read keyword library", path, e))?;
        let file: LibraryFile = serde_norway::from_str(&text)
            .map_err(|e| Error::Config(vec![format!("{}: {e}", path.display())]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut pattern_cat = Vec::new();
        let mut categories = Vec::new();
        let mut seen = HashSet::new();
        for (ci, c) in file.categories.iter().enumerate() {
            if !seen.insert(c.id.clone()) {
                problems.push(format!("category `{}` is listed twice", c.id));
            }
            let mut terms: Vec<String> = c.words.iter().map(|w| w.trim().to_string()).collect();
            for f in &c.files {
                let p = base.join(f);
                match std::fs::read_to_string(&p) {
                    Ok(t) => terms.extend(
                        t.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .map(str::to_string),
                    ),
                    Err(e) => problems.push(format!("category `{}`: {}: {e}", c.id, p.display())),
                }
            }
            terms.retain(|t| !t.is_empty());
            terms.sort();
            terms.dedup();
            if terms.is_empty() {
                problems.push(format!("category `{}` has no terms", c.id));
            }
            categories.push((
                c.id.clone(),
                c.name.clone().unwrap_or_default(),
                c.risk.clone().unwrap_or_default(),
                terms.len(),
            ));
            for t in terms {
                patterns.push(t);
                pattern_cat.push(ci);
            }
        }
        file_problems(path, problems)?;
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&patterns)
            .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
        Ok(KeywordLibrary {
            path: path.display().to_string(),
            description: file.description,
            categories,
            matcher,
            pattern_cat,
        })
    }

    /// Hits per category id (only categories with hits), in library order.
    pub fn hits(&self, text: &str) -> Vec<(String, u64)> {
        let mut n = vec![0u64; self.categories.len()];
        for m in self.matcher.find_iter(text) {
            n[self.pattern_cat[m.pattern().as_usize()]] += 1;
        }
        n.iter()
            .enumerate()
            .filter(|(_, &k)| k > 0)
            .map(|(i, &k)| (self.categories[i].0.clone(), k))
            .collect()
    }
}
