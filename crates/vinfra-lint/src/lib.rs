//! The import graph between the files of each crate of the workspace, and its circles.
//!
//! A file imports another when it names something of it: a `use` of its module or of an item in
//! it, or a path such as `crate::networks::assign` or `super::Manager` in code. Module
//! declarations (`mod x;`) are not imports, but a `pub use child::Item` in a parent is, and so is
//! a child's `use super::Item`. Code under `#[cfg(test)]` is left out: unit tests may reach
//! anywhere. Each crate's files must form a graph without circles, so that a reader can enter a
//! crate from the top and meet every file once, going down; [`Graph::floors`] says how high each
//! file stands (floor 1 imports nothing of its crate).
//!
//! `cargo run -p vinfra-lint` prints every crate's floors and circles; the test in
//! `tests/imports.rs` fails on a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Why the workspace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// A directory or file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The directory or file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A Rust file does not parse.
    #[error("cannot parse {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: syn::Error,
    },
}

/// A module path inside a crate (`["networks", "ipam"]`); the crate root is empty.
pub type ModPath = Vec<String>;

/// One crate's files and the imports between them.
#[derive(Debug, Default)]
pub struct Graph {
    /// The crate's name (its directory under `crates/`).
    pub name: String,
    /// Each file, by its path relative to the crate directory, and its module path.
    pub files: BTreeMap<String, ModPath>,
    /// `from -> to -> names`: the files a file imports and the names it takes from each.
    pub edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Graph {
    /// Reads the library (or the binary, when there is no library) of the crate in `dir`.
    pub fn read(dir: &Path) -> Result<Graph, LintError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let src = dir.join("src");
        let mut files = BTreeMap::new();
        let has_lib = src.join("lib.rs").exists();
        collect(&src, &src, has_lib, &mut files)?;
        let by_module: BTreeMap<ModPath, String> =
            files.iter().map(|(f, m)| (m.clone(), f.clone())).collect();
        let mut asts = Vec::new();
        let mut scopes = BTreeMap::new();
        for (file, module) in &files {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|source| LintError::Read {
                path: path.clone(),
                source,
            })?;
            let ast = syn::parse_file(&text).map_err(|source| LintError::Parse {
                path: path.clone(),
                source,
            })?;
            scan_scopes(module, &ast.items, &mut scopes);
            asts.push((file.clone(), module.clone(), ast));
        }
        let resolver = Resolver {
            by_module: &by_module,
            scopes: &scopes,
        };
        let mut graph = Graph {
            name,
            files: files.clone(),
            edges: BTreeMap::new(),
        };
        for (file, module, ast) in &asts {
            let mut v = Collector {
                module: module.clone(),
                resolver: &resolver,
                found: BTreeMap::new(),
            };
            v.visit_file(ast);
            v.found.remove(file);
            if !v.found.is_empty() {
                graph.edges.insert(file.clone(), v.found);
            }
        }
        Ok(graph)
    }

    /// The circles: groups of two or more files that import each other, each sorted.
    pub fn circles(&self) -> Vec<Vec<String>> {
        let nodes: Vec<&String> = self.files.keys().collect();
        let index: BTreeMap<&String, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let adj: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                self.edges
                    .get(*n)
                    .map(|t| t.keys().filter_map(|k| index.get(k).copied()).collect())
                    .unwrap_or_default()
            })
            .collect();
        let mut out: Vec<Vec<String>> = strongly_connected(&adj)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut names: Vec<String> = c.into_iter().map(|i| nodes[i].clone()).collect();
                names.sort();
                names
            })
            .collect();
        out.sort();
        out
    }

    /// Each file's floor: 1 for a file that imports nothing of its crate, else one more than the
    /// highest file it imports. Files on a circle share the circle's floor.
    pub fn floors(&self) -> BTreeMap<String, usize> {
        let mut floors: BTreeMap<String, usize> = BTreeMap::new();
        // Longest path over the graph; a circle is cut where the walk meets a file it is inside.
        fn floor_of(
            g: &Graph,
            f: &String,
            floors: &mut BTreeMap<String, usize>,
            on_path: &mut BTreeSet<String>,
        ) -> usize {
            if let Some(&n) = floors.get(f) {
                return n;
            }
            if !on_path.insert(f.clone()) {
                return 0;
            }
            let mut n = 1;
            if let Some(targets) = g.edges.get(f) {
                for t in targets.keys() {
                    n = n.max(floor_of(g, t, floors, on_path) + 1);
                }
            }
            on_path.remove(f);
            floors.insert(f.clone(), n);
            n
        }
        for f in self.files.keys() {
            floor_of(self, f, &mut floors, &mut BTreeSet::new());
        }
        floors
    }

    /// The graph as text: floors from the top down, each file with the files it imports.
    pub fn describe(&self) -> String {
        let floors = self.floors();
        let mut by_floor: BTreeMap<usize, Vec<&String>> = BTreeMap::new();
        for (f, n) in &floors {
            by_floor.entry(*n).or_default().push(f);
        }
        let mut s = format!("crate {}: {} files\n", self.name, self.files.len());
        for (n, files) in by_floor.iter().rev() {
            for f in files {
                let targets: Vec<&str> = self
                    .edges
                    .get(*f)
                    .map(|t| t.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if targets.is_empty() {
                    s.push_str(&format!("  floor {n:>2}  {f}\n"));
                } else {
                    s.push_str(&format!("  floor {n:>2}  {f} -> {}\n", targets.join(", ")));
                }
            }
        }
        for c in self.circles() {
            s.push_str(&format!("  CIRCLE: {}\n", c.join(" <-> ")));
            for a in &c {
                for b in &c {
                    if let Some(names) = self.edges.get(a).and_then(|t| t.get(b)) {
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        s.push_str(&format!("    {a} -> {b}: {}\n", names.join(", ")));
                    }
                }
            }
        }
        s
    }
}

