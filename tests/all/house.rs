//! The invariants of ARCHITECTURE.md that the source tree itself can show, checked by reading
//! it: no import cycle among a crate's modules, nothing but the capabilities and the sandbox
//! gives a guest anything, nothing but the call pipeline enters a tool guest, and no source
//! file is over 600 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose module graph must have no cycle: (directory, crate root file).
const ACYCLIC_CRATES: &[(&str, &str)] = &[
    ("host/src", "lib.rs"),
    ("host/src", "main.rs"),
    ("plugin/backlog-core/src", "lib.rs"),
    ("plugin/backlog-store/src", "lib.rs"),
    ("plugin/scheduler-core/src", "lib.rs"),
    ("plugin/backlog-tool/src", "lib.rs"),
    ("plugin/scheduler/src", "lib.rs"),
];

/// Longest non-test source file, in lines.
const MAX_LINES: usize = 600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The text of `path` without comments, string literals and `#[cfg(test)]` items.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    strip_test_items(&strip_comments_and_strings(&text))
}

fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'#') | Some(b'"'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // A raw string: r"…", r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|c| **c == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\')) => {
                // A char literal ('x', '\n', '\''); lifetimes ('a) have no closing quote.
                let mut j = i + 1;
                if b[j] == b'\\' {
                    j += 2;
                }
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            }
            _ => {
                let c = text[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// Removes every item marked `#[cfg(test)]` (a `mod tests { … }`, a `mod tests;`, a test
/// helper function).
fn strip_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item ends at its `;` or at the `}` matching its first `{`.
        let semi = after.find(';');
        let brace = after.find('{');
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (_, Some(b)) => {
                let mut depth = 0;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(s), None) => s + 1,
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// One crate's modules: module path (`["http", "routes"]`) → file, and each file's code.
struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
    code: BTreeMap<Vec<String>, String>,
}

fn ident_at(s: &str) -> Option<(&str, &str)> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

/// The `mod NAME;` declarations of a file (inline `mod NAME { … }` blocks stay part of it).
fn declared_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if at > 0
            && (code.as_bytes()[at - 1].is_ascii_alphanumeric() || code.as_bytes()[at - 1] == b'_')
        {
            continue;
        }
        if let Some((name, rest)) = ident_at(&code[at + 4..])
            && rest.trim_start().starts_with(';')
        {
            names.push(name.to_owned());
        }
    }
    names
}

fn load_crate(dir: &Path, root: &str) -> Crate {
    let mut krate = Crate {
        files: BTreeMap::new(),
        code: BTreeMap::new(),
    };
    let mut todo = vec![(Vec::<String>::new(), dir.join(root))];
    while let Some((path, file)) = todo.pop() {
        let text = code(&file);
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let children_dir = if path.is_empty() || name == "mod.rs" {
            file.parent().unwrap().to_owned()
        } else {
            file.with_extension("")
        };
        for child in declared_modules(&text) {
            let flat = children_dir.join(format!("{child}.rs"));
            let nested = children_dir.join(&child).join("mod.rs");
            let child_file = if flat.exists() { flat } else { nested };
            assert!(
                child_file.exists(),
                "{}: mod {child}: no file",
                file.display()
            );
            let mut child_path = path.clone();
            child_path.push(child);
            todo.push((child_path, child_file));
        }
        krate.code.insert(path.clone(), text);
        krate.files.insert(path, file);
    }
    krate
}

/// One path a file names: where, the segments as written, and for a `pub use` the name it
/// re-exports the path under.
struct Named {
    at: usize,
    path: Vec<String>,
    reexport_as: Option<String>,
}

