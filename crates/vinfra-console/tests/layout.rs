//! The console's module layout (docs/design.md, "Crates and modules"): every import of one of
//! its files goes down the list of layers, and no two files import each other, directly or
//! around a circle. Read from the source: `crate::`, `super::` and child-module paths, outside
//! comments and `#[cfg(test)]` modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom: a file may import only from layers below its own (and within its own folder,
/// without a circle).
const LAYERS: [&str; 23] = [
    "lib",
    "web",
    "api",
    "interface",
    "tasks",
    "controllers",
    "ha",
    "balancing",
    "migration",
    "scrape",
    "vms",
    "hosts",
    "networks",
    "routers",
    "rules",
    "security_groups",
    "fit",
    "flows",
    "state",
    "metrics",
    "error",
    "agents",
    "pki",
];

/// Module path (without `crate`) → file, for every file of the crate.
fn files(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut all = vec![];
    walk(src, &mut all);
    all.into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut module: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            (module, p)
        })
        .collect()
}

/// The code of a file without comments and test modules.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path of a `use` tree: `a::{b, c::{d}}` → `a::b`, `a::c::d`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree
            .split("::")
            .map(|s| {
                s.split(" as ")
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty() && s != "self" && s != "*")
            .collect()];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let close = tree.rfind('}').filter(|c| *c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let (mut items, mut depth, mut cur) = (vec![], 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            items.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    items.push(cur);
    let mut out = vec![];
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        for rest in expand(item) {
            let mut p = prefix.clone();
            p.extend(rest);
            out.push(p);
        }
    }
    out
}

/// Paths a file names: `use` trees, and `crate::…`/`super::…`/child paths in its code (also
/// through a name a `use` brought in: `vms::views::list` after `use crate::vms`).
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let ours = |p: &[String]| {
        p.first()
            .is_some_and(|s| s == "crate" || s == "super" || children.contains(s))
    };
    let mut out: Vec<Vec<String>> = vec![];
    let lines: Vec<&str> = code.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let Some(tree) = t.strip_prefix("use ") else {
            continue;
        };
        let mut stmt = tree.to_string();
        let mut next = n + 1;
        while !stmt.contains(';') && next < lines.len() {
            stmt.push_str(lines[next]);
            next += 1;
        }
        out.extend(expand(stmt.split(';').next().unwrap_or_default()));
    }
    let aliases: BTreeMap<String, Vec<String>> = out
        .iter()
        .filter(|p| ours(p) && p.len() > 1)
        .map(|p| (p[p.len() - 1].clone(), p.clone()))
        .collect();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if starts && (bytes[i].is_alphabetic() || bytes[i] == '_') {
            let mut j = i;
            let mut path = String::new();
            while j < bytes.len()
                && (bytes[j].is_alphanumeric() || bytes[j] == '_' || bytes[j] == ':')
            {
                path.push(bytes[j]);
                j += 1;
            }
            let segs: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if path.contains("::") && !segs.is_empty() {
                if ours(&segs) {
                    out.push(segs);
                } else if let Some(full) = aliases.get(&segs[0]) {
                    let mut p = full.clone();
                    p.extend(segs[1..].iter().cloned());
                    out.push(p);
                }
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// file → the files it imports.
fn graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let files = files(src);
    let resolve = |module: &[String]| -> Option<&PathBuf> {
        (0..=module.len())
            .rev()
            .find_map(|n| files.get(&module[..n]))
    };
    let mut edges = BTreeMap::new();
    for (module, path) in &files {
        let children: BTreeSet<String> = files
            .keys()
            .filter(|k| k.len() == module.len() + 1 && k[..module.len()] == module[..])
            .map(|k| k[module.len()].clone())
            .collect();
        let mut to = BTreeSet::new();
        for p in paths(&code(path), &children) {
            let target: Vec<String> = match p[0].as_str() {
                "crate" => p[1..].to_vec(),
                "super" => {
                    let mut base = module[..module.len().saturating_sub(1)].to_vec();
                    let mut rest = &p[1..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    base
                }
                _ if children.contains(&p[0]) => {
                    let mut m = module.clone();
                    m.extend(p.iter().cloned());
                    m
                }
                _ => continue,
            };
            if target.is_empty() {
                continue;
            }
            if let Some(f) = resolve(&target) {
                if f != path {
                    to.insert(f.clone());
                }
            }
        }
        edges.insert(path.clone(), to);
    }
    edges
}

fn layer(src: &Path, file: &Path) -> usize {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    let name = first.trim_end_matches(".rs");
    LAYERS
        .iter()
        .position(|l| *l == name)
        .unwrap_or_else(|| panic!("{} is in no layer of LAYERS", rel.display()))
}

#[test]
fn imports_go_down_the_layers_and_never_around_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(
        edges.len() > 40,
        "the source was read: {} files",
        edges.len()
    );
    let mut up = vec![];
    for (from, tos) in &edges {
        for to in tos {
            if layer(&src, to) < layer(&src, from) {
                up.push(format!("{} -> {}", from.display(), to.display()));
            }
        }
    }
    assert!(
        up.is_empty(),
        "imports going up the layers:\n{}",
        up.join("\n")
    );

    // No cycle: depth-first search with colours.
    fn visit<'a>(
        v: &'a PathBuf,
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        colour: &mut BTreeMap<&'a PathBuf, u8>,
        stack: &mut Vec<&'a PathBuf>,
    ) -> Option<Vec<String>> {
        colour.insert(v, 1);
        stack.push(v);
        for w in &edges[v] {
            match colour.get(w).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| *s == w).unwrap_or(0);
                    return Some(
                        stack[from..]
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect(),
                    );
                }
                0 => {
                    if let Some(c) = visit(w, edges, colour, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(v, 2);
        None
    }
    let mut colour = BTreeMap::new();
    for v in edges.keys() {
        if colour.get(v).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(v, &edges, &mut colour, &mut vec![]) {
                panic!("files that import each other: {}", cycle.join(" -> "));
            }
        }
    }

    // The checker sees imports: the interface (its dispatch) imports the resource modules, the API only the
    // interface (and its own files).
    let src_file = |f: &str| src.join(f);
    assert!(edges[&src_file("interface/dispatch.rs")].contains(&src_file("vms/create.rs")));
    for to in &edges[&src_file("api/routes.rs")] {
        assert!(
            to.starts_with(src.join("api")) || to.starts_with(src.join("interface")),
            "the API imports {}",
            to.display()
        );
    }
}

