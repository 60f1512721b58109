//! Every program ovnet's code, tests and scripts run comes from a package that the install step
//! (`deploy/deps.sh`) names, or from Debian's essential/required base that every machine has.
//!
//! A green CI on a machine where someone once installed a package by hand can hide a missing
//! entry: this test finds the programs the sources run, asks dpkg which package owns each, and
//! fails for any that is neither listed nor part of the base system. A program that is not
//! installed at all is caught by the test that runs it (the install step did not install it).
//!
//! What counts as "a program the sources run" is found by reading them: in Rust, the literal of
//! `Command::new("x")`, the first literal of an argument array (`&["x", ...]`), the program
//! after `"exec", <namespace>,` and the program argument of the agent's `run(what, "x", ...)`;
//! in shell scripts, every word outside comments. Words in those positions that name programs
//! but are used as something else (an `ovctl node` subcommand, say) are listed in
//! `NOT_PROGRAMS` with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Words found in program positions that are not programs ovnet runs, and why.
const NOT_PROGRAMS: &[(&str, &str)] = &[
    ("node", "`ovctl node ls` and ovnet's node names"),
    ("link", "`ip link` subcommand"),
    ("route", "`ip route` subcommand"),
    (
        "cargo",
        "the Rust toolchain, a documented prerequisite (rustup), not a Debian package",
    ),
    ("rustc", "the Rust toolchain, a documented prerequisite"),
    ("rustup", "mentioned as where Rust comes from"),
    ("dpkg-query", "deps.sh's own check, part of dpkg (required)"),
    (
        "docker",
        "docker.io's CLI, always run as /usr/bin/docker (listed so): the `docker` first on \
         PATH may be another one",
    ),
    (
        "as",
        "an English word in the scripts' messages, not the assembler",
    ),
];

/// Where a word was found, for the failure message.
type Sites = BTreeMap<String, BTreeSet<String>>;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The install step's table: package -> what ovnet uses from it.
fn listed_packages(root: &Path) -> BTreeMap<String, Vec<String>> {
    let out = Command::new(root.join("deploy/deps.sh"))
        .arg("--list")
        .output()
        .expect("run deploy/deps.sh --list");
    assert!(
        out.status.success(),
        "deploy/deps.sh --list failed: {out:?}"
    );
    let mut table = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut words = line.split_whitespace();
        let (Some(_group), Some(package)) = (words.next(), words.next()) else {
            panic!("deps.sh --list printed a malformed row: {line:?}");
        };
        table.insert(package.to_string(), words.map(str::to_string).collect());
    }
    assert!(!table.is_empty(), "deps.sh --list printed nothing");
    table
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "corpus" | "artifacts" | "results"
            ) {
                source_files(&path, out);
            }
        } else if name.ends_with(".rs") || name.ends_with(".sh") || path.ends_with(".ci/run") {
            out.push(path);
        }
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().unwrap().is_ascii_lowercase()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
}

/// The string literal that starts right after `s`'s optional whitespace, if any.
fn literal_at(s: &str) -> Option<&str> {
    let s = s.trim_start().strip_prefix('"')?;
    s.split('"').next()
}

/// Program words in one Rust file, in the positions the module doc lists.
fn rust_programs(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut push = |w: Option<&str>| {
        if let Some(w) = w.filter(|w| is_word(w)) {
            found.push(w.to_string());
        }
    };
    for (i, _) in text.match_indices("Command::new(") {
        push(literal_at(&text[i + "Command::new(".len()..]));
    }
    for (i, _) in text.match_indices('[') {
        push(literal_at(&text[i + 1..]));
    }
    for (i, _) in text.match_indices("\"exec\",") {
        // `"exec", ns, "prog"` (ip netns exec) or `"exec", "prog"`.
        let rest = &text[i + "\"exec\",".len()..];
        push(literal_at(rest));
        if let Some(comma) = rest.find(',') {
            push(literal_at(&rest[comma + 1..]));
        }
    }
    for (i, _) in text.match_indices("run(") {
        // The agent's `run(what, "program", args)`.
        let rest = &text[i + "run(".len()..];
        if let Some(comma) = rest.find(',').filter(|&c| !rest[..c].contains(')')) {
            push(literal_at(&rest[comma + 1..]));
        }
    }
    found
}

/// Every word outside comments of a shell script (a program is a word; most words are not
/// programs, and those do not resolve on PATH).
fn shell_words(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        let code = line.split(" #").next().unwrap();
        for w in code.split(|c: char| !(c.is_ascii_alphanumeric() || "._+-".contains(c))) {
            if is_word(w) {
                found.push(w.to_string());
            }
        }
    }
    found
}

/// The executable `prog` resolves to on PATH, as a shell would find it.
fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file() && std::fs::metadata(p).is_ok_and(|m| permissions_exec(&m)))
}

