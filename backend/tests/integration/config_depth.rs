//! Issue 22: deep YAML nesting is refused before the parser runs (100,000 levels took 75 s in
//! the parser), with `file:line:column` and what to look for; real configurations still load.

use backend::config::parse_str;

const FILE: &str = "/etc/pve-rebalancer/proxlb.yaml";

fn refused(text: &str) -> String {
    match parse_str(text, FILE) {
        Ok(c) => panic!("expected an error, loaded {:?}", c.config),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_hundred_thousand_levels_are_refused_with_file_line_and_column() {
    let levels = 100_000;
    for (text, line, what) in [
        (format!("balancing:\n  x: {}", "[".repeat(levels)), 2, "flow sequences"),
        (format!("balancing:\n  x: {}", "{a: ".repeat(levels)), 2, "flow mappings"),
        (format!("# deep\nproxmox_api:\n  hosts:\n    {}x\n", "- ".repeat(levels)), 4, "sequence items"),
        (
            (0..levels.min(3000)).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect::<String>(),
            // Line 65 opens the 65th indentation level.
            65,
            "indentation",
        ),
    ] {
        let e = refused(&text);
        assert!(e.starts_with(&format!("{FILE}:{line}:")), "{what}: {}", &e[..e.len().min(300)]);
        assert!(e.contains("nesting deeper than 64 levels"), "{what}: {e}");
    }
}

#[test]
fn brackets_in_quotes_and_comments_do_not_count_and_real_files_load() {
    let many = "[".repeat(200);
    let text = format!(
        "balancing:\n  method: memory # {many}\n  pools:\n    web:\n      type: affinity\n      pin: ['{many}']\n"
    );
    // Loads or fails for another reason, never for nesting.
    match parse_str(&text, FILE) {
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().contains("nesting"), "{e}"),
    }
    let nested = "rebalancer:\n  windows:\n    - { days: [mon, tue], from: \"01:00\", to: \"05:00\" }\n";
    if let Err(e) = parse_str(nested, FILE) {
        assert!(!e.to_string().contains("nesting"), "{e}");
    }
}
