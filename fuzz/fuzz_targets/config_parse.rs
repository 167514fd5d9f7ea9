//! proxlb.yaml as an operator may write it: any text must give a configuration or a
//! `file:line:col: key.path: …` error, never a panic; an accepted configuration must map to the
//! service's options (hosts, credentials from the file, the plan request, rules, executor limits)
//! without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match backend::config::parse_str(text, "proxlb.yaml") {
        Ok(loaded) => {
            let c = &loaded.config;
            let _ = c.endpoints();
            let _ = c.credentials(|_| None);
            let request = c.plan_request();
            let _ = c.rule_config();
            let _ = c.exec_config();
            let _ = c.maintenance_nodes_in(["pve1", "pve2"]);
            // A request the config produced must be one the API would accept too.
            assert!((0.0..=100.0).contains(&request.balanciness), "balanciness {}", request.balanciness);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("proxlb.yaml"), "error without its file: {msg}");
        }
    }
});
