//! ARCHITECTURE.md's map matches the code file for file: every source file
//! of the `rekey` crate, the functions and the test kit is named there by
//! its path, and every path it names exists.

use std::path::Path;

use rekey_testkit::workspace_root;

/// The source files under `dir` (relative to the workspace), recursively,
/// as workspace-relative paths.
fn sources(dir: &str) -> Vec<String> {
    let root = workspace_root();
    let mut out = Vec::new();
    let mut todo = vec![root.join(dir)];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The backticked spans of `text` that look like paths of the project.
fn named_paths(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            !s.contains(' ')
                && s.contains('/')
                && [".rs", ".py", ".json", ".yaml", ".md", ".toml"]
                    .iter()
                    .any(|ext| s.ends_with(ext))
        })
        .collect()
}

#[test]
fn every_source_file_is_on_the_map_and_every_path_on_it_exists() {
    let root = workspace_root();
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let named = named_paths(&map);

    let mut missing = Vec::new();
    for dir in [
        "shared/src",
        "shared/tests",
        "functions",
        "tests/src",
        "tests/tests",
    ] {
        for file in sources(dir) {
            if !named.contains(&file.as_str()) {
                missing.push(file);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name these files (write each as `path` with what it holds): {missing:#?}"
    );

    let gone: Vec<&str> = named
        .iter()
        .copied()
        .filter(|p| !p.contains('*') && !p.contains('<') && !Path::new(&root).join(p).exists())
        .collect();
    assert!(
        gone.is_empty(),
        "ARCHITECTURE.md names files that do not exist: {gone:#?}"
    );
}
