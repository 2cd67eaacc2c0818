//! `vinfra-imports [WORKSPACE]`: prints every crate's files floor by floor with the files each
//! imports, and its circles, then the type names defined in more than one crate; exits 1 when there
//! is either.

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let graphs = match vinfra_lint::workspace(&root) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vinfra-imports: {}", vinfra_types::error::chain(&e));
            std::process::exit(2);
        }
    };
    let mut circles = 0;
    for g in &graphs {
        print!("{}", g.describe());
        circles += g.circles().len();
    }
    println!("{} crates, {circles} circles", graphs.len());
    let shared = match vinfra_lint::shared_names(&root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vinfra-imports: {}", vinfra_types::error::chain(&e));
            std::process::exit(2);
        }
    };
    for (name, crates) in &shared {
        let crates: Vec<&str> = crates.iter().map(String::as_str).collect();
        println!(
            "name defined in several crates: {name} ({})",
            crates.join(", ")
        );
    }
    if circles > 0 || !shared.is_empty() {
        std::process::exit(1);
    }
}
