//! The folders' arrows, read from the code: every `use crate::…`, `super::…` and
//! inline `crate::a::b::f` path of every file under `src/` (test modules left
//! out: a test may reach anywhere), checked against ARCHITECTURE.md's folder
//! table ("The folders": its `depends on` column is read here), so the map
//! cannot go stale, and against the rules that table serves:
//!
//! - no two folders point at each other, and no files form a circle;
//! - `config/` holds declarations only: it names none of stages, lake, run,
//!   report, commands;
//! - the stages do not know the lake, the runs or the commands;
//! - only `run/` and `commands/` (with `error.rs`, `lib.rs`, `main.rs`) name the
//!   crate's error: the others have errors of their own.
//!
//! A folder's `mod.rs` and its own files are one module: the files use the
//! parent's shared types through `super::` while the parent calls into them, as
//! Rust's privacy (a child sees its parent's private items) intends; so edges
//! between a `mod.rs` and its direct children do not count toward a circle.
//! `mod child;` itself is a declaration, never an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One reference from a file to another file of the crate.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    line: usize,
    /// The `use` statement or inline path as written.
    text: String,
}

/// A file of `src/` by its path below `src/` (`run/pipeline.rs`).
struct File {
    path: String,
    text: String,
}

/// Every `.rs` file below `dir`, paths relative to `root`, sorted.
fn files_below(root: &Path, dir: &Path, out: &mut Vec<File>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_below(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push(File {
                path: rel,
                text: std::fs::read_to_string(&p).unwrap(),
            });
        }
    }
}