/// Every crate under `workspace/crates`, read.
pub fn workspace(workspace: &Path) -> Result<Vec<Graph>, LintError> {
    let crates = workspace.join("crates");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&crates)
        .map_err(|source| LintError::Read {
            path: crates.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("src").is_dir())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| Graph::read(d)).collect()
}

/// Names every crate may define for itself, read qualified by the crate (`vinfra_console::Error`).
pub const CRATE_LOCAL_NAMES: &[&str] = &["Error", "Result"];

/// Public type names (structs, enums, traits, type aliases; `pub` or `pub(crate)`) defined in
/// more than one crate, with those crates, leaving out [`CRATE_LOCAL_NAMES`]: one name, one
/// meaning across the workspace.
pub fn shared_names(workspace: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, LintError> {
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in self::workspace(workspace)? {
        let dir = workspace.join("crates").join(&g.name);
        for file in g.files.keys() {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|source| LintError::Read {
                path: path.clone(),
                source,
            })?;
            let ast = syn::parse_file(&text).map_err(|source| LintError::Parse {
                path: path.clone(),
                source,
            })?;
            let mut names = BTreeSet::new();
            type_names(&ast.items, &mut names);
            for n in names {
                if !CRATE_LOCAL_NAMES.contains(&n.as_str()) {
                    owners.entry(n).or_default().insert(g.name.clone());
                }
            }
        }
    }
    owners.retain(|_, crates| crates.len() > 1);
    Ok(owners)
}

fn type_names(items: &[syn::Item], out: &mut BTreeSet<String>) {
    for item in items {
        if is_cfg_test(item_attrs(item)) {
            continue;
        }
        let (vis, ident) = match item {
            syn::Item::Struct(i) => (&i.vis, &i.ident),
            syn::Item::Enum(i) => (&i.vis, &i.ident),
            syn::Item::Trait(i) => (&i.vis, &i.ident),
            syn::Item::Type(i) => (&i.vis, &i.ident),
            syn::Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    type_names(inner, out);
                }
                continue;
            }
            _ => continue,
        };
        if !matches!(vis, syn::Visibility::Inherited) {
            out.insert(ident.to_string());
        }
    }
}

/// Finds the `.rs` files under `dir` and their module paths. `src/bin/` holds separate
/// programs, and `main.rs` beside a `lib.rs` is one: neither belongs to the library's graph.
fn collect(
    src: &Path,
    dir: &Path,
    has_lib: bool,
    out: &mut BTreeMap<String, ModPath>,
) -> Result<(), LintError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LintError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let rel = path.strip_prefix(src).unwrap_or(&path).to_path_buf();
        if path.is_dir() {
            if rel == Path::new("bin") {
                continue;
            }
            collect(src, &path, has_lib, out)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let mut module: ModPath = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let last = module.pop().unwrap_or_default();
        let stem = last.trim_end_matches(".rs").to_string();
        if module.is_empty() && stem == "main" && has_lib {
            continue;
        }
        if !(module.is_empty() && (stem == "lib" || stem == "main")) && stem != "mod" {
            module.push(stem);
        }
        out.insert(format!("src/{}", rel.to_string_lossy()), module);
    }
    Ok(())
}