fn permissions_exec(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

/// Shell builtins and keywords: never looked up on PATH.
fn is_builtin(w: &str) -> bool {
    const BUILTINS: &[&str] = &[
        "cd", "echo", "exec", "exit", "export", "for", "do", "done", "if", "then", "else", "elif",
        "fi", "case", "esac", "in", "while", "until", "set", "shift", "local", "read", "return",
        "trap", "wait", "kill", "printf", "test", "true", "false", "type", "command", "eval",
        "source", "unset", "declare", "let", "break", "continue", "function", "select", "time",
        "pwd", "umask", "getopts", "hash", "mapfile", "readonly", "shopt",
    ];
    BUILTINS.contains(&w)
}

/// The package dpkg says owns `path` (tried as found, resolved, and without the `/usr` of
/// Debian's merged /usr), or None if no package does.
fn owner(path: &Path) -> Option<String> {
    let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut tries = vec![path.to_path_buf(), resolved.clone()];
    for p in [path, resolved.as_path()] {
        if let Ok(rest) = p.strip_prefix("/usr") {
            tries.push(Path::new("/").join(rest));
        }
    }
    for p in tries {
        let out = Command::new("dpkg").arg("-S").arg(&p).output().ok()?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            // Diversions (`diversion by dash from: /bin/sh`) come first; the owner follows.
            let first = text.lines().find(|l| !l.starts_with("diversion by"))?;
            let package = first.split(':').next()?.split(',').next()?.trim();
            return Some(package.to_string());
        }
    }
    None
}

/// Whether `package` is part of every Debian system (Essential, or Priority required).
fn is_base(package: &str) -> bool {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Essential} ${Priority}", package])
        .output()
        .expect("dpkg-query");
    let text = String::from_utf8_lossy(&out.stdout);
    text.starts_with("yes") || text.ends_with("required")
}

#[test]
fn every_program_ovnet_runs_comes_from_a_listed_package() {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: not a Debian system (no dpkg-query); the package table is Debian's");
        return;
    }
    let root = repo_root();
    let table = listed_packages(&root);

    // The table is honest: each program it names is installed (the install step ran before
    // the tests) and belongs to the package it is listed under.
    let mut wrong = Vec::new();
    for (package, items) in &table {
        for item in items {
            let path = if item.starts_with('/') {
                Some(PathBuf::from(item))
            } else {
                which(item)
            };
            match path.filter(|p| p.exists()) {
                None => wrong.push(format!("{item} (listed under {package}) is not installed")),
                Some(p) => match owner(&p) {
                    Some(o) if &o == package => {}
                    o => wrong.push(format!(
                        "{item} ({}) belongs to {o:?}, not {package}",
                        p.display()
                    )),
                },
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "deploy/deps.sh's table is wrong:\n  {}",
        wrong.join("\n  ")
    );

    // Every program the sources run.
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let mut sites = Sites::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let words = if file.extension().is_some_and(|e| e == "rs") {
            rust_programs(&text)
        } else {
            shell_words(&text)
        };
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        for w in words {
            sites.entry(w).or_default().insert(rel.clone());
        }
    }
    for must in ["ip", "etcd", "ethtool", "iperf3", "nsenter", "ping"] {
        assert!(
            sites.contains_key(must),
            "the scan no longer finds `{must}`: fix the scanner"
        );
    }

    let listed: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    let ignored: BTreeMap<&str, &str> = NOT_PROGRAMS.iter().copied().collect();
    let mut checked = 0;
    let mut unlisted = Vec::new();
    for (word, files) in &sites {
        if is_builtin(word) || ignored.contains_key(word.as_str()) {
            continue;
        }
        let Some(path) = which(word) else { continue };
        checked += 1;
        match owner(&path) {
            Some(package) if listed.contains(package.as_str()) || is_base(&package) => {}
            Some(package) => unlisted.push(format!(
                "`{word}` ({}, package {package}), run by {}",
                path.display(),
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            None => unlisted.push(format!(
                "`{word}` ({}, owned by no Debian package), run by {}",
                path.display(),
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
    println!("checked {checked} programs found in {} files", files.len());
    assert!(
        unlisted.is_empty(),
        "programs the sources run that deploy/deps.sh does not install (add their package to its \
         table, or to NOT_PROGRAMS here if the word is not a program):\n  {}",
        unlisted.join("\n  ")
    );
}

#[test]
fn the_scanner_finds_programs_where_ovnet_runs_them() {
    let rust = r#"
        let a = Command::new("ethtool").arg("-K");
        run(&["ip", "-n", ns, "link"]);
        tb.exec(ns, &["nstat", "-az"]);
        cmd.args(["netns", "exec", &ns, "ping", "-c", "1"]);
        run(what, "nsenter", &full).await;
        let v = vec!["not", "a", "program"];
    "#;
    let found = rust_programs(rust);
    for p in ["ethtool", "ip", "nstat", "ping", "nsenter"] {
        assert!(found.iter().any(|f| f == p), "{p} not found in {found:?}");
    }
    let shell = "# comment with docker\nip netns exec \"$NS\" etcd --name x # tail iperf3\n";
    let words = shell_words(shell);
    assert!(words.contains(&"etcd".to_string()) && words.contains(&"ip".to_string()));
    assert!(!words.contains(&"docker".to_string()) && !words.contains(&"iperf3".to_string()));
}