/// Every path a file names through `use` (trees expanded) or inline, as written.
fn named_paths(code: &str) -> Vec<Named> {
    let mut paths = Vec::new();
    // `use` trees.
    let mut from = 0;
    while let Some(at) = find_keyword(&code[from..], "use ") {
        let at = from + at;
        let after = &code[at + 4..];
        let end = after.find(';').unwrap_or(after.len());
        let before = code[..at].rsplit([';', '{', '}']).next().unwrap_or("");
        let public = before
            .split_whitespace()
            .filter(|w| !w.starts_with("#["))
            .any(|w| w.starts_with("pub"));
        let mut leaves = Vec::new();
        expand_tree(after[..end].trim(), &mut Vec::new(), &mut leaves);
        for (path, alias) in leaves {
            paths.push(Named {
                at,
                path,
                reexport_as: public.then_some(alias),
            });
        }
        from = at + 4 + end;
    }
    // Inline paths: `a::b::c` anywhere.
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts = (b[i].is_ascii_alphabetic() || b[i] == b'_')
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        while let Some((seg, tail)) = ident_at(&code[j..]) {
            segs.push(seg.to_owned());
            j = code.len() - tail.len();
            if tail.starts_with("::")
                && tail[2..].starts_with(|c: char| c.is_alphabetic() || c == '_')
            {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            paths.push(Named {
                at: i,
                path: segs,
                reexport_as: None,
            });
        }
        i = j.max(i + 1);
    }
    paths
}

/// The inline modules of a file (`mod name { … }`): their byte range and name.
fn inline_modules(code: &str) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = find_keyword(&code[from..], "mod ") {
        let at = from + at;
        from = at + 4;
        let Some((name, rest)) = ident_at(&code[at + 4..]) else {
            continue;
        };
        if !rest.trim_start().starts_with('{') {
            continue;
        }
        let open = code.len() - rest.len() + rest.find('{').unwrap();
        let mut depth = 0;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        found.push((open, open + i, name.to_owned()));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    found
}

fn find_keyword(s: &str, kw: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = s[from..].find(kw) {
        let at = from + at;
        let b = s.as_bytes();
        if at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            return Some(at);
        }
        from = at + kw.len();
    }
    None
}

/// `a::{b, c::{d as e, self}}` → (`a::b`, `b`), (`a::c::d`, `e`), (`a::c`, `c`).
fn expand_tree(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let tree = tree.trim().trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        let n = prefix.len();
        prefix.extend(head);
        for part in parts.into_iter().filter(|p| !p.trim().is_empty()) {
            expand_tree(part, prefix, out);
        }
        prefix.truncate(n);
    } else {
        let mut words = tree.split(" as ");
        let path = words.next().unwrap_or(tree);
        let alias = words.next().map(str::trim);
        let mut full = prefix.clone();
        full.extend(
            path.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "*")
                .map(str::to_owned),
        );
        if full.last().map(String::as_str) == Some("self") {
            full.pop();
        }
        if let Some(last) = full.last().cloned() {
            out.push((full, alias.unwrap_or(&last).to_owned()));
        }
    }
}

impl Crate {
    /// The module a path written in module `from` names, following `pub use` re-exports to
    /// where the item is defined (`None`: another crate, or `from` itself).
    fn resolve(&self, from: &[String], path: &[String]) -> Option<Vec<String>> {
        self.resolve_depth(from, path, 0)
    }

    fn resolve_depth(&self, from: &[String], path: &[String], depth: usize) -> Option<Vec<String>> {
        let abs: Vec<String> = match path[0].as_str() {
            "crate" => path[1..].to_vec(),
            "super" => {
                let mut p = from.to_vec();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    p.pop();
                    rest = &rest[1..];
                }
                p.extend(rest.iter().cloned());
                p
            }
            "self" => from.iter().chain(&path[1..]).cloned().collect(),
            first => {
                // A child module of `from`, named bare.
                let mut child = from.to_vec();
                child.push(first.to_owned());
                if !self.files.contains_key(&child) {
                    return None;
                }
                from.iter().chain(path).cloned().collect()
            }
        };
        let module = (0..=abs.len())
            .rev()
            .map(|n| abs[..n].to_vec())
            .find(|p| self.files.contains_key(p))?;
        let rest = &abs[module.len()..];
        if depth < 8
            && let Some(item) = rest.first()
            && let Some(target) = self.reexports(&module).get(item)
        {
            let mut target = target.clone();
            target.extend(rest[1..].iter().cloned());
            if let Some(defined) = self.resolve_depth(&module, &target, depth + 1) {
                return Some(defined);
            }
        }
        Some(module)
    }

    /// What a module re-exports: name → the path it re-exports.
    fn reexports(&self, module: &[String]) -> BTreeMap<String, Vec<String>> {
        named_paths(&self.code[module])
            .into_iter()
            .filter_map(|n| Some((n.reexport_as?, n.path)))
            .collect()
    }

    /// Module → the modules it names (through re-exports, to where an item is defined).
    fn graph(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (module, code) in &self.code {
            let inline = inline_modules(code);
            let edges = graph.entry(module.clone()).or_default();
            for named in named_paths(code) {
                // Inside `mod x { … }`, paths are relative to `module::x`.
                let mut from = module.clone();
                from.extend(
                    inline
                        .iter()
                        .filter(|(start, end, _)| *start < named.at && named.at < *end)
                        .map(|(_, _, name)| name.clone()),
                );
                if let Some(target) = self.resolve(&from, &named.path)
                    && &target != module
                {
                    edges.insert(target);
                }
            }
        }
        graph
    }

    fn name(&self, module: &[String]) -> String {
        self.files[module].display().to_string()
    }
}