/// What one module (a file, or an inline `mod x { … }`) defines and brings in with `use`.
#[derive(Debug, Default)]
struct Scope {
    /// Names of the items defined here.
    defs: BTreeSet<String>,
    /// Names brought in by `use`, and the path each stands for (as written here).
    aliases: BTreeMap<String, Vec<String>>,
    /// Paths of `use …::*` here.
    globs: Vec<Vec<String>>,
}

/// Records each module's scope, skipping `#[cfg(test)]` items.
fn scan_scopes(module: &ModPath, items: &[syn::Item], scopes: &mut BTreeMap<ModPath, Scope>) {
    scopes.entry(module.clone()).or_default();
    for item in items {
        if is_cfg_test(item_attrs(item)) {
            continue;
        }
        let ident = match item {
            syn::Item::Struct(i) => Some(&i.ident),
            syn::Item::Enum(i) => Some(&i.ident),
            syn::Item::Fn(i) => Some(&i.sig.ident),
            syn::Item::Trait(i) => Some(&i.ident),
            syn::Item::Type(i) => Some(&i.ident),
            syn::Item::Const(i) => Some(&i.ident),
            syn::Item::Static(i) => Some(&i.ident),
            syn::Item::Union(i) => Some(&i.ident),
            syn::Item::Macro(i) => i.ident.as_ref(),
            _ => None,
        };
        if let Some(ident) = ident {
            scopes
                .entry(module.clone())
                .or_default()
                .defs
                .insert(ident.to_string());
        }
        match item {
            syn::Item::Use(u) => {
                let scope = scopes.entry(module.clone()).or_default();
                flatten_use(&mut Vec::new(), &u.tree, scope);
            }
            syn::Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    let mut child = module.clone();
                    child.push(m.ident.to_string());
                    scan_scopes(&child, inner, scopes);
                }
            }
            _ => {}
        }
    }
}

fn flatten_use(prefix: &mut Vec<String>, tree: &syn::UseTree, scope: &mut Scope) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(prefix, &p.tree, scope);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut path = prefix.clone();
            if name != "self" {
                path.push(name.clone());
            }
            let key = if name == "self" {
                prefix.last().cloned().unwrap_or_default()
            } else {
                name
            };
            scope.aliases.insert(key, path);
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            scope.aliases.insert(r.rename.to_string(), path);
        }
        syn::UseTree::Glob(_) => scope.globs.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(prefix, t, scope);
            }
        }
    }
}

/// Finds the file that defines what a path names, following `use` re-exports.
struct Resolver<'a> {
    by_module: &'a BTreeMap<ModPath, String>,
    scopes: &'a BTreeMap<ModPath, Scope>,
}

impl Resolver<'_> {
    /// The module a path's leading segments name, and the rest of the path; `None` when the
    /// path does not start in this crate.
    fn anchor<'p>(
        &self,
        from: &ModPath,
        segments: &'p [String],
    ) -> Option<(ModPath, &'p [String])> {
        let first = segments.first()?;
        match first.as_str() {
            "crate" => Some((Vec::new(), &segments[1..])),
            "self" => Some((from.clone(), &segments[1..])),
            "super" => {
                let mut m = from.clone();
                let mut i = 0;
                while segments.get(i).is_some_and(|s| s == "super") {
                    m.pop();
                    i += 1;
                }
                Some((m, &segments[i..]))
            }
            _ => {
                let mut child = from.clone();
                child.push(first.clone());
                if self.scopes.contains_key(&child) {
                    Some((from.clone(), segments))
                } else {
                    None
                }
            }
        }
    }

    /// The file defining what `segments`, written in module `from`, names, and the name taken.
    fn resolve(
        &self,
        from: &ModPath,
        segments: &[String],
        depth: usize,
    ) -> Option<(String, String)> {
        if depth > 16 {
            return None;
        }
        let (mut module, rest) = self.anchor(from, segments)?;
        let mut i = 0;
        // Walk down through modules (files or inline modules) as long as the path names one.
        while i < rest.len() {
            let mut next = module.clone();
            next.push(rest[i].clone());
            if self.scopes.contains_key(&next) {
                module = next;
                i += 1;
            } else {
                break;
            }
        }
        let file = self.file_of(&module)?;
        let Some(name) = rest.get(i) else {
            return Some((
                file,
                rest.last().cloned().unwrap_or_else(|| "(module)".into()),
            ));
        };
        let scope = self.scopes.get(&module)?;
        if scope.defs.contains(name) {
            return Some((file, name.clone()));
        }
        if let Some(target) = scope.aliases.get(name) {
            let mut path = target.clone();
            path.extend(rest[i + 1..].iter().cloned());
            if let Some(found) = self.resolve(&module, &path, depth + 1) {
                return Some(found);
            }
            // Not ours (another crate's item re-exported here).
            return None;
        }
        for glob in &scope.globs {
            let mut path = glob.clone();
            path.extend(rest[i..].iter().cloned());
            if let Some(found) = self.resolve(&module, &path, depth + 1) {
                return Some(found);
            }
        }
        Some((file, name.clone()))
    }

    /// The file a module lives in: its own, or the file holding it inline.
    fn file_of(&self, module: &ModPath) -> Option<String> {
        let mut m = module.clone();
        loop {
            if let Some(f) = self.by_module.get(&m) {
                return Some(f.clone());
            }
            m.pop()?;
        }
    }
}

