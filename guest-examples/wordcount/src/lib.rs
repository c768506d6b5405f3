//! Map-reduce word count over a text shipped with the example: map tasks
//! count the words of one chunk of lines each, reduce tasks merge counts
//! pairwise in a tree (their arguments are the refs of earlier tasks, which
//! Prism resolves before they run), and the driver checks the result against
//! a direct count.

use std::collections::BTreeMap;

/// The text, compiled into the module.
const TEXT: &str = include_str!("text.txt");

type Counts = BTreeMap<String, u64>;

fn count(text: &str) -> Counts {
    let mut counts = Counts::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    counts
}

/// Map: counts the words of one chunk.
#[prism::task]
fn count_words(chunk: String) -> Counts {
    count(&chunk)
}

/// Reduce: merges two partial counts.
#[prism::task]
fn merge(mut a: Counts, b: Counts) -> Counts {
    for (word, n) in b {
        *a.entry(word).or_default() += n;
    }
    a
}

/// What the driver returns.
#[derive(serde::Serialize)]
struct Summary {
    chunks: usize,
    total_words: u64,
    distinct_words: usize,
    top: Vec<(String, u64)>,
    matches_direct_count: bool,
}

/// Splits the text into chunks of `lines_per_chunk` lines (default 4).
#[prism::main]
fn main(lines_per_chunk: Option<usize>) -> prism::Result<Summary> {
    let lines: Vec<&str> = TEXT.lines().collect();
    let chunks: Vec<String> = lines
        .chunks(lines_per_chunk.unwrap_or(4).max(1))
        .map(|c| c.join("\n"))
        .collect();
    let mut level: Vec<prism::ObjectRef<Counts>> = chunks
        .iter()
        .map(|c| count_words::remote(c.clone()))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => merge::remote(a, b),
                [a] => *a,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    let counts = match level.first() {
        Some(r) => prism::get(r)?,
        None => Counts::new(),
    };
    let mut top: Vec<(String, u64)> = counts.iter().map(|(w, n)| (w.clone(), *n)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    Ok(Summary {
        chunks: chunks.len(),
        total_words: counts.values().sum(),
        distinct_words: counts.len(),
        top,
        matches_direct_count: counts == count(TEXT),
    })
}
