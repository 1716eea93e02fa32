//! The source tree keeps its shape: no file over the size a reader takes in at once, and no
//! import loop between the files of a crate (a `crate::a::b` path names the file of the deepest
//! module it reaches). A parent module declaring or re-exporting its children is structure, not
//! a dependency, so edges from a module into its own subtree are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a hand-written source file may have.
const MAX_LINES: usize = 800;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// Every crate root whose module tree is checked: (name, directory of the root file, root file).
fn crate_roots() -> Vec<(String, PathBuf, PathBuf)> {
    let root = workspace_root();
    let mut roots = Vec::new();
    for (name, dir, file) in [
        ("berth-log", "log/src", "lib.rs"),
        ("berth-projections", "projections/src", "lib.rs"),
        ("berth-commands", "commands/src", "lib.rs"),
        ("berth-runtime", "runtime/src", "lib.rs"),
        ("berth-replay", "replay-tool/src", "main.rs"),
        ("berth (CLI)", "runtime/src/bin/berth", "main.rs"),
    ] {
        let dir = root.join(dir);
        if dir.join(file).is_file() {
            roots.push((name.to_string(), dir.clone(), dir.join(file)));
        }
    }
    roots
}

fn rust_files(dir: &Path, skip: &[&str], files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if !skip.contains(&name.as_str()) {
                rust_files(&path, skip, files);
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
}

/// The module path of a file under `src_dir`: `a/mod.rs` and `a.rs` are `a`; the root is empty.
fn module_path(src_dir: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src_dir).expect("file under its crate");
    let mut parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().to_string()).collect();
    let last = parts.pop().expect("a file name");
    if !matches!(last.as_str(), "mod.rs" | "lib.rs" | "main.rs") {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// `text` without line comments (doc comments included): an intra-doc link is not an import.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(start) if !line[..start].contains('"') => &line[..start],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::...` path in `text`, with one level of `{a, b::c}` groups expanded.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(position) = rest.find("crate::") {
        let before = rest[..position].chars().last();
        rest = &rest[position + "crate::".len()..];
        if before.is_some_and(|character| character.is_alphanumeric() || character == '_') {
            continue; // e.g. `berth_crate::`
        }
        let (prefix, after) = take_path(rest);
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let (item_path, _) = take_path(item.trim());
                paths.push(prefix.iter().cloned().chain(item_path).collect());
            }
        } else {
            paths.push(prefix);
        }
    }
    paths
}

/// Identifiers joined by `::` at the start of `text`, and what follows them.
fn take_path(text: &str) -> (Vec<String>, &str) {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let end = rest.find(|character: char| !(character.is_alphanumeric() || character == '_')).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(after) => rest = after,
            None => break,
        }
    }
    (segments, rest)
}

fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|entry| entry == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_loop_between_its_files() {
    let mut loops = Vec::new();
    for (name, src_dir, _) in crate_roots() {
        let mut files = Vec::new();
        // The binaries under runtime/src/bin are crates of their own.
        rust_files(&src_dir, &["bin"], &mut files);
        let modules: BTreeMap<Vec<String>, PathBuf> =
            files.iter().map(|file| (module_path(&src_dir, file), file.clone())).collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (module, file) in &modules {
            let text = std::fs::read_to_string(file).expect("read a source file");
            for path in crate_paths(&without_comments(&text)) {
                // The deepest module file the path reaches.
                let target =
                    (1..=path.len()).rev().map(|len| path[..len].to_vec()).find(|prefix| modules.contains_key(prefix));
                let Some(target) = target else { continue };
                if target.starts_with(module) {
                    continue; // into its own subtree: structure
                }
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            let names: Vec<String> = cycle.iter().map(|module| format!("crate::{}", module.join("::"))).collect();
            loops.push(format!("{name}: {}", names.join(" → ")));
        }
    }
    assert!(loops.is_empty(), "import loops (move the shared item down a layer):\n{}", loops.join("\n"));
}

#[test]
fn no_source_file_is_longer_than_a_reader_takes_in() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["log", "projections", "commands", "runtime", "replay-tool", "tests"] {
        rust_files(&root.join(dir), &["target"], &mut files);
    }
    let mut too_long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let n_lines = std::fs::read_to_string(file).ok()?.lines().count();
            (n_lines > MAX_LINES)
                .then(|| format!("{} ({n_lines} lines)", file.strip_prefix(&root).unwrap_or(file).display()))
        })
        .collect();
    too_long.sort();
    assert!(too_long.is_empty(), "files over {MAX_LINES} lines; split them by what they do:\n{}", too_long.join("\n"));
}

#[test]
fn the_checker_sees_paths_and_groups() {
    let paths = crate_paths(&without_comments(
        "use crate::a::b::{c, d::e};\nlet x = crate::f::g(1); // berth_crate::no crate::h\n/// [`crate::i`]",
    ));
    assert_eq!(
        paths,
        vec![
            vec!["a".to_string(), "b".into(), "c".into()],
            vec!["a".into(), "b".into(), "d".into(), "e".into()],
            vec!["f".into(), "g".into()],
        ]
    );
    let mut edges = BTreeMap::new();
    edges.insert(vec!["a".to_string()], BTreeSet::from([vec!["b".to_string()]]));
    edges.insert(vec!["b".to_string()], BTreeSet::from([vec!["a".to_string()]]));
    assert!(find_cycle(&edges).is_some());
}