/// A module path (`["http", "routes"]`).
type Module = Vec<String>;

/// The cycles of a graph: one per strongly connected component of more than one module,
/// written as a path that closes on itself, with all the component's modules.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<(Vec<Module>, Vec<Module>)> {
    // Tarjan's algorithm.
    struct State<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        sccs: Vec<Vec<&'a Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                s.sccs.push(scc);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sccs: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    // One concrete cycle per component: a shortest way back to its first module.
    s.sccs
        .into_iter()
        .map(|scc| {
            let members: BTreeSet<&Vec<String>> = scc.iter().copied().collect();
            let start = *members.iter().next().unwrap();
            let mut prev: BTreeMap<&Vec<String>, &Vec<String>> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut end = None;
            'bfs: while let Some(v) = queue.pop_front() {
                for w in graph.get(v).into_iter().flatten() {
                    if !members.contains(w) {
                        continue;
                    }
                    if w == start {
                        end = Some(v);
                        break 'bfs;
                    }
                    if !prev.contains_key(w) {
                        prev.insert(w, v);
                        queue.push_back(w);
                    }
                }
            }
            let mut path = vec![start.clone()];
            let mut at = end.unwrap_or(start);
            let mut back = vec![];
            while at != start {
                back.push(at.clone());
                at = prev[at];
            }
            path.extend(back.into_iter().rev());
            path.push(start.clone());
            (path, members.into_iter().cloned().collect())
        })
        .collect()
}