/// The module path a file defines (`run/pipeline.rs` → `[run, pipeline]`, `run/mod.rs` → `[run]`).
fn module_of(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The folder (`run/`) or root file (`error.rs`) a file belongs to.
fn node_of(path: &str) -> String {
    match path.split_once('/') {
        Some((folder, _)) => format!("{folder}/"),
        None => path.to_string(),
    }
}

/// `text` with comments, string literals and character literals turned to
/// spaces (newlines kept, so offsets keep their line).
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let clear = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |i: usize| i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            clear(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (0, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            clear(&mut out, i, j);
            i = j;
        } else if !ident(i) && (b[i] == b'r' || b[i..].starts_with(b"br")) && {
            let s = if b[i] == b'r' { i + 1 } else { i + 2 };
            let hashes = b[s..].iter().take_while(|&&c| c == b'#').count();
            b.get(s + hashes) == Some(&b'"')
        } {
            let s = if b[i] == b'r' { i + 1 } else { i + 2 };
            let hashes = b[s..].iter().take_while(|&&c| c == b'#').count();
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let body = s + hashes + 1;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |n| body + n + close.len());
            clear(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            clear(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // An escape: the escaped character may itself be a quote (`'\''`).
            let end = b[(i + 3).min(b.len())..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(b.len(), |n| i + 4 + n);
            clear(&mut out, i, end);
            i = end;
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            clear(&mut out, i, i + 3);
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1).is_some_and(|c| *c >= 0x80) {
            // A character literal of a multi-byte character.
            let end = b[i + 1..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(b.len(), |n| i + 2 + n);
            clear(&mut out, i, end);
            i = end;
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` (already blanked) with the items under `#[cfg(test)]` or
/// `#[cfg(all(test, …))]` turned to spaces: a braced item to its closing brace,
/// any other to its `;`.
fn without_tests(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut from = 0;
    while let Some(at) = ["#[cfg(test)]", "#[cfg(all(test"]
        .iter()
        .filter_map(|m| text[from..].find(m).map(|n| from + n))
        .min()
    {
        let brace = text[at..].find('{').map(|n| at + n);
        let semi = text[at..].find(';').map(|n| at + n);
        let end = match (brace, semi) {
            (Some(br), s) if s.is_none_or(|s| br < s) => {
                let mut depth = 0usize;
                let mut j = br;
                while j < b.len() {
                    match b[j] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                j + 1
            }
            (_, Some(s)) => s + 1,
            _ => b.len(),
        };
        for c in &mut out[at..end.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end.min(b.len());
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The paths one `use` tree names, each with the name it goes by:
/// `a::{b, c::{self, e as f}}` → `a::b` (b), `a::c::self` (c), `a::c::e` (f).
fn use_paths(tree: &str) -> Vec<(Vec<String>, String)> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
    fn walk(prefix: &[String], s: &str, out: &mut Vec<(Vec<String>, String)>) {
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if let Some(open) = part.find('{') {
                let head = part[..open].trim_end_matches("::");
                let inner = &part[open + 1..part.rfind('}').unwrap_or(part.len())];
                let mut p = prefix.to_vec();
                p.extend(head.split("::").filter(|x| !x.is_empty()).map(String::from));
                walk(&p, inner, out);
            } else {
                let (part, alias) = match part.split_once(" as ") {
                    Some((p, a)) => (p.trim(), Some(a.trim())),
                    None => (part, None),
                };
                let mut p = prefix.to_vec();
                p.extend(
                    part.split("::")
                        .filter(|x| !x.is_empty() && *x != "*")
                        .map(String::from),
                );
                let named = p
                    .iter()
                    .rev()
                    .find(|s| *s != "self")
                    .cloned()
                    .unwrap_or_default();
                out.push((p, alias.map_or(named, String::from)));
            }
        }
    }
    let squeezed: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let squeezed = squeezed
        .replace(" ::", "::")
        .replace(":: ", "::")
        .replace("{ ", "{")
        .replace(" }", "}");
    let mut out = Vec::new();
    walk(&[], &squeezed, &mut out);
    out
}

/// What the crate's modules are, to resolve paths to files.
struct Crate {
    /// Module path → file.
    modules: BTreeMap<Vec<String>, String>,
    /// The crate root's re-exports (`pub(crate) use error::Error` in lib.rs,
    /// outside its inline modules): name → file.
    root_reexports: BTreeMap<String, String>,
}

impl Crate {
    /// The absolute module path a path names, seen from module `at` with the
    /// modules `aliases` imports; `None` outside the crate.
    fn absolute(
        &self,
        at: &[String],
        aliases: &BTreeMap<String, Vec<String>>,
        path: &[String],
    ) -> Option<Vec<String>> {
        let first = path.first()?;
        let (mut full, rest): (Vec<String>, &[String]) = match first.as_str() {
            "crate" | "coldpath" => (Vec::new(), &path[1..]),
            "self" => (at.to_vec(), &path[1..]),
            "super" => {
                let mut base = at.to_vec();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            name => {
                if let Some(module) = aliases.get(name) {
                    (module.clone(), &path[1..])
                } else {
                    // A child module named without `self::` (`use stream::PartitionStream` in lake/mod.rs).
                    let mut child = at.to_vec();
                    child.push(name.to_string());
                    if !self.modules.contains_key(&child) {
                        return None;
                    }
                    (at.to_vec(), path)
                }
            }
        };
        full.extend(rest.iter().filter(|s| *s != "self").cloned());
        Some(full)
    }

    /// The file that defines what `full` (an absolute path) names.
    fn file(&self, full: &[String]) -> Option<String> {
        if let Some(file) = full.first().and_then(|n| self.root_reexports.get(n)) {
            if !self.modules.contains_key(&full[..1]) {
                return Some(file.clone());
            }
        }
        (0..=full.len())
            .rev()
            .find_map(|n| self.modules.get(&full[..n]))
            .cloned()
    }

    fn resolve(&self, at: &[String], path: &[String]) -> Option<String> {
        self.file(&self.absolute(at, &BTreeMap::new(), path)?)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// Every reference from one file's non-test code to another file of the crate.
fn edges_of(krate: &Crate, path: &str, source: &str) -> Vec<Edge> {
    let at = if path == "main.rs" {
        Vec::new()
    } else {
        module_of(path)
    };
    let code = without_tests(&blank(source));
    let mut edges = Vec::new();
    let mut push = |to: Option<String>, offset: usize, text: &str| {
        if let Some(to) = to.filter(|t| t != path) {
            edges.push(Edge {
                from: path.to_string(),
                to,
                line: line_of(&code, offset),
                text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
    };
    let b = code.as_bytes();
    let word_start = |i: usize| {
        i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':')
    };
    let mut i = 0;
    let mut in_use: Vec<(usize, usize)> = Vec::new();
    // Modules a `use` names (`use crate::lake;`), by the name they go by here.
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // `use` statements.
    while let Some(n) = code[i..].find("use ") {
        let at_use = i + n;
        i = at_use + 4;
        if !word_start(at_use) {
            continue;
        }
        let Some(end) = code[at_use..].find(';').map(|e| at_use + e) else {
            break;
        };
        let tree = &code[at_use + 4..end];
        for (p, name) in use_paths(tree) {
            let Some(full) = krate.absolute(&at, &aliases, &p) else {
                continue;
            };
            if krate.modules.contains_key(&full) {
                aliases.insert(name, full.clone());
            }
            push(krate.file(&full), at_use, &code[at_use..=end]);
        }
        in_use.push((at_use, end));
        i = end;
    }
    // Inline paths: `crate::a::b::f(…)`, `super::x`, `child::f`.
    let mut j = 0;
    while j < b.len() {
        let c = b[j];
        if (c.is_ascii_alphabetic() || c == b'_') && word_start(j) {
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
                j += 1;
            }
            let token = &code[start..j];
            let inside_use = in_use.iter().any(|(s, e)| (*s..=*e).contains(&start));
            if token.contains("::") && !inside_use {
                let segments: Vec<String> = token
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                let file = krate
                    .absolute(&at, &aliases, &segments)
                    .and_then(|f| krate.file(&f));
                push(file, start, token.trim_end_matches(':'));
            }
        } else {
            j += 1;
        }
    }
    edges
}

/// The crate's files and every edge between them.
fn read_crate(src: &Path) -> (Vec<String>, Vec<Edge>) {
    let mut files = Vec::new();
    files_below(src, src, &mut files);
    // Modules the crate root compiles for tests only (this one) are tests.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    files.retain(|f| {
        !lib.contains(&format!(
            "#[cfg(test)]\nmod {};",
            f.path.trim_end_matches(".rs")
        ))
    });
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter(|f| f.path != "main.rs")
        .map(|f| (module_of(&f.path), f.path.clone()))
        .collect();
    let mut krate = Crate {
        modules,
        root_reexports: BTreeMap::new(),
    };
    if let Some(lib) = files.iter().find(|f| f.path == "lib.rs") {
        krate.root_reexports = root_reexports(&krate, &lib.text);
    }
    let mut edges: Vec<Edge> = files
        .iter()
        .flat_map(|f| edges_of(&krate, &f.path, &f.text))
        .collect();
    // One line per statement and file it names (`use a::{B, C}` names a's file once).
    edges.dedup_by(|a, b| (&a.from, &a.to, a.line, &a.text) == (&b.from, &b.to, b.line, &b.text));
    (files.into_iter().map(|f| f.path).collect(), edges)
}

/// The names lib.rs re-exports at the crate root (`pub use`, `pub(crate) use`;
/// not those of its inline modules), each with the file that defines it.
fn root_reexports(krate: &Crate, lib: &str) -> BTreeMap<String, String> {
    let code = without_tests(&blank(lib));
    let mut out = BTreeMap::new();
    let mut depth = 0i64;
    for stmt in code.split(';') {
        let at_root = depth == 0;
        depth += stmt.matches('{').count() as i64 - stmt.matches('}').count() as i64;
        let stmt = stmt.trim();
        let tree = stmt
            .strip_prefix("pub use ")
            .or_else(|| stmt.strip_prefix("pub(crate) use "));
        for (p, name) in tree.filter(|_| at_root).map(use_paths).unwrap_or_default() {
            if let Some(file) = krate.resolve(&[], &p) {
                out.insert(name, file);
            }
        }
    }
    out
}

/// ARCHITECTURE.md's folder table: each folder or root file and what it may depend on.
fn documented(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("The folders"))
        .expect("ARCHITECTURE.md has a section \"The folders\"");
    let names = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(|s| s.trim().to_string())
            .collect()
    };
    let mut table = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
        let (Some(first), Some(last)) = (cells.first(), cells.last()) else {
            continue;
        };
        let deps: BTreeSet<String> = names(last).into_iter().collect();
        for name in names(first) {
            assert!(
                table.insert(name.clone(), deps.clone()).is_none(),
                "ARCHITECTURE.md's folder table names `{name}` twice"
            );
        }
    }
    table
}

fn show(edges: &[&Edge]) -> String {
    edges
        .iter()
        .map(|e| format!("\n    {}:{}: {}", e.from, e.line, e.text))
        .collect()
}

/// The strongly connected components of more than one file.
fn circles(files: &[String], edges: &[&Edge]) -> Vec<Vec<String>> {
    let index: BTreeMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_str(), i))
        .collect();
    let mut next: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); files.len()];
    for e in edges {
        next[index[e.from.as_str()]].insert(index[e.to.as_str()]);
    }
    // Tarjan's algorithm, iterative.
    let n = files.len();
    let (mut order, mut low) = (vec![usize::MAX; n], vec![0; n]);
    let (mut on_stack, mut stack, mut found) = (vec![false; n], Vec::new(), Vec::new());
    let mut counter = 0;
    for root in 0..n {
        if order[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>)> = vec![(root, next[root].iter().copied().collect())];
        order[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((v, pending)) = work.last_mut() {
            let v = *v;
            if let Some(w) = pending.pop() {
                if order[w] == usize::MAX {
                    order[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, next[w].iter().copied().collect()));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
            } else {
                work.pop();
                if let Some((parent, _)) = work.last() {
                    low[*parent] = low[*parent].min(low[v]);
                }
                if low[v] == order[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(files[w].clone());
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        found.push(component);
                    }
                }
            }
        }
    }
    found
}

/// Whether `a` is a folder's `mod.rs` and `b` one of its own files, or the other way.
fn parent_and_child(a: &str, b: &str) -> bool {
    let is_child = |parent: &str, child: &str| {
        parent.ends_with("/mod.rs") && {
            let ma = module_of(parent);
            let mb = module_of(child);
            mb.len() == ma.len() + 1 && mb.starts_with(&ma)
        }
    };
    is_child(a, b) || is_child(b, a)
}

/// Which folder pairs break the rules ARCHITECTURE.md states (the table may not allow them).
const FORBIDDEN: [(&str, &[&str], &str); 2] = [
    (
        "config/",
        &["stages/", "lake/", "run/", "commands/", "report/"],
        "config holds declarations only",
    ),
    (
        "stages/",
        &["lake/", "run/", "commands/"],
        "the stages do not know the lake, the runs or the commands",
    ),
];

/// Who may name the crate's error (`crate::Error`, `crate::error::Error`).
const NAME_THE_ERROR: [&str; 5] = ["run/", "commands/", "error.rs", "lib.rs", "main.rs"];

/// Every failure the crate's arrows give against the table and the rules.
fn failures(
    files: &[String],
    edges: &[Edge],
    table: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let nodes: BTreeSet<String> = files.iter().map(|f| node_of(f)).collect();
    for n in &nodes {
        if !table.contains_key(n) {
            failures.push(format!(
                "ARCHITECTURE.md's folder table has no row for `{n}`"
            ));
        }
    }
    for (n, deps) in table {
        for d in deps.iter().chain(std::iter::once(n)) {
            if !nodes.contains(d) {
                failures.push(format!(
                    "ARCHITECTURE.md's folder table names `{d}`, which is not a folder or file of src/"
                ));
            }
        }
    }
    // Folder arrows, with the edges that make each.
    let mut arrows: BTreeMap<(String, String), Vec<&Edge>> = BTreeMap::new();
    for e in edges {
        let (a, b) = (node_of(&e.from), node_of(&e.to));
        if a != b {
            arrows.entry((a, b)).or_default().push(e);
        }
    }
    for ((a, b), why) in &arrows {
        if table.get(a).is_some_and(|deps| !deps.contains(b)) {
            failures.push(format!(
                "`{a}` depends on `{b}`, which ARCHITECTURE.md's folder table does not allow:{}",
                show(why)
            ));
        }
        if a < b {
            if let Some(back) = arrows.get(&(b.clone(), a.clone())) {
                failures.push(format!(
                    "`{a}` and `{b}` point at each other:{}{}",
                    show(why),
                    show(back)
                ));
            }
        }
        for (from, not, rule) in FORBIDDEN {
            if a == from && not.contains(&b.as_str()) {
                failures.push(format!("{rule}, but `{a}` names `{b}`:{}", show(why)));
            }
        }
        if b == "error.rs" && !NAME_THE_ERROR.contains(&a.as_str()) {
            failures.push(format!(
                "only {} name the crate's error, but `{a}` does:{}",
                NAME_THE_ERROR.join(", "),
                show(why)
            ));
        }
    }
    for (a, deps) in table {
        for b in deps {
            if !arrows.contains_key(&(a.clone(), b.clone())) {
                failures.push(format!(
                    "ARCHITECTURE.md's folder table says `{a}` depends on `{b}`, but no file of `{a}` names `{b}`"
                ));
            }
        }
    }
    let counted: Vec<&Edge> = edges
        .iter()
        .filter(|e| !parent_and_child(&e.from, &e.to))
        .collect();
    for circle in circles(files, &counted) {
        let inside: Vec<&Edge> = counted
            .iter()
            .copied()
            .filter(|e| circle.contains(&e.from) && circle.contains(&e.to))
            .collect();
        failures.push(format!(
            "files in a circle: {}:{}",
            circle.join(", "),
            show(&inside)
        ));
    }
    failures
}

#[test]
fn folders_point_one_way_as_architecture_md_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (files, edges) = read_crate(&root.join("src"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let table = documented(&doc);
    // The reader works: a few arrows every version of the crate has.
    for (from, to) in [
        ("run/pipeline.rs", "lake/mod.rs"),
        ("commands/run.rs", "run/pipeline.rs"),
    ] {
        assert!(
            edges.iter().any(|e| e.from == from && e.to == to),
            "the reader missed {from} → {to}; edges found: {}",
            edges.len()
        );
    }
    let failures = failures(&files, &edges, &table);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A crate of a few files, its edges by (from, to).
fn edges_in(files: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    let mut krate = Crate {
        modules: files
            .iter()
            .map(|(p, _)| (module_of(p), p.to_string()))
            .collect(),
        root_reexports: BTreeMap::new(),
    };
    if let Some((_, lib)) = files.iter().find(|(p, _)| *p == "lib.rs") {
        krate.root_reexports = root_reexports(&krate, lib);
    }
    files
        .iter()
        .flat_map(|(p, t)| edges_of(&krate, p, t))
        .map(|e| (e.from, e.to))
        .collect()
}

#[test]
fn the_reader_finds_grouped_inline_and_super_paths_and_skips_tests_and_text() {
    let edges = edges_in(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod error; pub(crate) use error::Error;\npub mod t { pub use crate::b::c::C; }"),
        // `crate::C` is not a root re-export (lib.rs's inline `t` has it): it names lib.rs.
        ("a/z.rs", "fn k() { crate::C::new(); }"),
        ("error.rs", ""),
        ("a/mod.rs", "pub mod x; pub mod y; pub mod z; use crate::{b::c, Error};\nfn h() { crate::b::d::g(); }"),
        ("a/x.rs", "use super::y::{self as why, Z};\nuse crate::b;\nfn f() { b::d::g(); }"),
        ("a/y.rs", "// use crate::b::c;\nconst S: &str = \"crate::b::c\";\nconst Q: char = '\"';\n#[cfg(test)]\nmod tests { use crate::b::c; }"),
        ("b/mod.rs", "pub mod c; pub mod d;"),
        ("b/c.rs", ""),
        ("b/d.rs", ""),
    ]);
    let expected: BTreeSet<(String, String)> = [
        ("a/mod.rs", "b/c.rs"),
        ("a/mod.rs", "b/d.rs"),
        ("a/mod.rs", "error.rs"),
        ("a/x.rs", "a/y.rs"),
        ("a/x.rs", "b/d.rs"),
        ("a/x.rs", "b/mod.rs"),
        ("a/z.rs", "lib.rs"),
        ("lib.rs", "error.rs"),
        ("lib.rs", "b/c.rs"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(edges, expected);
}

#[test]
fn a_forbidden_arrow_a_both_way_pair_and_a_circle_fail() {
    let files: Vec<String> = [
        "config/job.rs",
        "stages/expect.rs",
        "stages/dedup.rs",
        "stages/mod.rs",
        "lake/mod.rs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let edge = |from: &str, to: &str| Edge {
        from: from.into(),
        to: to.into(),
        line: 1,
        text: format!("use {to}"),
    };
    let edges = vec![
        edge("config/job.rs", "stages/expect.rs"),
        edge("stages/expect.rs", "config/job.rs"),
        edge("stages/expect.rs", "stages/dedup.rs"),
        edge("stages/dedup.rs", "stages/expect.rs"),
        edge("stages/dedup.rs", "stages/mod.rs"),
        edge("stages/mod.rs", "stages/dedup.rs"),
    ];
    let table = BTreeMap::from([
        (
            "config/".to_string(),
            BTreeSet::from(["stages/".to_string()]),
        ),
        (
            "stages/".to_string(),
            BTreeSet::from(["config/".to_string(), "lake/".to_string()]),
        ),
        ("lake/".to_string(), BTreeSet::new()),
    ]);
    let found = failures(&files, &edges, &table).join("\n");
    assert!(
        found.contains("config holds declarations only, but `config/` names `stages/`"),
        "{found}"
    );
    assert!(
        found.contains("`config/` and `stages/` point at each other"),
        "{found}"
    );
    assert!(
        found.contains("files in a circle: config/job.rs, stages/dedup.rs, stages/expect.rs:"),
        "{found}"
    );
    assert!(
        !found.contains("stages/mod.rs"),
        "a mod.rs and its file are one module: {found}"
    );
    assert!(
        found.contains("says `stages/` depends on `lake/`, but no file"),
        "{found}"
    );
}
