//! `vinfra-imports [WORKSPACE]`: prints every crate's files floor by floor with the files each
//! imports, and its circles; exits 1 when a crate has a circle.

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
    if circles > 0 {
        std::process::exit(1);
    }
}