/// Each cycle of a crate as `a.rs -> b.rs -> a.rs`.
fn crate_cycles(dir: &str, root: &str) -> Vec<String> {
    let krate = load_crate(&workspace().join(dir), root);
    let prefix = format!("{}/", workspace().display());
    let name = |m: &Module| krate.name(m).replace(&prefix, "");
    cycles(&krate.graph())
        .iter()
        .map(|(cycle, knot)| {
            format!(
                "{} (the knot: {})",
                cycle.iter().map(name).collect::<Vec<_>>().join(" -> "),
                knot.iter().map(name).collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

/// No import cycle among the modules of a crate: every cycle is named (`a.rs -> b.rs ->
/// a.rs`). Asserted for every crate of [`ACYCLIC_CRATES`].
#[test]
fn no_import_cycles_among_modules() {
    let mut failures = Vec::new();
    for (dir, root) in ACYCLIC_CRATES {
        for cycle in crate_cycles(dir, root) {
            failures.push(format!("{dir} ({root}): {cycle}"));
        }
    }
    assert!(
        failures.is_empty(),
        "import cycles:\n{}",
        failures.join("\n")
    );
}

/// The checker finds a cycle through `super::` and a bare child path, follows re-exports to
/// where an item is defined, and sees no cycle where the edges only go one way.
#[test]
fn the_cycle_check_sees_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    // `c` names `A` through the crate root, which re-exports `c::C`: not a cycle (the
    // re-export is followed to `a`); `mod x` inside `c` names `c`'s own item.
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub use a::A;\npub use c::C;\n",
    );
    write(
        "a/mod.rs",
        "mod inner;\npub struct A;\npub fn f() { inner::g() }\n",
    );
    write(
        "a/inner.rs",
        "use super::A; // comment: crate::c\npub fn g() {}\n",
    );
    write(
        "b.rs",
        "use crate::A;\n#[cfg(test)]\nmod tests { use crate::c::C; }\n",
    );
    write(
        "c.rs",
        "pub struct C;\nfn h(_: crate::A) -> crate::b::B { todo!() }\nmod x { pub use super::C; }\n",
    );
    let krate = load_crate(dir.path(), "lib.rs");
    let found = cycles(&krate.graph());
    assert_eq!(found.len(), 1, "{found:?}");
    let (a, inner) = (
        vec!["a".to_owned()],
        vec!["a".to_owned(), "inner".to_owned()],
    );
    assert_eq!(found[0].0, vec![a.clone(), inner.clone(), a.clone()]);
    assert_eq!(found[0].1, vec![a, inner]);
}

/// Non-test Rust files of the host, outside `caps/` and `runtime/sandbox.rs`.
fn host_files_outside(exempt: &[&str]) -> Vec<(String, String)> {
    let root = workspace().join("host/src");
    let mut out = Vec::new();
    for krate in [load_crate(&root, "lib.rs"), load_crate(&root, "main.rs")] {
        for (module, file) in &krate.files {
            let rel = file
                .strip_prefix(workspace())
                .unwrap()
                .display()
                .to_string();
            if !exempt.iter().any(|e| rel.starts_with(e)) {
                out.push((rel, krate.code[module].clone()));
            }
        }
    }
    out
}

/// No module outside `host/src/caps/` and `host/src/runtime/sandbox.rs` gives a guest
/// anything: no WASI context, no preopened directory, no linked interface.
#[test]
fn only_caps_and_the_sandbox_give_guests_anything() {
    let mut found = Vec::new();
    for (file, code) in host_files_outside(&["host/src/caps/", "host/src/runtime/sandbox.rs"]) {
        for needle in [
            "WasiCtxBuilder",
            "preopened_dir",
            "add_to_linker",
            "Linker::new",
        ] {
            if code.contains(needle)
                && !(needle == "Linker::new" && file == "host/src/runtime/engine.rs")
            {
                found.push(format!("{file}: {needle}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "guests given something outside caps/ and the sandbox:\n{}",
        found.join("\n")
    );
}

/// No entry point reaches a tool guest except through the call pipeline: the guest entry
/// (`Plugin::enter`, the component's `call` export) is called only in `host/src/call.rs`.
#[test]
fn only_the_pipeline_enters_a_tool_guest() {
    let plugin = code(&workspace().join("host/src/runtime/plugin.rs"));
    assert!(
        plugin.contains("pub(crate) fn enter("),
        "Plugin::enter must stay private to the crate"
    );
    let mut found = Vec::new();
    for (file, code) in host_files_outside(&[]) {
        let entries = [".enter(", "call_call("];
        for needle in entries {
            let allowed = match needle {
                ".enter(" => file == "host/src/call.rs",
                _ => file == "host/src/runtime/plugin.rs",
            };
            if code.contains(needle) && !allowed {
                found.push(format!("{file}: {needle}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "guest entered outside call.rs:\n{}",
        found.join("\n")
    );
    let call = code(&workspace().join("host/src/call.rs"));
    assert!(call.contains(".enter("), "call.rs no longer enters guests");
}

/// No non-test source file of the host or the plugins is over [`MAX_LINES`] lines.
#[test]
fn no_source_file_is_over_600_lines() {
    let root = workspace();
    let mut dirs = vec![root.join("host/src")];
    for entry in std::fs::read_dir(root.join("plugin")).unwrap() {
        dirs.push(entry.unwrap().path().join("src"));
    }
    let mut over = Vec::new();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(&root).unwrap().display().to_string();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs")
                || path.file_name().is_some_and(|n| n == "tests.rs")
            {
                continue;
            }
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            if lines > MAX_LINES {
                over.push(format!("{rel}: {lines} lines"));
            }
        }
    }
    over.sort();
    assert!(
        over.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        over.join("\n")
    );
}
