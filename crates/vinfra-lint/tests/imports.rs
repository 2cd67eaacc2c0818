//! No crate of the workspace has files that import each other in a circle, and no type name
//! means two things.

#[test]
fn no_crate_has_an_import_circle() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let graphs = vinfra_lint::workspace(&root).expect("the workspace reads");
    assert!(graphs.len() > 5, "found only {} crates", graphs.len());
    let broken: Vec<String> = graphs
        .iter()
        .filter(|g| !g.circles().is_empty())
        .map(|g| g.describe())
        .collect();
    assert!(broken.is_empty(), "import circles:\n{}", broken.join("\n"));
}

/// One name, one meaning: no two crates define a public type of the same name (`Error` and
/// `Result` aside, which every crate may have for itself).
#[test]
fn no_type_name_means_two_things() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = vinfra_lint::shared_names(&root).expect("the workspace reads");
    assert!(
        shared.is_empty(),
        "type names defined in several crates: {shared:?}"
    );
}