/// Walks one file, noting the files its paths lead to.
struct Collector<'a> {
    /// The module the walk is in (grows inside inline `mod x { … }`).
    module: ModPath,
    resolver: &'a Resolver<'a>,
    found: BTreeMap<String, BTreeSet<String>>,
}

impl Collector<'_> {
    /// Resolves a path written in the current module and notes the file it names.
    fn note(&mut self, segments: &[String]) {
        if let Some((file, name)) = self.resolver.resolve(&self.module, segments, 0) {
            self.found.entry(file).or_default().insert(name);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                let p = prefix.clone();
                self.note(&p);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                let p = prefix.clone();
                self.note(&p);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => {
                let p = prefix.clone();
                self.note(&p);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

/// The attributes of an item (empty for kinds that cannot be `#[cfg(test)]` here).
fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Mod(m) => &m.attrs,
        syn::Item::Fn(f) => &f.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Use(u) => &u.attrs,
        syn::Item::Struct(s) => &s.attrs,
        syn::Item::Enum(e) => &e.attrs,
        syn::Item::Const(c) => &c.attrs,
        syn::Item::Static(s) => &s.attrs,
        syn::Item::Trait(t) => &t.attrs,
        syn::Item::Type(t) => &t.attrs,
        syn::Item::Macro(m) => &m.attrs,
        _ => &[],
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>().is_ok_and(|m| match m {
                syn::Meta::Path(p) => p.is_ident("test"),
                _ => false,
            })
    })
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if is_cfg_test(item_attrs(item)) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.module.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            self.note(&segments);
        }
        syn::visit::visit_path(self, p);
    }
}

/// Tarjan's strongly connected components.
fn strongly_connected(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.adj[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(comp);
        }
    }
    let n = adj.len();
    let mut s = State {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_of(files: &[(&str, &str)]) -> Graph {
        let dir = std::env::temp_dir().join(format!(
            "vinfra-lint-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let g = Graph::read(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        g
    }

    #[test]
    fn a_parent_re_export_and_a_child_super_use_make_a_circle() {
        let g = graph_of(&[
            (
                "src/lib.rs",
                "mod a;\npub use a::Thing;\npub struct Root;\n",
            ),
            ("src/a.rs", "use super::Root;\npub struct Thing;\n"),
        ]);
        assert_eq!(
            g.circles(),
            vec![vec!["src/a.rs".to_string(), "src/lib.rs".to_string()]]
        );
    }

    #[test]
    fn one_way_imports_stand_on_floors() {
        let g = graph_of(&[
            ("src/lib.rs", "mod top;\nmod low;\n"),
            (
                "src/top.rs",
                "use crate::low::{self, Low};\nfn f() { low::g(); }\n",
            ),
            (
                "src/low/mod.rs",
                "pub struct Low;\npub fn g() {}\n#[cfg(test)]\nmod tests { use crate::top; }\n",
            ),
        ]);
        assert!(g.circles().is_empty(), "{}", g.describe());
        let floors = g.floors();
        assert_eq!(floors["src/low/mod.rs"], 1);
        assert_eq!(floors["src/top.rs"], 2);
        assert_eq!(floors["src/lib.rs"], 1, "a mod declaration is no import");
    }
}