/// The names a file takes from `vinfra_placement` (its `use` statements and paths in its code).
fn placement_names(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let lines: Vec<&str> = code.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let Some(tree) = t.strip_prefix("use vinfra_placement") else {
            continue;
        };
        let mut stmt = format!("vinfra_placement{tree}");
        let mut next = n + 1;
        while !stmt.contains(';') && next < lines.len() {
            stmt.push_str(lines[next]);
            next += 1;
        }
        for p in expand(stmt.split(';').next().unwrap_or_default()) {
            if let Some(last) = p.last().filter(|_| p.len() > 1) {
                names.insert(last.clone());
            }
        }
    }
    for part in code.split("vinfra_placement::").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && name != "fit" {
            names.insert(name);
        }
    }
    names
}

#[test]
fn fit_is_the_only_caller_of_the_placement_library() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // Besides fit: the balancer takes the balance API, the errors the placement refusals.
    let balance = [
        "BalanceConfig",
        "ClusterModel",
        "FitTable",
        "Move",
        "Plan",
        "RecentMove",
        "TrafficFlow",
        "balance_with_fit",
    ];
    let errors = ["FitError", "ModelError", "RuleError", "Unfit"];
    let mut seen = 0;
    for (module, path) in files(&src) {
        let names = placement_names(&code(&path));
        let first = module.first().map(String::as_str).unwrap_or("lib");
        let allowed: &[&str] = match first {
            "fit" => {
                // fit/mod.rs holds the placer; its children (platform.rs) help it.
                if module.len() == 1 {
                    assert!(names.contains("RulePlacer"), "{names:?}");
                    seen += 1;
                }
                continue;
            }
            "balancing" => &balance,
            "error" => &errors,
            _ => &[],
        };
        for name in &names {
            assert!(
                allowed.contains(&name.as_str()),
                "{} takes {name} from vinfra_placement",
                path.display()
            );
        }
    }
    assert_eq!(seen, 1, "fit/mod.rs was read");
}
