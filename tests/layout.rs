//! The engine's layout holds (issue 22): read from the source, so that the shape
//! docs/design.md draws cannot drift from the code.
//!
//! - no import circle between the engine's top-level modules (a folder counts as one);
//! - no function over 80 lines and no `too_many_arguments` allowance in the engine and
//!   the CLI, no engine file over 600 lines, at most 15 `.rs` files in the engine's top
//!   folder;
//! - the report model's crate does not depend on `postgres`.
//!
//! Sources are parsed with `syn` (functions and paths found as Rust sees them, not by
//! matching text); unit-test modules (`#[cfg(test)]`) are not held to the limits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use petgraph::graph::DiGraph;
use syn::spanned::Spanned;
use syn::visit::Visit;

const LONGEST_FUNCTION: usize = 80;
const LONGEST_ENGINE_FILE: usize = 600;
const MOST_TOP_LEVEL_FILES: usize = 15;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn engine_src() -> PathBuf {
    workspace().join("crates/planrun-engine/src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).expect("read a source file");
    syn::parse_file(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("test")
            || (attr.path().is_ident("cfg")
                && attr.meta.require_list().is_ok_and(|list| {
                    list.tokens.to_string().split_whitespace().next() == Some("test")
                }))
    })
}

/// Every function and method of a file outside its unit tests, with its length.
#[derive(Default)]
struct Functions {
    found: Vec<(String, usize, usize)>,
}

impl Functions {
    /// From `fn` to the closing brace: doc comments and attributes do not count.
    fn note(&mut self, signature: &syn::Signature, body: &syn::Block) {
        let (start, end) = (signature.span().start().line, body.span().end().line);
        self.found
            .push((signature.ident.to_string(), start, end - start + 1));
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if !is_test_only(&module.attrs) {
            syn::visit::visit_item_mod(self, module);
        }
    }
    fn visit_item_fn(&mut self, function: &'ast syn::ItemFn) {
        if !is_test_only(&function.attrs) {
            self.note(&function.sig, &function.block);
            syn::visit::visit_item_fn(self, function);
        }
    }
    fn visit_impl_item_fn(&mut self, function: &'ast syn::ImplItemFn) {
        if !is_test_only(&function.attrs) {
            self.note(&function.sig, &function.block);
            syn::visit::visit_impl_item_fn(self, function);
        }
    }
    fn visit_trait_item_fn(&mut self, function: &'ast syn::TraitItemFn) {
        if let Some(body) = &function.default {
            self.note(&function.sig, body);
        }
        syn::visit::visit_trait_item_fn(self, function);
    }
}

#[test]
fn no_function_in_the_engine_or_the_cli_is_over_80_lines_or_allowed_too_many_arguments() {
    let mut problems = Vec::new();
    for crate_dir in ["crates/planrun-engine/src", "crates/planrun-cli/src"] {
        for path in rust_files(&workspace().join(crate_dir)) {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let shown = path.strip_prefix(workspace()).unwrap_or(&path).display();
            if text.contains("too_many_arguments") {
                problems.push(format!("{shown}: allows clippy::too_many_arguments"));
            }
            let mut functions = Functions::default();
            functions.visit_file(&parse(&path));
            for (name, line, length) in functions.found {
                if length > LONGEST_FUNCTION {
                    problems.push(format!("{shown}:{line}: `{name}` is {length} lines"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_engine_file_is_over_600_lines_and_its_top_folder_holds_at_most_15_files() {
    let mut problems = Vec::new();
    for path in rust_files(&engine_src()) {
        let lines = std::fs::read_to_string(&path)
            .expect("read a source file")
            .lines()
            .count();
        if lines > LONGEST_ENGINE_FILE {
            problems.push(format!("{}: {lines} lines", path.display()));
        }
    }
    let top: Vec<_> = std::fs::read_dir(engine_src())
        .expect("read the engine's folder")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    if top.len() > MOST_TOP_LEVEL_FILES {
        problems.push(format!(
            "{} .rs files in the engine's top folder",
            top.len()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The engine's top-level modules a file names through `crate::` paths (in `use`
/// items and in expressions), outside its unit tests.
#[derive(Default)]
struct CratePaths {
    named: BTreeSet<String>,
}

impl CratePaths {
    fn use_tree(&mut self, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                self.named.insert(path.ident.to_string());
            }
            syn::UseTree::Group(group) => group.items.iter().for_each(|item| self.use_tree(item)),
            syn::UseTree::Name(name) => {
                self.named.insert(name.ident.to_string());
            }
            syn::UseTree::Rename(rename) => {
                self.named.insert(rename.ident.to_string());
            }
            syn::UseTree::Glob(_) => {}
        }
    }
}

impl<'ast> Visit<'ast> for CratePaths {
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if !is_test_only(&module.attrs) {
            syn::visit::visit_item_mod(self, module);
        }
    }
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if let syn::UseTree::Path(path) = &item.tree {
            if path.ident == "crate" {
                self.use_tree(&path.tree);
            }
        }
    }
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let mut segments = path.segments.iter();
        if let (Some(first), Some(second)) = (segments.next(), segments.next()) {
            if first.ident == "crate" {
                self.named.insert(second.ident.to_string());
            }
        }
        syn::visit::visit_path(self, path);
    }
}

/// The engine's top-level modules and, for each, the others it uses.
fn engine_module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = engine_src();
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("read the engine's folder") {
        let path = entry.expect("a folder entry").path();
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("a module name")
            .to_string();
        if name == "lib" {
            continue;
        }
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path]
        };
        modules.insert(name, files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .map(|(name, files)| {
            let mut paths = CratePaths::default();
            for file in &files {
                paths.visit_file(&parse(file));
            }
            let uses = paths
                .named
                .into_iter()
                .filter(|used| used != &name && names.contains(used))
                .collect();
            (name, uses)
        })
        .collect()
}

#[test]
fn the_engines_modules_import_each_other_in_one_direction() {
    let modules = engine_module_graph();
    let mut graph = DiGraph::<&str, ()>::new();
    let nodes: BTreeMap<&str, _> = modules
        .keys()
        .map(|name| (name.as_str(), graph.add_node(name.as_str())))
        .collect();
    for (name, uses) in &modules {
        for used in uses {
            graph.add_edge(nodes[name.as_str()], nodes[used.as_str()], ());
        }
    }
    let circles: Vec<String> = petgraph::algo::tarjan_scc(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let mut names: Vec<&str> = component.iter().map(|node| graph[*node]).collect();
            names.sort();
            names.join(" <-> ")
        })
        .collect();
    assert!(
        circles.is_empty(),
        "import circles between the engine's modules:\n{}\n(the graph: {modules:#?})",
        circles.join("\n")
    );
}

#[test]
fn the_report_model_does_not_depend_on_postgres() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "planrun-report",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(workspace())
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let database: Vec<&str> = tree
        .lines()
        .filter(|line| {
            let name = line.split_whitespace().next().unwrap_or("");
            name.contains("postgres") || name == "planrun-engine"
        })
        .collect();
    assert!(
        database.is_empty(),
        "planrun-report depends on database code: {database:?}"
    );
    assert!(
        tree.lines()
            .next()
            .unwrap_or("")
            .starts_with("planrun-report"),
        "no planrun-report crate: {tree}"
    );
}
